"""Activities that talk to Temporal itself: the rotation schedule, and asking the integration workflow
to accept a rotation (an update, so a refusal comes back with its reason)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import structlog
from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
    WorkflowUpdateFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from activities import names
from activities.errors import blocking
from activities.models import ActivityResult, BeginRotationInput, ScheduleInput
from common.settings import Settings
from workflows.integration import IntegrationWorkflow
from workflows.models import RotationPlan, RotationRequest, RotationStart, workflow_id_for
from workflows.rotation import SecretRotationWorkflow

log = structlog.get_logger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def schedule_id_for(integration_id: str) -> str:
    return f"rotation-{integration_id}"


class RotationActivities:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._task_queue = settings.temporal.task_queue

    def _schedule(self, req: ScheduleInput) -> Schedule:
        # Interval specs are aligned to the epoch: offset them so the first rotation comes one full
        # interval after now, not at the next epoch-aligned boundary (which could be tomorrow).
        offset = (datetime.now(UTC) - EPOCH) % req.every
        return Schedule(
            action=ScheduleActionStartWorkflow(
                SecretRotationWorkflow.run,
                args=[RotationRequest(integration_id=req.integration_id), None],
                id=schedule_id_for(req.integration_id),
                task_queue=self._task_queue,
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=req.every, offset=offset)]),
            # One rotation per integration at a time; the integration workflow enforces it too.
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        )

    @activity.defn(name=names.ENSURE_ROTATION_SCHEDULE)
    async def ensure_rotation_schedule(self, req: ScheduleInput) -> ActivityResult:
        schedule = self._schedule(req)
        try:
            await self._client.create_schedule(schedule_id_for(req.integration_id), schedule)
            log.info("rotation schedule created", integration_id=req.integration_id, every=str(req.every))
        except ScheduleAlreadyRunningError:
            handle = self._client.get_schedule_handle(schedule_id_for(req.integration_id))

            def keep_state(current: ScheduleUpdateInput) -> ScheduleUpdate:
                # A paused schedule stays paused: the operator's choice wins over our interval update.
                schedule.state = current.description.schedule.state
                return ScheduleUpdate(schedule=schedule)

            await handle.update(keep_state)
            log.info("rotation schedule updated", integration_id=req.integration_id, every=str(req.every))
        return ActivityResult(attempt=activity.info().attempt)

    @activity.defn(name=names.BEGIN_ROTATION)
    async def begin_rotation(self, req: BeginRotationInput) -> RotationPlan:
        handle = self._client.get_workflow_handle(workflow_id_for(req.integration_id))
        try:
            plan: RotationPlan = await handle.execute_update(
                IntegrationWorkflow.begin_rotation,
                RotationStart(rotation_workflow_id=req.rotation_workflow_id, reason=req.reason),
            )
        except WorkflowUpdateFailedError as exc:
            reason = getattr(exc.cause, "message", str(exc.cause))
            raise blocking(
                "RotationRefused", reason, "Nothing to do; the next scheduled rotation tries again."
            ) from None
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
            with contextlib.suppress(RPCError):  # an integration that is gone needs no schedule either
                await self._client.get_schedule_handle(schedule_id_for(req.integration_id)).delete()
            raise blocking(
                "IntegrationNotFound", f"no running integration {req.integration_id}", "Nothing to rotate."
            ) from None
        return plan
