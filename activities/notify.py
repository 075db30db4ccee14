"""Delivering notifications: which channels there are, and one channel's delivery.

The workflow schedules one delivery activity per channel (workflows/notify.py), so Temporal retries
each channel on its own and a retry never re-sends to a channel that already has the message.
"""

from __future__ import annotations

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from common.links import LinkSigner
from common.metrics import NOTIFICATIONS_FAILED, REMINDERS_SENT
from common.settings import Settings
from models import activity_names as names
from models.activities import DeliverInput, NotifyInput
from notifications.config import ChannelConfig
from notifications.dispatcher import deliver

log = structlog.get_logger(__name__)
ESCALATION = "escalation:"


class NotifyActivities:
    def __init__(self, settings: Settings) -> None:
        # Notifications about an administrator's step carry a fresh signed link to its page.
        self._links = LinkSigner.from_settings(settings)
        # Escalation channels get their own names: a name need only be unique within its list.
        self._channels: dict[str, ChannelConfig] = {c.name: c for c in settings.notification_channels}
        self._channels |= {ESCALATION + c.name: c for c in settings.escalation_channels}

    @activity.defn(name=names.NOTIFICATION_CHANNELS)
    async def notification_channels(self, req: NotifyInput) -> list[str]:
        n = req.notification
        # The log line is the notification of record, even when no channel is configured.
        log.info(
            "notification",
            notification_id=n.notification_id,
            integration_id=n.integration_id,
            kind=n.kind,
            severity=n.severity,
            title=n.title,
            next_action=n.next_action,
            escalated=req.escalate,
        )
        REMINDERS_SENT.labels(n.severity).inc()
        return [name for name in self._channels if req.escalate or not name.startswith(ESCALATION)]

    @activity.defn(name=names.DELIVER_NOTIFICATION)
    async def deliver_notification(self, req: DeliverInput) -> None:
        config = self._channels.get(req.channel)
        if config is None:  # the channel was removed from the settings since the list was taken
            log.warning("notification channel no longer configured", channel=req.channel)
            return
        notification = req.notification
        if notification.action is not None:
            link = self._links.url(notification.integration_id, notification.action)
            notification = notification.model_copy(update={"link": link})
        report = await deliver(notification, [config])
        outcome = report.outcomes[0]
        if not outcome.ok:
            NOTIFICATIONS_FAILED.labels(req.channel).inc()
            raise ApplicationError(
                outcome.message or f"{req.channel}: {outcome.error}",
                type=outcome.error or "DeliveryFailed",
                non_retryable=bool(outcome.permanent),
            )
