"""The floor: what Temporal itself costs for an onboarding shaped like ours.

A skeleton workflow with IntegrationWorkflow's shape: one activity per step, each only sleeping the
simulated latency times the HTTP calls that step makes; the same consent update; the same timers (the
consent wait's reminder timer, the daily credential check); a rotation schedule created per
integration, as ours does; and the phase search attribute the benchmark watches. No payload codec,
no pydantic, no state, no heartbeats: Temporal's default data converter and worker.py's worker
options. Driven through the same benchmark as ours, it gives "ours ÷ floor", the cost of our code.

    python -m bench.floor        # its worker; settings from the same YEC_TEMPORAL__* variables as worker.py
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from temporalio import activity, workflow
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from common.search_attributes import INTEGRATION_PHASE

WORKFLOW_TYPE = "FloorWorkflow"
CONSENT_UPDATE = "confirm_consent"
# HTTP calls (Graph requests plus, for the new app, OIDC discovery and a token) each activity of
# activities/provisioning.py makes for one new integration in a tenant without faults or Yeastar API.
# The onboarding benchmark compares the Graph calls it measures with these, so a drift shows.
BEFORE_CONSENT = (
    ("preflight", 5),
    ("register_application", 1),
    ("set_redirect_uris", 1),
    ("grant_permissions", 11),
    ("create_client_secret", 2),
    ("prove_secret", 2),
)
VERIFY = ("verify_integration", 7)
CHECK = ("check_credential", 1)
TOKEN_CALLS = 4  # of the calls above: discovery + token in prove_secret and in verify_integration
ACTIVITIES = len(BEFORE_CONSENT) + 3  # + verify, rotation schedule, credential check
ROTATION_EVERY = timedelta(days=90)  # ours: half the default 180-day secret lifetime
DAY = timedelta(days=1)
RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_interval=timedelta(minutes=2))


def graph_calls_per_integration() -> int:
    """Graph requests (token endpoint excluded) the floor stands in for."""
    return sum(calls for _, calls in (*BEFORE_CONSENT, VERIFY, CHECK)) - TOKEN_CALLS


@dataclass
class FloorInput:
    integration_id: str
    latency_ms: float


@dataclass
class FloorCall:
    step: str
    seconds: float


class FloorActivities:
    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    @activity.defn(name="floor_step")
    async def step(self, call: FloorCall) -> None:
        await asyncio.sleep(call.seconds)

    @activity.defn(name="floor_schedule")
    async def schedule(self, integration_id: str) -> None:
        """A schedule like ours (one server-side scheduler per integration); its action never comes due."""
        offset = (datetime.now(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) % ROTATION_EVERY
        await self._client.create_schedule(
            f"floor-rotation-{integration_id}",
            Schedule(
                action=ScheduleActionStartWorkflow(
                    "FloorRotation", id=f"floor-rotation-{integration_id}", task_queue=self._task_queue
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=ROTATION_EVERY, offset=offset)]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )


@workflow.defn(name=WORKFLOW_TYPE)
class FloorWorkflow:
    def __init__(self) -> None:
        self._consented = False

    @workflow.run
    async def run(self, start: FloorInput) -> None:
        self._phase("Provisioning")
        for step, calls in BEFORE_CONSENT:
            await self._call(start, step, calls)
        self._phase("WaitingForConsent")
        while not await self._wait(lambda: self._consented):
            pass  # ours sends a reminder here; nobody waits a day in a benchmark
        self._phase("Verifying")
        await self._call(start, *VERIFY)
        self._phase("Connected")
        await workflow.execute_activity_method(
            FloorActivities.schedule,
            start.integration_id,
            start_to_close_timeout=timedelta(minutes=3),
            retry_policy=RETRY,
        )
        while True:
            await self._call(start, *CHECK)
            await self._wait(lambda: False)

    @workflow.update(name=CONSENT_UPDATE)
    def confirm_consent(self) -> None:
        self._consented = True

    async def _call(self, start: FloorInput, step: str, calls: int) -> None:
        await workflow.execute_activity_method(
            FloorActivities.step,
            FloorCall(step, start.latency_ms * calls / 1000),
            start_to_close_timeout=timedelta(minutes=3),
            schedule_to_close_timeout=timedelta(minutes=30),
            retry_policy=RETRY,
        )

    async def _wait(self, condition: Callable[[], bool]) -> bool:
        try:
            await workflow.wait_condition(condition, timeout=DAY)
        except TimeoutError:
            return False
        return True

    def _phase(self, phase: str) -> None:
        workflow.upsert_search_attributes([INTEGRATION_PHASE.value_set(phase)])


async def _run_worker() -> None:
    from temporalio.worker import Worker

    from common.settings import load_settings
    from common.temporal import compile_workflow_code

    temporal = load_settings(_env_file=None).temporal
    client = await Client.connect(temporal.address, namespace=temporal.namespace)
    activities = FloorActivities(client, temporal.task_queue)
    # The same preparation and options as worker.py's build_worker: only workflow and activities differ.
    compile_workflow_code([FloorWorkflow])
    worker = Worker(
        client,
        task_queue=temporal.task_queue,
        workflows=[FloorWorkflow],
        activities=[activities.step, activities.schedule],
        max_cached_workflows=temporal.max_cached_workflows,
        graceful_shutdown_timeout=timedelta(seconds=20),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        await stop.wait()


def main() -> None:
    from common.temporal import exit_process

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run_worker())
    exit_process(0)


if __name__ == "__main__":
    main()
