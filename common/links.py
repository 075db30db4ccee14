"""Signed, expiring, single-purpose links to the administrator's web pages.

A link names one integration and one :class:`AdminAction` (submit the redirect URIs; paste the
secret with key ID K; paste rotation R's new secret) and expires; it is an HMAC-SHA256 over all of
that. The web app also checks the action is still the one pending, so a link dies as soon as the
integration has moved on. The signing key is `YEC_WEB__LINK_SECRET`, or derived one-way from the
first payload encryption key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from common.settings import Settings
from models.integration import AdminAction


class InvalidLink(Exception):
    """Not a link this service signed, or no longer valid; the message says which, for the page."""


def derived_key(settings: Settings, purpose: bytes) -> bytes:
    """A key for the web app's signatures: the configured link secret, else one derived (HKDF) from
    the first encryption key, different per ``purpose``."""
    if settings.web.link_secret is not None:
        material = settings.web.link_secret.get_secret_value().encode()
    else:
        material = next(iter(settings.keys.values()))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"yec-web:" + purpose).derive(material)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Sealer:
    """JSON values signed with HMAC-SHA256 as ``body.signature``, safe in URLs and cookies."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def seal(self, value: Any) -> str:
        body = _b64(json.dumps(value, separators=(",", ":")).encode())
        return f"{body}.{self._sign(body)}"

    def unseal(self, token: str) -> Any:
        """The sealed value; None when the token is not one this key sealed (changed, or another key's)."""
        body, _, signature = token.partition(".")
        if not body or not hmac.compare_digest(signature, self._sign(body)):
            return None
        return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._key, body.encode(), hashlib.sha256).digest())


@dataclass(frozen=True)
class SignedLink:
    token: str
    integration_id: str
    action: AdminAction
    expires_at: datetime


class LinkSigner:
    def __init__(self, key: bytes, base_url: str, lifetime: timedelta) -> None:
        self._sealer, self._base_url, self._lifetime = Sealer(key), base_url.rstrip("/"), lifetime

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        return cls(derived_key(settings, b"links"), settings.web.base_url, settings.web.link_lifetime)

    def token(self, integration_id: str, action: AdminAction, now: datetime | None = None) -> str:
        expires = int(((now or datetime.now(UTC)) + self._lifetime).timestamp())
        return self._sealer.seal([integration_id, action.kind, action.ref, expires])

    def url(self, integration_id: str, action: AdminAction) -> str:
        return f"{self._base_url}/a/{self.token(integration_id, action)}"

    def verify(self, token: str, now: datetime | None = None) -> SignedLink:
        sealed = self._sealer.unseal(token)
        if sealed is None:
            raise InvalidLink("This link is not valid (it was changed, or it is not from this service).")
        integration_id, kind, ref, expires = sealed
        expires_at = datetime.fromtimestamp(expires, UTC)
        if (now or datetime.now(UTC)) >= expires_at:
            raise InvalidLink(
                f"This link expired at {expires_at:%Y-%m-%d %H:%M} UTC. The latest reminder, or the operator, has a "
                "fresh one."
            )
        return SignedLink(token, integration_id, AdminAction(kind=kind, ref=ref), expires_at)
