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
import json
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword
from pydantic import TypeAdapter, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

import notifications.config
from notifications.channels import DeliveryError, build_channel
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
from tests.receivers import (
    ADAPTIVE,
    SIGNING_SECRET,
    Receiver,
    running_receiver,
    webhook_problems,
)

TEAMS_TOKEN = "sig=TeamsWorkflowSignature0123456789abcdefXYZ"
SLACK_TOKEN = "T0000TEST/B0000TEST/SlackSecretPath0123456789"
SMTP_USER = "pbx-bot"
SMTP_PASSWORD = "smtp-Pa55word-never-shown"


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


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return load_or_create_local_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
async def receiver(ca: LocalCA) -> AsyncIterator[Receiver]:
    async with running_receiver(ca) as running:
        yield running


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

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data == (SMTP_USER.encode(), SMTP_PASSWORD.encode())
        return AuthResult(success=ok, handled=False, auth_data=mechanism)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such mailbox"
        if address.endswith("@greylisted.example"):
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        mechanism = session.auth_data if session.authenticated else ""
        self.mails.append(
            Mail(session.ssl is not None, mechanism, envelope.mail_from, list(envelope.rcpt_tos), message)
        )
        return "250 2.0.0 accepted"


@dataclass
class SmtpServer:
    port: int
    sink: SmtpSink


@asynccontextmanager
async def running_smtp(
    ca: LocalCA, *, starttls: bool = True, exclude: tuple[str, ...] = ()
) -> AsyncIterator[SmtpServer]:
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


# --- helpers -------------------------------------------------------------------------------------

CHANNEL: TypeAdapter[ChannelConfig] = TypeAdapter(ChannelConfig)


def channel(**fields: object) -> ChannelConfig:
    """A channel config the way settings get one: from JSON-like data."""
    return CHANNEL.validate_python(fields)


def webhook(url: str, ca: LocalCA, *, name: str = "hook", secret: str = SIGNING_SECRET) -> ChannelConfig:
    return channel(type="webhook", name=name, url=url, signing_secret=secret, ca_bundle=ca.ca_file)


def teams(url: str, ca: LocalCA, *, name: str = "teams") -> ChannelConfig:
    return channel(type="teams", name=name, url=url, ca_bundle=ca.ca_file)


def slack(url: str, ca: LocalCA, *, name: str = "slack") -> ChannelConfig:
    return channel(type="slack", name=name, url=url, ca_bundle=ca.ca_file)


def mail(port: int, ca: LocalCA, *, password: str = SMTP_PASSWORD, recipients: tuple[str, ...] = ()) -> ChannelConfig:
    return channel(
        type="email",
        name="mail",
        host="127.0.0.1",
        port=port,
        username=SMTP_USER,
        password=password,
        sender="PBX connector <pbx-bot@example.com>",
        recipients=list(recipients or ("it-admins@example.com", "oncall@example.com")),
        ca_bundle=ca.ca_file,
    )


def all_channels(receiver: Receiver, smtp: SmtpServer, ca: LocalCA) -> list[ChannelConfig]:
    return [
        webhook(f"{receiver.base_url}/webhook", ca),
        teams(f"{receiver.base_url}/teams/{TEAMS_TOKEN}", ca),
        slack(f"{receiver.base_url}/slack/{SLACK_TOKEN}", ca),
        mail(smtp.port, ca),
    ]


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def send_failure(config: ChannelConfig, *, give_up_after: float = 10.0) -> DeliveryError:
    with pytest.raises(DeliveryError) as caught:
        await build_channel(config, timeout=give_up_after).send(make_notification())
    return caught.value


# --- HTTP channels -------------------------------------------------------------------------------


async def test_webhook_is_signed_over_timestamp_and_body(receiver: Receiver, ca: LocalCA) -> None:
    notification = make_notification()

    report = await deliver(notification, [webhook(f"{receiver.base_url}/webhook", ca)])

    assert report.all_delivered, report
    request = receiver.of("/webhook")[-1]
    assert json.loads(request.body) == notification.model_dump(mode="json", exclude={"action"})
    assert json.loads(request.body)["due"] == "2026-06-01T09:30:00Z"
    assert request.headers["x-notification-id"] == notification.notification_id
    # A replay cannot refresh the timestamp (it is signed), nor can the body be altered.
    later = str(int(request.headers["x-timestamp"]) + 60)
    assert webhook_problems(request.headers | {"x-timestamp": later}, request.body) == ["bad signature"]
    assert webhook_problems(request.headers, request.body.replace(b"acme-hq", b"evil-hq")) == ["bad signature"]


async def test_webhook_with_wrong_secret_is_rejected_permanently(receiver: Receiver, ca: LocalCA) -> None:
    error = await send_failure(webhook(f"{receiver.base_url}/webhook", ca, secret="not-the-shared-secret"))

    assert (error.status, error.permanent) == (401, True)
    assert "bad signature" in str(error)


