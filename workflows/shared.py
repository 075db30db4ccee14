"""Workflow-side helpers shared by the workflows (deterministic code only)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

T = TypeVar("T")

# Graph calls: the client already retried throttling and replication inside one attempt; Temporal
# retries whole attempts (worker died, Graph down) for up to half an hour before the step is Blocked.
GRAPH_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": timedelta(minutes=3),
    # Long steps heartbeat every few seconds: a killed worker's task is retried elsewhere quickly.
    "heartbeat_timeout": timedelta(seconds=15),
    "schedule_to_close_timeout": timedelta(minutes=30),
    "retry_policy": RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=2)),
}


async def run_activity(name: str, arg: Any, result_type: type[T], **options: Any) -> T:
    result: T = await workflow.execute_activity(name, arg, result_type=result_type, **{**GRAPH_OPTIONS, **options})
    return result


async def signal_quietly(sending: Awaitable[None], signal: str) -> bool:
    """Await ``sending`` (a signal to another workflow); False, logged and never raised, if that
    workflow has closed or is unknown.

    A message between workflows must not fail its sender: the receiver may have ended a moment ago,
    and each sender learns how its peers ended by other means (a child's result, a status query).
    """
    try:
        await sending
    except FailureError as err:
        workflow.logger.warning("signal not delivered", extra={"signal": signal, "error": str(err)})
        return False
    return True


def failure_reason(err: FailureError) -> str:
    """The plain-words reason of a failed activity or child workflow (its innermost cause)."""
    innermost = err
    while isinstance(innermost.cause, FailureError):
        innermost = innermost.cause
    return innermost.message or str(innermost)


def history_too_long(limit: int) -> bool:
    info = workflow.info()
    return info.get_current_history_length() >= limit or info.is_continue_as_new_suggested()
