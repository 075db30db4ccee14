"""Where reminders go: one pydantic model per channel type, chosen by ``type``.

Channels are configured as JSON in two environment variables (or ``.env``), ``YEC_NOTIFICATION_CHANNELS``
(every reminder) and ``YEC_ESCALATION_CHANNELS`` (reminders nobody acted on); each is a
:data:`ChannelList`, so every channel in one list needs a unique ``name``::

    YEC_NOTIFICATION_CHANNELS='[
      {"type": "webhook", "name": "ops-hook", "url": "https://hooks.example.com/yeastar",
       "signing_secret": "a-long-random-string"},
      {"type": "teams", "name": "it-teams",
       "url": "https://prod-12.westeurope.logic.azure.com:443/workflows/…/invoke?…&sig=…"},
      {"type": "slack", "name": "it-slack", "url": "https://hooks.slack.com/services/T…/B…/…"},
      {"type": "email", "name": "it-mail", "host": "smtp.example.com", "username": "pbx-bot",
       "password": "…", "sender": "PBX connector <pbx-bot@example.com>",
       "recipients": ["it-admins@example.com"]}
    ]'

URLs must be ``https://``; ``http://`` is accepted only for a loopback host (a receiver on the same
machine). Teams Workflows and Slack webhook URLs are credentials (anyone holding one can post), so
they are ``SecretStr`` like the signing secret and the SMTP password; no error message repeats them.
``ca_bundle`` (optional, PEM) replaces the system trust store for that channel.
"""

from __future__ import annotations

import ipaddress
from email.utils import parseaddr
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, FilePath, SecretStr, model_validator


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(value: str) -> None:
    # The message never repeats the value: for Teams and Slack the URL is the credential.
    parts = urlsplit(value)
    host = parts.hostname or ""
    if not host or parts.scheme not in ("https", "http"):
        raise ValueError("must be an https:// URL")
    if parts.scheme == "http" and not _is_loopback(host):
        raise ValueError("must be https:// (http:// is allowed only to a loopback host)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry user:password@ (use the channel's own credential fields)")


def _url(value: str) -> str:
    _check_url(value)
    return value


def _secret_url(value: SecretStr) -> SecretStr:
    _check_url(value.get_secret_value())
    return value


def _mailbox(value: str) -> str:
    _, address = parseaddr(value)
    if "@" not in address or any(c in value for c in "\r\n"):
        raise ValueError(f"must be an e-mail address like it@example.com, got {value!r}")
    return value


HttpsUrl = Annotated[str, AfterValidator(_url)]
SecretWebhookUrl = Annotated[SecretStr, AfterValidator(_secret_url)]
Mailbox = Annotated[str, AfterValidator(_mailbox)]


class _Channel(BaseModel):
    # hide_input_in_errors: a rejected value may be a secret URL.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class WebhookChannelConfig(_Channel):
    """Generic JSON webhook, HMAC-signed; the scheme is in :mod:`notifications.channels`."""

    type: Literal["webhook"] = "webhook"
    url: HttpsUrl
    signing_secret: SecretStr = Field(min_length=16)
    ca_bundle: FilePath | None = None


class TeamsWorkflowsChannelConfig(_Channel):
    """Teams "Workflows" webhook (Power Automate "When a Teams webhook request is received")."""

    type: Literal["teams"] = "teams"
    url: SecretWebhookUrl
    ca_bundle: FilePath | None = None


class SlackChannelConfig(_Channel):
    """Slack incoming webhook (Block Kit message)."""

    type: Literal["slack"] = "slack"
    url: SecretWebhookUrl
    ca_bundle: FilePath | None = None


class EmailChannelConfig(_Channel):
    """SMTP submission, STARTTLS (required unless ``starttls`` is false) and AUTH when a username is set."""

    type: Literal["email"] = "email"
    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = None
    sender: Mailbox
    recipients: list[Mailbox] = Field(min_length=1)
    ca_bundle: FilePath | None = None

    @model_validator(mode="after")
    def _credentials_need_tls(self) -> EmailChannelConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password must be set together")
        if self.username is not None and not self.starttls and not _is_loopback(self.host):
            raise ValueError("refusing to send SMTP credentials without STARTTLS to a non-loopback host")
        return self


ChannelConfig = Annotated[
    WebhookChannelConfig | TeamsWorkflowsChannelConfig | SlackChannelConfig | EmailChannelConfig,
    Field(discriminator="type"),
]


def _unique_names(channels: list[ChannelConfig]) -> list[ChannelConfig]:
    names = [c.name for c in channels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"channel names must be unique, repeated: {', '.join(duplicates)}")
    return channels


ChannelList = Annotated[list[ChannelConfig], AfterValidator(_unique_names)]