async def test_webhook_over_plain_http_to_loopback(receiver: Receiver, ca: LocalCA) -> None:
    report = await deliver(make_notification(), [webhook(f"{receiver.http_url}/webhook", ca)])

    assert report.all_delivered, report


async def test_teams_gets_an_adaptive_card_in_a_workflows_message(receiver: Receiver, ca: LocalCA) -> None:
    notification = make_notification()

    report = await deliver(notification, [teams(f"{receiver.base_url}/teams/{TEAMS_TOKEN}", ca)])

    assert report.all_delivered, report  # the receiver checked the envelope and card
    document = json.loads(receiver.of("/teams/")[-1].body)
    assert set(document) == {"type", "attachments"}  # no MessageCard "@type"/"sections"
    attachment = document["attachments"][0]
    assert attachment["contentType"] == ADAPTIVE and attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["body"][0]["text"] == "[WARNING] Client secret expires in 7 days"
    assert card["body"][0]["color"] == "Warning"
    facts = next(block["facts"] for block in card["body"] if block["type"] == "FactSet")
    assert {"title": "Due", "value": "2026-06-01 09:30 UTC"} in facts
    assert {"title": "Integration", "value": "acme-hq"} in facts
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open", "url": notification.link}]


async def test_slack_gets_block_kit_within_limits(receiver: Receiver, ca: LocalCA) -> None:
    facts = {f"Fact {i}": f"value {i}" for i in range(12)}
    notification = make_notification(title="Secret expiry " + "x" * 300, facts=facts)

    report = await deliver(notification, [slack(f"{receiver.base_url}/slack/{SLACK_TOKEN}", ca)])

    assert report.all_delivered, report  # the receiver checked Block Kit limits
    document = json.loads(receiver.of("/slack/")[-1].body)
    assert document["text"] == notification.headline
    blocks = document["blocks"]
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) == 150
    assert [len(b["fields"]) for b in blocks if "fields" in b] == [10, 4]  # 2 rows + 12 facts
    texts = [b["text"]["text"] for b in blocks if "text" in b]
    assert "PBX &lt;pbx-01&gt; &amp; its Teams sync" in texts[1]
    assert f"<{notification.link}|Open>" in texts


@pytest.mark.parametrize(
    ("code", "permanent"),
    [
        *[(code, True) for code in (400, 401, 403, 404, 410, 302)],
        *[(code, False) for code in (429, 500, 502, 503)],
    ],
)
async def test_http_status_decides_permanent_or_transient(
    receiver: Receiver, ca: LocalCA, code: int, permanent: bool
) -> None:
    error = await send_failure(slack(f"{receiver.base_url}/status/{code}/{SLACK_TOKEN}", ca))

    assert (error.status, error.permanent) == (code, permanent)
    assert error.retry_after == (7.0 if code in (429, 503) else None)
    # The receiver echoed the URL; the credential part of it is blanked out.
    assert "SlackSecretPath" not in str(error) and receiver.base_url not in str(error)


async def test_connection_problems(receiver: Receiver, ca: LocalCA) -> None:
    refused = await send_failure(webhook(f"https://127.0.0.1:{unused_port()}/webhook", ca))
    slow = await send_failure(webhook(f"{receiver.base_url}/slow/1", ca), give_up_after=0.2)
    untrusted = await send_failure(channel(type="teams", name="t", url=f"{receiver.base_url}/teams/x"))

    assert not refused.permanent and "cannot connect to 127.0.0.1" in str(refused)
    assert not slow.permanent and "no answer within 0.2 s" in str(slow)
    # Retrying cannot fix a CA bundle that does not match.
    assert untrusted.permanent and "not trusted" in str(untrusted)


# --- e-mail --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
async def test_email_over_starttls_with_auth(ca: LocalCA, mechanism: str) -> None:
    other = {"PLAIN": "LOGIN", "LOGIN": "PLAIN"}[mechanism]
    notification = make_notification()

    async with running_smtp(ca, exclude=(other,)) as smtp:
        report = await deliver(notification, [mail(smtp.port, ca)])

    assert report.all_delivered, report
    [received] = smtp.sink.mails
    assert (received.over_tls, received.mechanism) == (True, mechanism)
    assert received.mail_from == "pbx-bot@example.com"
    assert received.rcpt_tos == ["it-admins@example.com", "oncall@example.com"]
    message = received.message
    assert message["Subject"] == "[WARNING] Client secret expires in 7 days"
    assert message["To"] == "it-admins@example.com, oncall@example.com"
    digest = hashlib.sha256(notification.notification_id.encode()).hexdigest()[:32]
    assert message["Message-ID"] == f"<{digest}@example.com>"
    assert message["X-Notification-Id"] == notification.notification_id
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    assert "    python starter.py status acme-hq" in text.get_content()
    assert "Due: 2026-06-01 09:30 UTC" in text.get_content()
    assert "PBX &lt;pbx-01&gt; &amp; its" in html.get_content()


