"""What every handler of the web app shares, kept on the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from common.links import LinkSigner
from common.secret_store import SecretStore
from common.settings import Settings
from control import Control
from webapp.security import RevealLimiter, Sessions


@dataclass
class WebContext:
    settings: Settings
    control: Control
    links: LinkSigner
    store: SecretStore
    sessions: Sessions
    reveals: RevealLimiter
    # Console sign-ins in flight (MSAL's auth code flows), by their `state`.
    sign_ins: dict[str, dict[str, Any]] = field(default_factory=dict)


CONTEXT = web.AppKey("yec_web_context", WebContext)


def web_context(request: web.Request) -> WebContext:
    return request.app[CONTEXT]
