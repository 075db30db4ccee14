"""Notification channels against real receivers on loopback sockets.

An aiohttp HTTPS server plays the receivers and checks what each would (the signed webhook's HMAC
and timestamp, the Teams Workflows envelope + Adaptive Card, Slack's Block Kit limits); an aiosmtpd
server requires STARTTLS and AUTH before it takes mail. Certificates come from the simulators' CA.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from pydantic import TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

import notifications.config
from notifications.channels import DeliveryError, EmailChannel, build_channel
from notifications.config import (
    ChannelConfig,
    ChannelList,
    EmailChannelConfig,
    SlackChannelConfig,
    TeamsWorkflowsChannelConfig,
    WebhookChannelConfig,
)
from notifications.dispatcher import deliver
from notifications.message import Notification
from simulators.tls import LocalCA, load_or_create_local_ca, server_ssl_context

SIGNING_SECRET = "whsec-test-0123456789abcdef"
TEAMS_TOKEN = "sig=TeamsWorkflowSignature0123456789abcdefXYZ"
SLACK_TOKEN = "T0000TEST/B0000TEST/SlackSecretPath0123456789"
SMTP_USER = "pbx-bot"
SMTP_PASSWORD = "smtp-Pa55word-never-shown"
ADAPTIVE = "application/vnd.microsoft.card.adaptive"
NOTIFICATION_FIELDS = {
    "notification_id",
    "integration_id",
    "kind",
    "severity",
    "title",
    "summary",
    "due",
    "next_action",
    "facts",
    "link",
}


def make_notification(**changes: object) -> Notification:
    fields: dict[str, object] = {
        "notification_id": "acme-hq:secret_expiry:7c1e0f52-5d43-4c36-9a0e-2f8d6c7b1a90:7d",
        "integration_id": "acme-hq",
        "kind": "secret_expiry",
        "severity": "warning",
        "title": "Client secret expires in 7 days",
        "summary": "The secret used by PBX <pbx-01> & its Teams sync expires on 2026-06-01.",
        "due": datetime(2026, 6, 1, 9, 30, tzinfo=UTC),
        "next_action": "python starter.py status acme-hq",
        "facts": {"Tenant": "11111111-1111-4111-8111-111111111111", "Phase": "active"},
        "link": "https://pbx.example.com/settings/m365",
    }
    return Notification.model_validate(fields | changes)


# --- receivers -----------------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


def webhook_problems(headers: dict[str, str], body: bytes) -> list[str]:
    """Verification exactly as notifications/channels.py documents it for receivers."""
    timestamp = headers.get("X-Timestamp", "")
    expected = "sha256=" + hmac.new(SIGNING_SECRET.encode(), f"{timestamp}.".encode() + body, "sha256").hexdigest()
    if not hmac.compare_digest(headers.get("X-Signature-SHA256", ""), expected):
        return ["bad signature"]
    if abs(time.time() - int(timestamp)) > 300:
        return ["stale timestamp"]
    document = json.loads(body)
    problems = [] if set(document) == NOTIFICATION_FIELDS else [f"fields {sorted(document)}"]
    if document.get("notification_id") != headers.get("X-Notification-Id"):
        problems.append("X-Notification-Id differs from the body")
    return problems


def teams_problems(document: dict[str, Any]) -> list[str]:
    attachments = document.get("attachments")
    if document.get("type") != "message" or not isinstance(attachments, list) or len(attachments) != 1:
        return ["not a message with one attachment"]
    attachment = attachments[0]
    card = attachment.get("content", {})
    problems = []
    if attachment.get("contentType") != ADAPTIVE or "contentUrl" not in attachment:
        problems.append(f"attachment {sorted(attachment)} {attachment.get('contentType')}")
    if card.get("type") != "AdaptiveCard" or card.get("version") != "1.4":
        problems.append("content is not an Adaptive Card 1.4")
    kinds = {block.get("type") for block in card.get("body", [])}
    if not {"TextBlock", "FactSet"} <= kinds:
        problems.append(f"body blocks {kinds}")
    if any(action.get("type") != "Action.OpenUrl" for action in card.get("actions", [])):
        problems.append("unexpected action type")
    return problems


def slack_problems(document: dict[str, Any]) -> list[str]:
    blocks = document.get("blocks")
    if not document.get("text") or not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return ["needs a text fallback and 1-50 blocks"]
    problems = []
    for block in blocks:
        text = block.get("text", {}).get("text", "")
        if block["type"] == "header" and (block["text"]["type"] != "plain_text" or len(text) > 150):
            problems.append("header must be plain_text of at most 150 characters")
        if block["type"] == "section":
            fields = block.get("fields", [])
            if len(text) > 3000 or len(fields) > 10 or any(len(f["text"]) > 2000 for f in fields):
                problems.append("section over Block Kit limits")
        if block["type"] not in {"header", "section", "context"}:
            problems.append(f"unexpected block {block['type']}")
    return problems


@dataclass
class Receiver:
    base_url: str  # https, certificate from the test CA
    http_url: str  # plain http on loopback
    requests: list[Request] = field(default_factory=list)

    def of(self, prefix: str) -> list[Request]:
        return [r for r in self.requests if r.path.startswith(prefix)]


def receiver_app(receiver: Receiver) -> web.Application:
    async def record(request: web.Request) -> Request:
        received = Request(request.path_qs, dict(request.headers), await request.read())
        receiver.requests.append(received)
        return received

    def verdict(problems: list[str], ok: web.Response) -> web.Response:
        return web.Response(status=400, text="; ".join(problems)) if problems else ok

    async def webhook(request: web.Request) -> web.Response:
        received = await record(request)
        problems = webhook_problems(received.headers, received.body)
        if problems[:1] in (["bad signature"], ["stale timestamp"]):
            return web.Response(status=401, text=problems[0])
        return verdict(problems, web.Response(status=204))

    async def teams(request: web.Request) -> web.Response:
        received = await record(request)
        return verdict(teams_problems(json.loads(received.body)), web.Response(status=202))

    async def slack(request: web.Request) -> web.Response:
        received = await record(request)
        return verdict(slack_problems(json.loads(received.body)), web.Response(text="ok"))

    async def status(request: web.Request) -> web.Response:
        # Echo the request URL, as some services do, to prove it is blanked out of errors.
        await record(request)
        code = int(request.match_info["code"])
        headers = {"Retry-After": "7"} if code in (429, 503) else {}
        if 300 <= code < 400:
            headers["Location"] = "https://elsewhere.example/"
        return web.Response(status=code, headers=headers, text=f"error for {request.url}")

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await asyncio.sleep(float(request.match_info["seconds"]))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/webhook", webhook)
    app.router.add_post("/teams/{token:.*}", teams)
    app.router.add_post("/slack/{token:.*}", slack)
    app.router.add_post("/status/{code:\\d+}/{token:.*}", status)
    app.router.add_post("/slow/{seconds}", slow)
    return app


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return load_or_create_local_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
async def receiver(ca: LocalCA) -> AsyncIterator[Receiver]:
    receiver = Receiver("", "")
    runner = web.AppRunner(receiver_app(receiver))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(ca)).start()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    https_port, http_port = (address[1] for address in runner.addresses)
    receiver.base_url, receiver.http_url = f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}"
    yield receiver
    await runner.cleanup()


@dataclass
class Mail:
    over_tls: bool
    mechanism: str
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


class SmtpSink:
    """aiosmtpd handler + authenticator: records each mail with how the session got there."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.mechanisms: list[str] = []

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
        if ok:
            self.mechanisms.append(mechanism)
        return AuthResult(success=ok, handled=False)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        mechanism = self.mechanisms[-1] if session.authenticated else ""
        self.mails.append(
            Mail(session.ssl is not None, mechanism, envelope.mail_from, list(envelope.rcpt_tos), message)
        )
        return "250 2.0.0 accepted"


@dataclass
class SmtpServer:
    port: int
    sink: SmtpSink


@asynccontextmanager
async def running_smtp(ca: LocalCA, *, starttls: bool = True, exclude: tuple[str, ...] = ()) -> AsyncIterator[SmtpServer]:
    sink = SmtpSink()
    tls = server_ssl_context(ca) if starttls else None
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(
            sink,
            hostname="localhost",
            tls_context=tls,
            require_starttls=starttls,
            auth_required=True,
            auth_require_tls=True,
            auth_exclude_mechanism=exclude,
            authenticator=sink.authenticate,
        ),
        "127.0.0.1",
        0,
    )
    try:
        yield SmtpServer(server.sockets[0].getsockname()[1], sink)
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def smtp(ca: LocalCA) -> AsyncIterator[SmtpServer]:
    async with running_smtp(ca) as server:
        yield server
