# The worker (`python worker.py`, the default) and the web app (`python web.py`) against the Temporal
# service in YEC_TEMPORAL__ADDRESS (see docker-compose.yml). Settings come from the environment only;
# .env is never copied in.
FROM python:3.11.14-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    YEC_DATA_DIR=/data

# An unprivileged user owning only the data directory (the secret store lives there). The named
# volume mounted on /data takes this ownership when first created.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin connector \
    && install -d -o connector -g connector -m 0700 /data

WORKDIR /app
COPY . .
# Bytecode for /app written now, as root: the workflow sandbox re-imports workflow modules for every
# run, and PYTHONDONTWRITEBYTECODE (above) would otherwise have it recompile them each time.
RUN pip install . && rm -rf build && python -m compileall -q /app

USER connector
VOLUME ["/data"]
CMD ["python", "worker.py"]