async def test_email_never_authenticates_without_starttls(ca: LocalCA) -> None:
    async with running_smtp(ca, starttls=False) as smtp:
        error = await send_failure(mail(smtp.port, ca))

    assert error.permanent and "STARTTLS" in str(error)
    assert smtp.sink.mails == []


async def test_email_wrong_password_is_permanent(smtp: SmtpServer, ca: LocalCA) -> None:
    error = await send_failure(mail(smtp.port, ca, password="wrong-" + SMTP_PASSWORD))

    assert (error.status, error.permanent) == (535, True)
    assert SMTP_PASSWORD not in str(error)


async def test_email_refused_recipients(smtp: SmtpServer, ca: LocalCA) -> None:
    partly = await send_failure(mail(smtp.port, ca, recipients=("it@example.com", "ghost@refused.example")))
    wholly = await send_failure(mail(smtp.port, ca, recipients=("ghost@refused.example",)))
    later = await send_failure(mail(smtp.port, ca, recipients=("it@example.com", "ops@greylisted.example")))

    assert [m.rcpt_tos for m in smtp.sink.mails] == [["it@example.com"], ["it@example.com"]]
    assert partly.permanent and "1 of 2 recipients refused: ghost@refused.example (SMTP 550)" in str(partly)
    assert wholly.permanent and "1 of 1 recipients refused" in str(wholly)
    # Greylisting passes on a later try.
    assert not later.permanent and later.status == 451


# --- dispatcher ----------------------------------------------------------------------------------


async def test_a_failing_channel_does_not_stop_the_others(receiver: Receiver, smtp: SmtpServer, ca: LocalCA) -> None:
    notification = make_notification(notification_id="acme-hq:blocked:1")
    channels = [
        webhook(f"{receiver.base_url}/webhook", ca),
        teams(f"{receiver.base_url}/status/500/{TEAMS_TOKEN}", ca),
        slack(f"https://127.0.0.1:{unused_port()}/slack/{SLACK_TOKEN}", ca),
        mail(smtp.port, ca),
    ]

    report = await deliver(notification, channels)

    assert [(o.channel, o.ok, o.permanent) for o in report.outcomes] == [
        ("hook", True, None),
        ("teams", False, False),
        ("slack", False, False),
        ("mail", True, None),
    ]
    assert report.delivered == ["hook", "mail"] and report.retryable == ["teams", "slack"]
    assert [o.error for o in report.outcomes if not o.ok] == ["DeliveryError", "DeliveryError"]
    assert "HTTP 500" in str(report.outcomes[1].message)
    assert "cannot connect" in str(report.outcomes[2].message)
    assert json.loads(receiver.of("/webhook")[-1].body)["notification_id"] == "acme-hq:blocked:1"
    assert len(smtp.sink.mails) == 1
    dumped = report.model_dump_json()
    for secret in ("TeamsWorkflowSignature", "SlackSecretPath", SIGNING_SECRET, SMTP_PASSWORD):
        assert secret not in dumped


async def test_channels_are_sent_concurrently(receiver: Receiver, ca: LocalCA) -> None:
    channels = [webhook(f"{receiver.base_url}/slow/0.5", ca, name=f"slow-{i}") for i in range(4)]

    started = time.monotonic()
    report = await deliver(make_notification(), channels)

    assert report.all_delivered, report
    assert time.monotonic() - started < 1.5  # one after another would take 2 s


async def test_a_retry_resends_the_identical_notification(receiver: Receiver, smtp: SmtpServer, ca: LocalCA) -> None:
    notification = make_notification(notification_id="acme-hq:consent_pending:20260101T000000:2")
    channels = all_channels(receiver, smtp, ca)
    before = len(receiver.requests)

    for _ in range(2):
        assert (await deliver(notification, channels)).all_delivered

    sent = receiver.requests[before:]
    for path in ("/webhook", "/teams/", "/slack/"):
        first, second = (r for r in sent if r.path.startswith(path))
        assert first.body == second.body
    ids = {r.headers["x-notification-id"] for r in sent if r.path == "/webhook"}
    assert ids == {notification.notification_id}
    first_mail, second_mail = (m.message for m in smtp.sink.mails)
    assert first_mail["Message-ID"] == second_mail["Message-ID"]
    assert [p.get_content() for p in first_mail.iter_parts()] == [p.get_content() for p in second_mail.iter_parts()]


