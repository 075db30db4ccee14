"""Workflow-side helpers shared by the workflows (deterministic code only)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from models import activity_names as activity
    from models.activities import (
        CreateSecretInput,
        DiscardSecretsInput,
        DiscardSecretsResult,
        ProveSecretInput,
        ProveSecretResult,
    )
    from models.integration import AppIds, LifecycleOptions, SecretRef

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


# The secret steps both the onboarding and a rotation take.


async def create_secret(
    integration_id: str, app: AppIds, *, operation_id: str, description: str, expires_at: datetime
) -> SecretRef:
    """``addPassword`` tagged with ``operation_id``: a retried attempt reconciles, never adds twice."""
    return await run_activity(
        activity.CREATE_CLIENT_SECRET,
        CreateSecretInput(
            integration_id=integration_id,
            tenant_id=app.tenant_id,
            application_object_id=app.application_object_id,
            operation_id=operation_id,
            description=description,
            expires_at=expires_at,
        ),
        SecretRef,
    )


async def prove_secret(
    integration_id: str, app: AppIds, key_id: str, options: LifecycleOptions, *, sign_in_id: str
) -> ProveSecretResult:
    """Sign in with the new secret until Entra accepts it (replication), marked with ``sign_in_id``."""
    return await run_activity(
        activity.PROVE_SECRET,
        ProveSecretInput(
            integration_id=integration_id,
            tenant_id=app.tenant_id,
            client_id=app.client_id,
            key_id=key_id,
            timeout=options.secret_replication_timeout,
            sign_in_id=sign_in_id,
        ),
        ProveSecretResult,
        start_to_close_timeout=options.secret_replication_timeout + timedelta(minutes=1),
    )


async def discard_operation_secrets(integration_id: str, app: AppIds, operation_id: str) -> DiscardSecretsResult:
    """Remove whatever an operation added (found by its tag), known to the workflow or not."""
    return await run_activity(
        activity.DISCARD_OPERATION_SECRETS,
        DiscardSecretsInput(
            integration_id=integration_id,
            tenant_id=app.tenant_id,
            application_object_id=app.application_object_id,
            operation_id=operation_id,
        ),
        DiscardSecretsResult,
    )
