"""What a reminder says, independent of the channel that carries it.

A :class:`Notification` is built from IDs and dates only; it never carries a secret. As a last
line of defence it refuses any text that looks like an Entra client secret.

``notification_id`` must be the same every time the same reminder is (re)sent, e.g.
``f"{integration_id}:secret_expiry:{expiry_date}:7d"``, so a receiver can drop duplicates: it is
the webhook's ``X-Notification-Id``, the body's ``notification_id`` and the source of the e-mail
``Message-ID``.

Kinds in use: ``secret_expiry``, ``consent_pending``, ``rotation_pending``, ``secret_missing``,
``blocked``.
"""

from __future__ import annotations

import re
from datetime import UTC
from textwrap import indent
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from models.integration import AdminAction
from notifications.config import HttpsUrl

Severity = Literal["info", "warning", "critical"]

# The shape secret scanners use for Entra client secrets ("abc8Q~" + 31-34 characters).
_ENTRA_SECRET = re.compile(r"[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}")


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line(value: str) -> str:
    return clip(" ".join(value.split()), 200)


def _text(value: str) -> str:
    return clip(value, 2000)


# Over-long text is cut rather than refused: a notification is built inside workflow code, where a
# validation error would stall the workflow instead of merely shortening a reminder.
_Required = StringConstraints(strip_whitespace=True, min_length=1)
Line = Annotated[str, _Required, AfterValidator(_line)]
Text = Annotated[str, _Required, AfterValidator(_text)]


class Notification(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # Header-safe: it goes into HTTP and mail headers verbatim.
    notification_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,199}$")
    integration_id: Line
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    severity: Severity
    title: Line
    summary: Text
    due: AwareDatetime | None = None
    next_action: Text
    facts: dict[str, str] = Field(default_factory=dict)
    link: HttpsUrl | None = None
    # The administrator's page this notification is about; the delivery adds the signed `link` to it.
    action: AdminAction | None = None

    @model_validator(mode="after")
    def _no_secret_lookalike(self) -> Notification:
        texts = [self.integration_id, self.title, self.summary, self.next_action, self.link or ""]
        texts += [*self.facts, *self.facts.values()]
        if any(_ENTRA_SECRET.search(text) for text in texts):
            raise ValueError("text looks like a client secret; notifications carry only IDs and dates")
        return self

    @property
    def headline(self) -> str:
        """One line for subjects, chat previews and push notifications."""
        return f"[{self.severity.upper()}] {self.title}"

    def fact_rows(self) -> list[tuple[str, str]]:
        """Label/value pairs every channel shows, in order: integration, due date, then ``facts``."""
        rows = [("Integration", self.integration_id)]
        if self.due is not None:
            rows.append(("Due", self.due.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")))
        return rows + list(self.facts.items())

    def plain_text(self) -> str:
        lines = [self.headline, "", self.summary, ""]
        lines += [f"{label}: {value}" for label, value in self.fact_rows()]
        lines += ["", "Next action:", indent(self.next_action, "    ")]
        if self.link:
            lines += ["", f"Open: {self.link}"]
        lines += ["", f"Notification ID: {self.notification_id}"]
        return "\n".join(lines) + "\n"
