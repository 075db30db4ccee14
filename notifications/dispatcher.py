"""Fan one notification out to every configured channel at once.

Channels are independent: each gets its own attempt, and a failing or slow one never holds up or
cancels the others. The report says per channel whether it was delivered, and if not the error
class, a message free of URLs and passwords, and whether retrying can help. A caller that retries
should retry only ``report.retryable`` channels, with the same notification (same
``notification_id``), so receivers can drop what they already have.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog
from pydantic import BaseModel, ConfigDict

from notifications.channels import DeliveryError, build_channel
from notifications.config import ChannelConfig
from notifications.message import Notification

log = structlog.get_logger(__name__)


class ChannelOutcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    channel: str
    type: str
    ok: bool
    error: str | None = None
    message: str | None = None
    permanent: bool | None = None


class DeliveryReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    notification_id: str
    outcomes: list[ChannelOutcome]

    @property
    def all_delivered(self) -> bool:
        return all(o.ok for o in self.outcomes)

    @property
    def delivered(self) -> list[str]:
        return [o.channel for o in self.outcomes if o.ok]

    @property
    def retryable(self) -> list[str]:
        return [o.channel for o in self.outcomes if not o.ok and not o.permanent]


async def deliver(notification: Notification, channels: Sequence[ChannelConfig]) -> DeliveryReport:
    outcomes = await asyncio.gather(*(_attempt(notification, config) for config in channels))
    return DeliveryReport(notification_id=notification.notification_id, outcomes=list(outcomes))


async def _attempt(notification: Notification, config: ChannelConfig) -> ChannelOutcome:
    bound = log.bind(channel=config.name, channel_type=config.type, notification_id=notification.notification_id)
    try:
        await build_channel(config).send(notification)
    except DeliveryError as exc:
        bound.warning("notification_not_delivered", error=str(exc), permanent=exc.permanent)
        return ChannelOutcome(
            channel=config.name,
            type=config.type,
            ok=False,
            error=type(exc).__name__,
            message=str(exc),
            permanent=exc.permanent,
        )
    except Exception as exc:
        # A bug, not a delivery problem: its text may quote anything (a URL), so only the class is
        # reported, and as permanent since repeating the same call will hit the same bug.
        bound.error("notification_channel_crashed", error=type(exc).__name__)
        return ChannelOutcome(
            channel=config.name,
            type=config.type,
            ok=False,
            error=type(exc).__name__,
            message=f"{config.name}: unexpected {type(exc).__name__} (a bug in the channel)",
            permanent=True,
        )
    bound.info("notification_delivered")
    return ChannelOutcome(channel=config.name, type=config.type, ok=True)
