"""The reference webhook receiver against the real webhook channel over a loopback socket."""

from __future__ import annotations

import time

import aiohttp
from aiohttp import web

from notifications.channels import DeliveryError, build_channel
from notifications.config import WebhookChannelConfig
from notifications.message import Notification
from notifications.receiver import InvalidWebhook, WebhookReceiver, signature, verify_webhook
from tests.notifications.test_channels import make_notification

SECRET = "receiver-secret-0123456789"


async def test_signed_delivery_is_accepted_once_and_forgeries_are_refused() -> None:
    received: list[Notification] = []
    runner = web.AppRunner(WebhookReceiver(SECRET, received.append).app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        notification = make_notification()
        config = WebhookChannelConfig(type="webhook", name="hook", url=url, signing_secret=SECRET)
        channel = build_channel(config)
        await channel.send(notification)
        await channel.send(notification)  # a retry: same ID, accepted, not handed over twice
        assert [n.notification_id for n in received] == [notification.notification_id]

        wrong = WebhookChannelConfig(type="webhook", name="hook", url=url, signing_secret="another-secret-0123456")
        try:
            await build_channel(wrong).send(make_notification(notification_id="forged-1"))
            raise AssertionError("a forged webhook was accepted")
        except DeliveryError as exc:
            assert exc.permanent
        async with aiohttp.ClientSession() as session:
            body = notification.model_dump_json().encode()
            old = str(int(time.time()) - 3600)
            replay = {"X-Timestamp": old, "X-Signature-SHA256": signature(SECRET, old, body)}
            async with session.post(url, data=body, headers=replay) as response:
                assert response.status == 401
        assert len(received) == 1
    finally:
        await runner.cleanup()


def test_verify_rejects_a_mismatched_id() -> None:
    notification = make_notification()
    body = notification.model_dump_json().encode()
    now = str(int(time.time()))
    headers = {"X-Timestamp": now, "X-Signature-SHA256": signature(SECRET, now, body), "X-Notification-Id": "other"}
    try:
        verify_webhook(SECRET, headers, body)
    except InvalidWebhook as exc:
        assert "differs" in str(exc)
    else:
        raise AssertionError("accepted a mismatched X-Notification-Id")
