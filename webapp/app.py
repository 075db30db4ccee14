"""The web app: administrator pages, the operator console and the codec endpoint, on one aiohttp app."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from common.links import derived_key
from common.secret_store import SecretStore
from control import Control
from webapp.admin import add_admin_routes
from webapp.codec import add_codec_routes
from webapp.console import add_console_routes
from webapp.context import CONTEXT, WebContext
from webapp.security import RevealLimiter, Sessions, security_middleware

STATIC = Path(__file__).parent / "static"


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/console")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def build_app(control: Control, store: SecretStore) -> web.Application:
    settings = control.settings
    app = web.Application(middlewares=[security_middleware(settings.web.base_url)])
    app[CONTEXT] = WebContext(
        control=control,
        store=store,
        sessions=Sessions(derived_key(settings, b"sessions"), secure=settings.web.base_url.startswith("https://")),
        reveals=RevealLimiter(settings.web.reveals_per_10_minutes),
    )
    app.router.add_get("/", home)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static", STATIC)
    add_admin_routes(app)
    add_console_routes(app)
    add_codec_routes(app)
    return app
