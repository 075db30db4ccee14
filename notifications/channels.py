"""Send one :class:`~notifications.message.Notification` over one channel.

Every ``send`` returns when the receiver accepted the message, or raises :class:`DeliveryError`:
``permanent=True`` when repeating the same request cannot help (HTTP 4xx other than 429, a
redirect, an untrusted TLS certificate, SMTP 5xx or refused AUTH), ``permanent=False`` for HTTP 429
and 5xx, SMTP 4xx, refused or dropped connections and timeouts (10 s). Error text never contains a
webhook URL, a signing secret or a password.

Signed webhook (``type: webhook``), for receivers
--------------------------------------------------
``POST <url>`` with ``Content-Type: application/json; charset=utf-8`` and::

    X-Notification-Id: <notification_id>        same as the body's, same on every retry
    X-Timestamp: <Unix time of this attempt, whole seconds>
    X-Signature-SHA256: sha256=<hex>

``<hex>`` is the lowercase hex HMAC-SHA256 keyed with the channel's ``signing_secret`` (UTF-8) over
``X-Timestamp`` + ``"."`` + the raw request body bytes. A receiver recomputes it over the bytes as
received (before parsing JSON), compares in constant time (``hmac.compare_digest``), rejects a
timestamp more than 5 minutes from its clock (a replayed request), then ignores a
``notification_id`` it has already processed (a retry: same body, new timestamp and signature).
The body is the notification as JSON: ``notification_id``, ``integration_id``, ``kind``,
``severity``, ``title``, ``summary``, ``due`` (ISO 8601 or null), ``next_action``, ``facts``
(object of strings) and ``link`` (or null). Any 2xx answer means delivered.

Teams Workflows get an Adaptive Card 1.4 in a ``message`` with one attachment of content type
``application/vnd.microsoft.card.adaptive``; Slack gets Block Kit ``blocks`` plus a ``text``
fallback; e-mail is multipart/alternative (plain text + HTML) with a ``Message-ID`` derived from
``notification_id``.
"""

from __future__ import annotations

import asyncio
import email.policy
import hashlib
import hmac
import html
import json
import re
import smtplib
import ssl
import time
from abc import ABC, abstractmethod
from email.message import EmailMessage
from email.utils import formatdate, parseaddr, parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol, assert_never
from urllib.parse import urlsplit

import aiohttp

from notifications.config import (
    ChannelConfig,
    EmailChannelConfig,
    SlackChannelConfig,
    TeamsWorkflowsChannelConfig,
    WebhookChannelConfig,
)
from notifications.message import Notification, clip

TIMEOUT_SECONDS = 10.0
_SNIPPET_CHARS = 200


class DeliveryError(Exception):
    """A channel did not take the notification; ``permanent`` says whether a retry can help."""

    def __init__(
        self,
        channel: str,
        detail: str,
        *,
        permanent: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.channel = channel
        self.detail = detail
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after
        super().__init__(f"{channel}: {detail} ({'permanent' if permanent else 'transient'})")


class Channel(Protocol):
    name: str

    async def send(self, notification: Notification) -> None: ...


def build_channel(config: ChannelConfig, *, timeout: float = TIMEOUT_SECONDS) -> Channel:
    match config:
        case WebhookChannelConfig():
            return WebhookChannel(config, timeout=timeout)
        case TeamsWorkflowsChannelConfig():
            return TeamsChannel(config, timeout=timeout)
        case SlackChannelConfig():
            return SlackChannel(config, timeout=timeout)
        case EmailChannelConfig():
            return EmailChannel(config, timeout=timeout)
        case _:
            assert_never(config)


def _ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle)


