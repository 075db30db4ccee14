"""Drives a fleet of onboarding workflows to Connected, playing operator and human for each of them.

The harness starts the workflows, watches the phase search attribute through visibility (one list
query per poll for the whole fleet, so watching costs the worker nothing: a status query per workflow
would be a workflow task each), signals consent as soon as a workflow waits for it, and stops when
all are Connected. Afterwards the histories give each integration's exact times (server event
times) and event counts. Ours and the floor are driven by the same code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.converter import decode_typed_search_attributes

from bench.floor import WORKFLOW_TYPE, FloorInput, FloorWorkflow
from common import search_attributes
from models.integration import (
    ConsentConfirmation,
    LifecycleOptions,
    OnboardInput,
    Phase,
    RedirectUris,
    workflow_id_for,
)
from workflows.integration import IntegrationWorkflow

# In-flight RPCs from the harness (starts, signals, history fetches): enough to keep a worker busy
# without the harness itself becoming the load.
RPC_CONCURRENCY = 32


@dataclass(frozen=True)
class Fleet:
    """How to drive one kind of onboarding workflow."""

    client: Client
    workflow_type: str
    start: Callable[[str], Awaitable[None]]  # integration ID -> workflow started
    consent: Callable[[str], Awaitable[None]]  # workflow ID -> consent signalled


def redirect_uris_for(integration_id: str) -> RedirectUris:
    """What the admin would read in this PBX's portal (step 1 of the guide)."""
    pbx = f"https://{integration_id}.ras.yeastarcloud.com"
    return RedirectUris(
        redirect_uri=f"{pbx}/api/oauth2/microsoft/callback", sso_redirect_uri=f"{pbx}/sso/microsoft/callback"
    )


def ours(client: Client, *, tenant_id: str, task_queue: str) -> Fleet:
    """IntegrationWorkflow, started as `starter.py onboard --redirect-uri … --sso-redirect-uri …` does."""

    async def start(integration_id: str) -> None:
        onboard = OnboardInput(
            integration_id=integration_id,
            tenant_id=tenant_id,
            redirect_uris=redirect_uris_for(integration_id),
            options=LifecycleOptions(),
        )
        await client.start_workflow(
            IntegrationWorkflow.run,
            args=[onboard, None],
            id=workflow_id_for(integration_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attributes.INTEGRATION_ID, integration_id),
                    SearchAttributePair(search_attributes.INTEGRATION_PHASE, str(Phase.STARTING)),
                    SearchAttributePair(search_attributes.TENANT_ID, tenant_id),
                ]
            ),
        )

    async def consent(workflow_id: str) -> None:
        await client.get_workflow_handle(workflow_id).execute_update(
            IntegrationWorkflow.confirm_consent, ConsentConfirmation(confirmed_by="bench")
        )

    return Fleet(client, "IntegrationWorkflow", start, consent)


def floor(client: Client, *, task_queue: str, latency_ms: float) -> Fleet:
    """The skeleton of bench/floor.py, started and signalled the same way."""

    async def start(integration_id: str) -> None:
        await client.start_workflow(
            FloorWorkflow.run,
            FloorInput(integration_id, latency_ms),
            id=workflow_id_for(integration_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(search_attributes.INTEGRATION_PHASE, str(Phase.STARTING))]
            ),
        )

    async def consent(workflow_id: str) -> None:
        await client.get_workflow_handle(workflow_id).execute_update(FloorWorkflow.confirm_consent)

    return Fleet(client, WORKFLOW_TYPE, start, consent)


@dataclass
class Timeline:
    """One integration's history, in server time (seconds since the epoch)."""

    workflow_id: str
    events: int
    history_bytes: int = 0
    activities: int = 0
    timers: int = 0
    upserts: int = 0
    started: float | None = None
    waiting_for_consent: float | None = None
    signalled: float | None = None
    connected: float | None = None


@dataclass
class FleetRun:
    requested_at: float  # when the harness sent the first start (time.time())
    observed_done_at: float  # when the harness saw the last one Connected
    workflow_ids: list[str]
    # Seconds from a workflow's WaitingForConsent to the harness sending the signal (visibility lag
    # plus the poll interval: a delay the harness adds, the same for every variant).
    consent_delays: list[float] = field(default_factory=list)


