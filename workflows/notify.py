"""Sending a notification from workflow code: one activity per channel.

Each channel is delivered and retried on its own, so a retry after a partial delivery re-sends only
to the channel that failed; every channel gets the same ``notification_id`` for receivers to drop a
duplicate (a delivery whose answer was lost). A notification that can't be delivered never stops the
workflow: the caller gets the problems back as text.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models import activity_names as activity
    from models.activities import DeliverInput, NotifyInput
    from notifications.message import Notification
    from workflows.shared import failure_reason

# A channel that is down is retried for an hour; the next reminder is the next chance after that.
DELIVERY_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=1),
    "schedule_to_close_timeout": timedelta(hours=1),
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=5)),
}


async def notify(notification: Notification, *, escalate: bool = False) -> list[str]:
    """Deliver to every configured channel (plus the escalation ones); returns what failed, in words."""
    # A local activity: which channels the worker has (and the log line that records the notification).
    channels: list[str] = await workflow.execute_local_activity(
        activity.NOTIFICATION_CHANNELS,
        NotifyInput(notification=notification, escalate=escalate),
        result_type=list[str],
        start_to_close_timeout=timedelta(seconds=30),
    )
    outcomes = await asyncio.gather(*(_deliver(notification, channel) for channel in channels))
    return [problem for problem in outcomes if problem is not None]


async def _deliver(notification: Notification, channel: str) -> str | None:
    try:
        await workflow.execute_activity(
            activity.DELIVER_NOTIFICATION, DeliverInput(notification=notification, channel=channel), **DELIVERY_OPTIONS
        )
    except ActivityError as err:
        return f"notification {notification.notification_id} not delivered to {channel}: {failure_reason(err)}"
    return None
