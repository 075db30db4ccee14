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
    control: Control
    store: SecretStore
    sessions: Sessions
    reveals: RevealLimiter
    # Console sign-ins in flight (MSAL's auth code flows), by their `state`.
    sign_ins: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.control.settings

    @property
    def links(self) -> LinkSigner:
        return self.control.links


CONTEXT = web.AppKey("yec_web_context", WebContext)


def web_context(request: web.Request) -> WebContext:
    return request.app[CONTEXT]