def _phase_query(workflow_type: str, phase: Phase) -> str:
    return (
        f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running' "
        f"AND {search_attributes.INTEGRATION_PHASE.name} = '{phase}'"
    )


async def drive(
    fleet: Fleet,
    integration_ids: Sequence[str],
    *,
    window: int,
    poll_interval: float = 0.2,
    limit: timedelta = timedelta(minutes=30),
    progress: Callable[[str], None] | None = None,
) -> FleetRun:
    """Onboard every integration, at most ``window`` of them between start and Connected at a time."""
    client = fleet.client
    rpc = asyncio.Semaphore(RPC_CONCURRENCY)
    waiting_since: dict[str, float] = {}  # workflow ID -> when the harness first saw it waiting
    signalled: set[str] = set()
    run = FleetRun(time.time(), 0.0, [workflow_id_for(i) for i in integration_ids])
    to_start = list(reversed(integration_ids))
    in_flight: set[asyncio.Task[None]] = set()
    started = connected = 0
    deadline = time.monotonic() + limit.total_seconds()
    last_note = time.monotonic()

    async def bounded(call: Awaitable[None]) -> None:
        async with rpc:
            await call

    async def signal(workflow_id: str) -> None:
        await bounded(fleet.consent(workflow_id))
        run.consent_delays.append(time.time() - waiting_since[workflow_id])

    while True:
        for task in [t for t in in_flight if t.done()]:
            in_flight.discard(task)
            task.result()  # a failed start or signal ends the benchmark with its error
        while to_start and started - connected < window:
            in_flight.add(asyncio.create_task(bounded(fleet.start(to_start.pop()))))
            started += 1
        async for execution in client.list_workflows(_phase_query(fleet.workflow_type, Phase.WAITING_FOR_CONSENT)):
            if execution.id not in signalled:
                signalled.add(execution.id)
                waiting_since[execution.id] = time.time()
                in_flight.add(asyncio.create_task(signal(execution.id)))
        connected = (await client.count_workflows(_phase_query(fleet.workflow_type, Phase.CONNECTED))).count
        if connected >= len(integration_ids):
            break
        blocked = (await client.count_workflows(_phase_query(fleet.workflow_type, Phase.BLOCKED))).count
        if blocked:
            raise RuntimeError(f"{blocked} integration(s) Blocked: see the worker log and `starter.py status`")
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {connected}/{len(integration_ids)} Connected after {limit}")
        if progress is not None and time.monotonic() - last_note > 10:
            progress(f"{connected}/{len(integration_ids)} Connected, {len(signalled)} consented")
            last_note = time.monotonic()
        await asyncio.sleep(poll_interval)
    run.observed_done_at = time.time()
    await asyncio.gather(*in_flight)
    return run


def _seconds(event: HistoryEvent) -> float:
    return event.event_time.ToMicroseconds() / 1e6


def timeline_of(workflow_id: str, events: Sequence[HistoryEvent]) -> Timeline:
    timeline = Timeline(workflow_id, len(events), sum(event.ByteSize() for event in events))
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            timeline.started = _seconds(event)
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            timeline.signalled = timeline.signalled or _seconds(event)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            timeline.activities += 1
        elif event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            timeline.timers += 1
        elif event.event_type == EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES:
            timeline.upserts += 1
            attributes = event.upsert_workflow_search_attributes_event_attributes.search_attributes
            phase = decode_typed_search_attributes(attributes).get(search_attributes.INTEGRATION_PHASE)
            if phase == Phase.WAITING_FOR_CONSENT:
                timeline.waiting_for_consent = timeline.waiting_for_consent or _seconds(event)
            elif phase == Phase.CONNECTED:
                timeline.connected = timeline.connected or _seconds(event)
    return timeline


async def timelines(client: Client, workflow_ids: Sequence[str]) -> list[Timeline]:
    """Every workflow's history, fetched after the measured part (fetching costs the server, not the worker)."""
    rpc = asyncio.Semaphore(RPC_CONCURRENCY)

    async def one(workflow_id: str) -> Timeline:
        async with rpc:
            history = await client.get_workflow_handle(workflow_id).fetch_history()
        return timeline_of(workflow_id, history.events)

    return list(await asyncio.gather(*(one(w) for w in workflow_ids)))
