"""Runs the web app: the PBX administrator's pages (signed links), the operator console and the
Temporal UI's codec endpoint.

    python web.py            # settings from YEC_* env vars / .env (see README, "The web app")

Serves HTTPS when YEC_WEB__TLS_CERT and YEC_WEB__TLS_KEY are set, plain HTTP otherwise (for a TLS
proxy in front, or loopback). Reads the secret store the worker writes (same YEC_DATA_DIR and keys).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys

import structlog
from aiohttp import web

from common.logging import configure_logging
from common.secret_store import open_secret_store
from common.settings import Settings, SettingsError, load_settings
from common.temporal import connect, exit_process
from control import Control
from webapp.app import build_app
from webapp.security import AccessLogger

log = structlog.get_logger("web")


async def run(settings: Settings) -> None:
    try:
        client = await connect(settings)
    except RuntimeError as exc:
        raise SystemExit(f"error: cannot reach Temporal at {settings.temporal.address} ({exc})") from None
    store = open_secret_store(settings)
    app = build_app(Control(client, settings), store)
    runner = web.AppRunner(app, access_log_class=AccessLogger, access_log=logging.getLogger("web.access"))
    await runner.setup()
    web_settings = settings.web
    tls = None
    if web_settings.tls_cert is not None and web_settings.tls_key is not None:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(web_settings.tls_cert, web_settings.tls_key)
    await web.TCPSite(runner, web_settings.host, web_settings.port, ssl_context=tls).start()
    log.info("web app started", address=f"{web_settings.host}:{web_settings.port}", base_url=web_settings.base_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await store.close()
    log.info("web app stopped")


def main() -> None:
    try:
        settings = load_settings()
        settings.keys  # noqa: B018 - the links' key derives from it: fail now, not on the first page
    except SettingsError as exc:
        sys.exit(f"error: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(run(settings))
    exit_process(0)


if __name__ == "__main__":
    main()
