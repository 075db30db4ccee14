"""Activities that talk to Temporal itself: an integration's rotation schedule.

The schedule's action starts a small workflow (RotationRequestWorkflow, by name: activities don't
import workflows) that asks the integration to rotate; the integration runs the rotation as its own
child, so it always learns how the rotation ended.
"""

from __future__ import annotations

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
)
from temporalio.service import RPCError, RPCStatusCode

from common.settings import Settings
from models import activity_names as names
from models.activities import ActivityResult, IntegrationRef, ScheduleInput
from models.integration import (
    EPOCH,
    ROTATION_REQUEST_WORKFLOW,
    rotation_request_id_for,
    schedule_id_for,
)

log = structlog.get_logger(__name__)


class ScheduleActivities:
    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._task_queue = settings.temporal.task_queue

    def _schedule(self, req: ScheduleInput) -> Schedule:
        # Interval specs are aligned to the epoch: offset them so the first rotation comes one full
        # interval after now, not at the next epoch-aligned boundary (which could be tomorrow).
        offset = (datetime.now(UTC) - EPOCH) % req.every
        return Schedule(
            action=ScheduleActionStartWorkflow(
                ROTATION_REQUEST_WORKFLOW,
                IntegrationRef(integration_id=req.integration_id),
                id=rotation_request_id_for(req.integration_id),
                task_queue=self._task_queue,
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=req.every, offset=offset)]),
            # The request only asks; the integration refuses a second rotation while one runs.
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

    @activity.defn(name=names.DELETE_ROTATION_SCHEDULE)
    async def delete_rotation_schedule(self, req: IntegrationRef) -> ActivityResult:
        """The integration is gone; so goes its schedule (already gone counts as done)."""
        try:
            await self._client.get_schedule_handle(schedule_id_for(req.integration_id)).delete()
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                raise
        log.info("rotation schedule deleted", integration_id=req.integration_id)
        return ActivityResult(attempt=activity.info().attempt)