async def test_nothing_secret_leaves_in_payloads(receiver: Receiver, smtp: SmtpServer, ca: LocalCA) -> None:
    channels = all_channels(receiver, smtp, ca)
    before = len(receiver.requests)

    assert (await deliver(make_notification(), channels)).all_delivered

    sent = b"".join(r.body + json.dumps(r.headers).encode() for r in receiver.requests[before:])
    sent += b"".join(m.message.as_bytes() for m in smtp.sink.mails)
    for secret in (SIGNING_SECRET, SMTP_PASSWORD, "TeamsWorkflowSignature", "SlackSecretPath"):
        assert secret.encode() not in sent
    shown = " ".join(repr(c) + c.model_dump_json() for c in channels)
    for secret in (SIGNING_SECRET, SMTP_PASSWORD, TEAMS_TOKEN, SLACK_TOKEN):
        assert secret not in shown


# --- models --------------------------------------------------------------------------------------


def test_notification_refuses_secret_lookalikes_and_header_injection() -> None:
    lookalike = "Xy18Q~" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7"
    with pytest.raises(ValidationError) as caught:
        make_notification(facts={"Secret": lookalike})
    assert "looks like a client secret" in str(caught.value) and lookalike not in str(caught.value)
    with pytest.raises(ValidationError):
        make_notification(notification_id="acme-hq:x\r\nBcc: victim@example.com")

    long = make_notification(title="Secret\nexpires", summary="y" * 5000)
    assert long.title == "Secret expires"
    assert len(long.summary) == 2000 and long.summary.endswith("…")


class _Settings(BaseSettings):
    # How common/settings.py declares the lists; hide_input_in_errors keeps rejected URLs out of str().
    model_config = SettingsConfigDict(env_prefix="YEC_", hide_input_in_errors=True)

    notification_channels: ChannelList = []


def test_documented_env_example_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = notifications.config.__doc__
    assert doc is not None
    example = doc.split("YEC_NOTIFICATION_CHANNELS='", 1)[1].split("'", 1)[0]
    monkeypatch.setenv("YEC_NOTIFICATION_CHANNELS", example)

    channels = _Settings().notification_channels

    assert [type(c) for c in channels] == [
        WebhookChannelConfig,
        TeamsWorkflowsChannelConfig,
        SlackChannelConfig,
        EmailChannelConfig,
    ]
    assert channels[3].type == "email" and channels[3].port == 587 and channels[3].starttls


SECRET_URL = "http://hooks.example.com/services/T0/B0/TopSecretToken0123456789"


@pytest.mark.parametrize(
    ("channels", "complaint"),
    [
        ([{"type": "slack", "name": "s", "url": SECRET_URL}], "http:// is allowed only to a loopback host"),
        ([{"type": "teams", "name": "t", "url": "ftp://example.com/x"}], "must be an https:// URL"),
        ([{"type": "webhook", "name": "w", "url": "https://u:p@example.com/", "signing_secret": "s" * 16}], "user"),
        ([{"type": "webhook", "name": "w", "url": "https://example.com/", "signing_secret": "short"}], "16"),
        ([{"type": "slack", "name": "x", "url": "https://a.example/"}] * 2, "unique, repeated: x"),
        ([{"type": "pager", "name": "p"}], "does not match any of the expected tags"),
        (
            [
                {
                    "type": "email",
                    "name": "m",
                    "host": "smtp.example.com",
                    "sender": "a@example.com",
                    "recipients": ["b@example.com"],
                    "username": "u",
                }
            ],
            "username and password must be set together",
        ),
        (
            [
                {
                    "type": "email",
                    "name": "m",
                    "host": "smtp.example.com",
                    "sender": "a@example.com",
                    "recipients": ["b@example.com"],
                    "username": "u",
                    "password": "p",
                    "starttls": False,
                }
            ],
            "without STARTTLS",
        ),
    ],
)
def test_bad_channel_config_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch, channels: list[dict[str, object]], complaint: str
) -> None:
    monkeypatch.setenv("YEC_NOTIFICATION_CHANNELS", json.dumps(channels))

    with pytest.raises(ValidationError) as caught:
        _Settings()

    assert complaint in str(caught.value)
    assert "TopSecretToken" not in str(caught.value)


def test_loopback_http_and_local_smtp_without_tls_are_allowed() -> None:
    adapter: TypeAdapter[list[ChannelConfig]] = TypeAdapter(ChannelList)
    channels = adapter.validate_python(
        [
            {"type": "teams", "name": "t", "url": "http://localhost:8080/teams"},
            {"type": "slack", "name": "s", "url": "http://[::1]:8080/slack"},
            {
                "type": "email",
                "name": "m",
                "host": "127.0.0.1",
                "port": 1025,
                "starttls": False,
                "username": "u",
                "password": "p",
                "sender": "a@example.com",
                "recipients": ["b@example.com"],
            },
        ]
    )
    assert [c.name for c in channels] == ["t", "s", "m"]
