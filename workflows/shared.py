"""Workflow-side helpers shared by the integration and rotation workflows (deterministic code only)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities import names as activity
    from activities.models import NotifyInput
    from notifications.message import Notification

T = TypeVar("T")

# Graph calls: the client already retried throttling and replication inside one attempt; Temporal
# retries whole attempts (worker died, Graph down) for up to half an hour before the step is Blocked.
GRAPH_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=3),
    # Activities heartbeat every few seconds: a killed worker's task is retried elsewhere quickly.
    "heartbeat_timeout": timedelta(seconds=15),
    "schedule_to_close_timeout": timedelta(minutes=30),
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=2)),
}
NOTIFY_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=1),
    "schedule_to_close_timeout": timedelta(hours=1),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(minutes=5)),
}


async def run_activity(name: str, arg: Any, result_type: type[T], **options: Any) -> T:
    result: T = await workflow.execute_activity(name, arg, result_type=result_type, **{**GRAPH_OPTIONS, **options})
    return result


async def wait(condition: Callable[[], bool], at_most: timedelta) -> bool:
    """True if `condition` became true, False if `at_most` passed first."""
    try:
        await workflow.wait_condition(condition, timeout=max(at_most, timedelta(seconds=1)))
    except TimeoutError:
        return False
    return True


async def notify(notification: Notification, *, escalate: bool = False) -> str | None:
    """Deliver a notification; returns why it failed instead of raising (a reminder that can't be
    delivered must not stop an integration)."""
    try:
        await workflow.execute_activity(
            activity.NOTIFY, NotifyInput(notification=notification, escalate=escalate), **NOTIFY_OPTIONS
        )
    except ActivityError as err:
        return f"notification {notification.notification_id} not delivered: {err.cause or err}"
    return None


def history_too_long(limit: int) -> bool:
    info = workflow.info()
    return info.get_current_history_length() >= limit or info.is_continue_as_new_suggested()
