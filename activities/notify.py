"""Delivering a notification to every configured channel, each retried on its own."""

from __future__ import annotations

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import names
from activities.models import NotifyInput, NotifyResult
from common.settings import Settings
from notifications.dispatcher import deliver

log = structlog.get_logger(__name__)


class NotifyActivities:
    def __init__(self, settings: Settings) -> None:
        self._channels = settings.notification_channels
        self._escalation = settings.escalation_channels

    @activity.defn(name=names.NOTIFY)
    async def notify(self, req: NotifyInput) -> NotifyResult:
        n = req.notification
        # The log line is the reminder of record even when no channel is configured.
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
        channels = [*self._channels, *(self._escalation if req.escalate else [])]
        # Channels an earlier attempt already reached are skipped, so a retry duplicates nothing.
        details = activity.info().heartbeat_details
        already = set(details[0]) if details else set()
        report = await deliver(n, [c for c in channels if c.name not in already])
        delivered = sorted(already | set(report.delivered))
        activity.heartbeat(delivered)
        if report.retryable:
            raise ApplicationError(
                f"notification {n.notification_id} not yet delivered to {', '.join(report.retryable)}",
                type="DeliveryFailed",
            )
        failed = [o.channel for o in report.outcomes if not o.ok]
        return NotifyResult(delivered=delivered, failed_permanently=failed)