def _one_line(text: str, *, scrub: tuple[str, ...] = ()) -> str:
    for secret in scrub:
        text = text.replace(secret, "***")
    return clip(" ".join(text.split()), _SNIPPET_CHARS)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class _HttpChannel(ABC):
    """POST one JSON document; subclasses choose the document and any extra headers."""

    def __init__(self, name: str, url: str, ca_bundle: Path | None, *, timeout: float) -> None:
        self.name = name
        self._url = url
        self._ssl = _ssl_context(ca_bundle)
        self._timeout = timeout
        # Receivers sometimes echo the request URL; path and query tokens of a Teams/Slack URL are
        # the credential, so they are blanked out of any response text we quote.
        parts = urlsplit(url)
        tokens = re.split(r"[/?&=]", f"{parts.path}?{parts.query}")
        self._scrub = (url, *sorted((t for t in tokens if len(t) >= 16), key=len, reverse=True))

    @abstractmethod
    def _document(self, notification: Notification) -> dict[str, Any]: ...

    def _headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        return {}

    async def send(self, notification: Notification) -> None:
        body = json.dumps(self._document(notification), ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", **self._headers(notification, body)}
        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self._timeout),
                    connector=aiohttp.TCPConnector(ssl=self._ssl),
                ) as session,
                session.post(self._url, data=body, headers=headers, allow_redirects=False) as response,
            ):
                status = response.status
                if status < 300:
                    return
                text = (await response.content.read(4096)).decode(errors="replace")
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except TimeoutError:
            raise DeliveryError(self.name, f"no answer within {self._timeout:g} s", permanent=False) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            # A wrong CA bundle or a bad certificate does not fix itself between retries.
            raise DeliveryError(
                self.name, f"TLS certificate of {exc.host} not trusted (check ca_bundle)", permanent=True
            ) from None
        except aiohttp.ClientConnectorError as exc:
            reason = exc.os_error.strerror or type(exc.os_error).__name__
            raise DeliveryError(
                self.name, f"cannot connect to {exc.host}:{exc.port}: {reason}", permanent=False
            ) from None
        except aiohttp.ClientError as exc:
            # Not str(exc): some aiohttp errors quote the request URL.
            raise DeliveryError(self.name, f"HTTP request failed: {type(exc).__name__}", permanent=False) from None
        transient = status == 429 or status >= 500
        snippet = _one_line(text, scrub=self._scrub)
        raise DeliveryError(
            self.name,
            f"HTTP {status}" + (f": {snippet}" if snippet else ""),
            permanent=not transient,
            status=status,
            retry_after=retry_after if transient else None,
        )


class WebhookChannel(_HttpChannel):
    def __init__(self, config: WebhookChannelConfig, *, timeout: float = TIMEOUT_SECONDS) -> None:
        super().__init__(config.name, config.url, config.ca_bundle, timeout=timeout)
        self._key = config.signing_secret.get_secret_value().encode()

    def _document(self, notification: Notification) -> dict[str, Any]:
        # `action` only tells the delivery which page to link; receivers get the `link` itself.
        return notification.model_dump(mode="json", exclude={"action"})

    def _headers(self, notification: Notification, body: bytes) -> dict[str, str]:
        timestamp = str(int(time.time()))
        digest = hmac.new(self._key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return {
            "X-Notification-Id": notification.notification_id,
            "X-Timestamp": timestamp,
            "X-Signature-SHA256": f"sha256={digest}",
        }


_TEAMS_COLOR = {"info": "Accent", "warning": "Warning", "critical": "Attention"}


class TeamsChannel(_HttpChannel):
    def __init__(self, config: TeamsWorkflowsChannelConfig, *, timeout: float = TIMEOUT_SECONDS) -> None:
        super().__init__(config.name, config.url.get_secret_value(), config.ca_bundle, timeout=timeout)

    def _document(self, notification: Notification) -> dict[str, Any]:
        n = notification
        card: dict[str, Any] = {
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "type": "AdaptiveCard",
            "version": "1.4",
            "msteams": {"width": "Full"},
            "body": [
                {
                    "type": "TextBlock",
                    "text": n.headline,
                    "size": "Large",
                    "weight": "Bolder",
                    "color": _TEAMS_COLOR[n.severity],
                    "wrap": True,
                },
                {"type": "TextBlock", "text": n.summary, "wrap": True},
                {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in n.fact_rows()]},
                {"type": "TextBlock", "text": "Next action", "weight": "Bolder", "spacing": "Medium"},
                {"type": "TextBlock", "text": n.next_action, "fontType": "Monospace", "wrap": True},
                {
                    "type": "TextBlock",
                    "text": f"{n.kind} · {n.notification_id}",
                    "size": "Small",
                    "isSubtle": True,
                    "wrap": True,
                },
            ],
        }
        if n.link:
            card["actions"] = [{"type": "Action.OpenUrl", "title": "Open", "url": n.link}]
        return {
            "type": "message",
            "attachments": [
                {
                    "contentType": "application/vnd.microsoft.card.adaptive",
                    "contentUrl": None,
                    "content": card,
                }
            ],
        }


