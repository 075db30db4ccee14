"""Reference receiver for the signed webhook channel (the scheme is in notifications/channels.py).

`verify_webhook` is what a receiver must do; `WebhookReceiver` is a small aiohttp app that does it and
drops retries it has already seen. The demo uses it to show reminders arriving; copy it as a starting
point for your own endpoint.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Mapping

from aiohttp import web

from notifications.message import Notification

MAX_CLOCK_SKEW_SECONDS = 300


class InvalidWebhook(Exception):
    pass


def signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(signing_secret.encode(), timestamp.encode() + b"." + body, "sha256")
    return "sha256=" + mac.hexdigest()


def verify_webhook(
    signing_secret: str, headers: Mapping[str, str], body: bytes, now: float | None = None
) -> Notification:
    """The notification, if the signature is right and fresh; InvalidWebhook otherwise."""
    timestamp = headers.get("X-Timestamp", "")
    if not hmac.compare_digest(headers.get("X-Signature-SHA256", ""), signature(signing_secret, timestamp, body)):
        raise InvalidWebhook("bad signature")
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > MAX_CLOCK_SKEW_SECONDS:
        raise InvalidWebhook("stale or missing timestamp (replayed request?)")
    notification = Notification.model_validate_json(body)
    if notification.notification_id != headers.get("X-Notification-Id"):
        raise InvalidWebhook("X-Notification-Id differs from the body")
    return notification


class WebhookReceiver:
    """Verifies, de-duplicates by notification ID, and hands each new notification to `on_notification`."""

    def __init__(self, signing_secret: str, on_notification: Callable[[Notification], None]) -> None:
        self._secret = signing_secret
        self._on_notification = on_notification
        self._seen: set[str] = set()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        try:
            notification = verify_webhook(self._secret, request.headers, await request.read())
        except (InvalidWebhook, ValueError) as exc:
            return web.Response(status=401, text=str(exc))
        if notification.notification_id not in self._seen:  # a retry of one already handled is fine
            self._seen.add(notification.notification_id)
            self._on_notification(notification)
        return web.Response(status=204)