def _mrkdwn(text: str) -> str:
    # Slack reads &, < and > as markup (<!channel> would ping everyone).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackChannel(_HttpChannel):
    # Block Kit limits: header 150 chars, section text 3000, at most 10 fields of 2000 each.
    def __init__(self, config: SlackChannelConfig, *, timeout: float = TIMEOUT_SECONDS) -> None:
        super().__init__(config.name, config.url.get_secret_value(), config.ca_bundle, timeout=timeout)

    def _document(self, notification: Notification) -> dict[str, Any]:
        n = notification
        fields = [{"type": "mrkdwn", "text": clip(f"*{_mrkdwn(k)}*\n{_mrkdwn(v)}", 2000)} for k, v in n.fact_rows()]

        def section(text: str) -> dict[str, Any]:
            return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, 3000)}}

        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": clip(n.headline, 150)}},
            section(_mrkdwn(n.summary)),
            *({"type": "section", "fields": fields[i : i + 10]} for i in range(0, len(fields), 10)),
            section(f"*Next action*\n```{_mrkdwn(n.next_action)}```"),
        ]
        if n.link:
            # A link rather than a button: buttons need an interactivity endpoint on the Slack app.
            blocks.append(section(f"<{_mrkdwn(n.link).replace('|', '%7C')}|Open>"))
        blocks.append(
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _mrkdwn(f"{n.kind} · {n.notification_id}")}],
            }
        )
        return {"text": n.headline, "blocks": blocks}


# Headers are not folded below RFC 5322's hard limit, so X-Notification-Id (no spaces to fold at)
# arrives on one line exactly as sent.
_MAIL_POLICY = email.policy.default.clone(max_line_length=998)


class EmailChannel:
    def __init__(self, config: EmailChannelConfig, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.name = config.name
        self._config = config
        self._ssl = _ssl_context(config.ca_bundle)
        self._timeout = timeout
        self._domain = parseaddr(config.sender)[1].rpartition("@")[2]

    async def send(self, notification: Notification) -> None:
        await asyncio.to_thread(self._submit, self.compose(notification))

    def compose(self, notification: Notification) -> EmailMessage:
        n = notification
        message = EmailMessage(policy=_MAIL_POLICY)
        message["Subject"] = n.headline
        message["From"] = self._config.sender
        message["To"] = ", ".join(self._config.recipients)
        message["Date"] = formatdate(usegmt=True)
        # Same notification, same Message-ID: mail clients and archives fold retries together.
        message["Message-ID"] = f"<{hashlib.sha256(n.notification_id.encode()).hexdigest()[:32]}@{self._domain}>"
        message["X-Notification-Id"] = n.notification_id
        message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies
        message.set_content(n.plain_text())
        message.add_alternative(_html(n), subtype="html")
        return message

    def _submit(self, message: EmailMessage) -> None:
        config = self._config
        try:
            with smtplib.SMTP(config.host, config.port, timeout=self._timeout) as smtp:
                if config.starttls:
                    smtp.starttls(context=self._ssl)
                if config.username is not None and config.password is not None:
                    smtp.login(config.username, config.password.get_secret_value())
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients
        except smtplib.SMTPResponseException as exc:
            reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
            raise self._error(
                f"SMTP {exc.smtp_code} {reply}".strip(), permanent=exc.smtp_code >= 500, status=exc.smtp_code
            ) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise self._error(str(exc), permanent=True) from None
        except ssl.SSLCertVerificationError:
            raise self._error(
                f"TLS certificate of {config.host} not trusted (check ca_bundle)", permanent=True
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise self._error(f"SMTP session failed: {type(exc).__name__}", permanent=False) from None
        if refused:
            # A 4xx (greylisting, mailbox full) may pass later, so it is worth a retry even though
            # recipients who got it then get it again (same Message-ID); a 5xx will not change.
            codes = sorted({code for code, _ in refused.values()})
            raise self._error(
                f"{len(refused)} of {len(config.recipients)} recipients refused: "
                f"{', '.join(sorted(refused))} (SMTP {', '.join(map(str, codes))})",
                permanent=codes[0] >= 500,
                status=codes[-1],
            )

    def _error(self, detail: str, *, permanent: bool, status: int | None = None) -> DeliveryError:
        password = self._config.password
        scrub = (password.get_secret_value(),) if password is not None else ()
        return DeliveryError(self.name, _one_line(detail, scrub=scrub), permanent=permanent, status=status)


def _html(n: Notification) -> str:
    e = html.escape
    rows = "".join(f'<tr><th align="left">{e(k)}</th><td>{e(v)}</td></tr>' for k, v in n.fact_rows())
    link = f'<p><a href="{e(n.link)}">Open</a></p>' if n.link else ""
    return (
        f"<!DOCTYPE html><html><body><h2>{e(n.headline)}</h2><p>{e(n.summary)}</p>"
        f"<table>{rows}</table><p><b>Next action</b></p><pre>{e(n.next_action)}</pre>{link}"
        f'<p style="color:#666;font-size:small">Notification ID: {e(n.notification_id)}</p></body></html>\n'
    )
