"""Lifetime benchmark: one integration lived for years on the time-skipping test server.

    python -m bench.lifetime [--years 10] [--faults] [--json-out FILE]

The worker runs as its own process (`worker.py`, so it can be killed for real), against the HTTPS
simulators; reminders go to a signed-webhook receiver. A rotation is asked for at the default cadence
(every half of the 180-day secret lifetime), as the schedule's action does. Without --faults the
human confirms on time, a few days late or ten days late in turn. With --faults the rotations meet,
in turn, one fault each:

    cancelled          the rotation workflow is ended from outside while it waits (a cancel: the
                       time-skipping server never tells a parent that its child was *terminated*,
                       temporalio/sdk-java#2921; tests/workflows/test_rotation_outcomes.py proves
                       that on the dev server); the operator then rotates by hand
    graph-down         Microsoft Graph answers 503 to everything for an hour as the rotation starts
    worker-killed      the worker process running the Graph steps is SIGKILLed in the middle of one
    paste-last-day     the PBX is given the new secret one day before the old one expires
    never-pasted       the PBX is never given it: the old secret expires; it is pasted two days later
    channel-down       the notification channel answers 503 for a day
    provisioning-expiry  the service's own credential comes within 10 days of expiring; renewed after 8

Reported, each on a line of its own: `silent expiries: N` (a secret that expired in use with no
critical notification in the 3 days before), `stuck integrations: N` (not in a truthful phase at the
end) and `max events in a run: N` (target: under 10,000). Every wait is bounded: a run that stops
making progress fails with the reason instead of hanging.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import ssl
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from bench._common import (
    Service,
    base_env,
    fmt,
    print_table,
    random_keys,
    run_directory,
    start_service,
    write_results,
)
from common.dev_server import test_server_binary
from common.logging import configure_logging
from common.secret_store import LocalSecretStore
from common.settings import Settings, parse_encryption_keys
from common.temporal import data_converter
from models.activities import IntegrationRef
from models.integration import (
    ConsentConfirmation,
    IntegrationStatus,
    LifecycleOptions,
    OnboardInput,
    Phase,
    RotationRequest,
    RotationStage,
    SecretRef,
    Step,
    StepState,
    workflow_id_for,
)
from notifications.message import Notification
from notifications.receiver import WebhookReceiver
from simulators.clock import CallableClock
from simulators.entra.config import EntraSimConfig
from simulators.entra.seed import ADMIN_UPN
from simulators.harness import RunningSimulators, running_simulators
from simulators.human import PortalHuman
from simulators.yeastar.server import YeastarSimConfig
from workflows.integration import IntegrationWorkflow
from workflows.rotation_request import RotationRequestWorkflow

ROOT = Path(__file__).resolve().parent.parent
INTEGRATION = "lifetime"
DAY = timedelta(days=1)
# The human's delay per rotation, in turn, without faults: on time, late, very late.
CONFIRMATION_DELAYS = (timedelta(0), timedelta(days=3), timedelta(days=10))
FAULTS = (
    "cancelled",
    "graph-down",
    "worker-killed",
    "paste-last-day",
    "never-pasted",
    "channel-down",
    "provisioning-expiry",
)
TARGET_EVENTS_PER_RUN = 10_000
SIGNING_SECRET = "bench-webhook-signing-secret"
# No single wait of the harness lasts longer than this (real seconds).
STEP_LIMIT = 120.0
ADVANCE_STEP = timedelta(days=1)
QUERY_TIMEOUT = timedelta(seconds=10)
T = TypeVar("T")


class Stuck(RuntimeError):
    """The life stopped making progress: the run fails with this instead of hanging."""


async def bounded(awaitable: Awaitable[T], what: str, limit: float = STEP_LIMIT) -> T:
    try:
        return await asyncio.wait_for(awaitable, limit)
    except TimeoutError:
        raise Stuck(f"{what}: no progress within {limit:.0f}s") from None


@dataclass
class Inbox:
    """What the webhook receiver got, with each arrival in simulated time; while ``down`` it
    answers 503 (a channel outage)."""

    received: list[tuple[datetime, Notification]] = field(default_factory=list)
    down: bool = False

    def critical_between(self, start: datetime, end: datetime) -> bool:
        return any(n.severity == "critical" and start <= at <= end for at, n in self.received)


@contextlib.asynccontextmanager
async def receiver(inbox: Inbox, clock: Callable[[], Awaitable[datetime]]) -> AsyncIterator[str]:
    """A signed-webhook endpoint on loopback (notifications/receiver.py, the reference receiver)."""
    arrived: list[Notification] = []
    webhook = WebhookReceiver(SIGNING_SECRET, arrived.append)

    @web.middleware
    async def outage(request: web.Request, handler: Any) -> web.StreamResponse:
        if inbox.down:
            return web.Response(status=503, headers={"Retry-After": "60"})
        response: web.StreamResponse = await handler(request)
        now = await clock()
        inbox.received += [(now, notification) for notification in arrived]
        arrived.clear()
        return response

    app = webhook.app()
    app.middlewares.append(outage)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


async def sim_admin(sims: RunningSimulators, path: str, body: dict[str, Any]) -> None:
    """The Entra simulator's /_sim admin API, as an outside tool would call it."""
    ssl_context = ssl.create_default_context(cafile=str(sims.ca.ca_file))
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sims.entra.url}/_sim/{path}", json=body, ssl=ssl_context) as response,
    ):
        if response.status >= 300:
            raise RuntimeError(f"/_sim/{path}: {response.status} {await response.text()}")


class Life:
    def __init__(
        self, env: WorkflowEnvironment, sims: RunningSimulators, worker_env: dict[str, str], run_dir: Path, inbox: Inbox
    ) -> None:
        self.env, self.sims, self.worker_env, self.run_dir, self.inbox = env, sims, worker_env, run_dir, inbox
        self.client: Client = env.client
        self.task_queue = worker_env["YEC_TEMPORAL__TASK_QUEUE"]
        store_keys = parse_encryption_keys(SecretStr(worker_env["YEC_SECRET_STORE__KEYS"]))
        self.store = LocalSecretStore(Path(worker_env["YEC_DATA_DIR"]) / "secrets", store_keys)
        self.handle: WorkflowHandle[Any, Any] = self.client.get_workflow_handle(workflow_id_for(INTEGRATION))
        self.workers: list[Service] = []  # the workflow worker, then the activity worker
        self.workers_started = 0
        self.secrets_in_use: dict[str, SecretRef] = {}  # every key the integration tracked
        self.replaced_at: dict[str, datetime] = {}
        self.requests = 0

    # --- processes ------------------------------------------------------------------------------

    async def start_worker(self, role: str) -> Service:
        self.workers_started += 1
        worker = await start_service(
            f"worker-{role}-{self.workers_started}",
            [sys.executable, str(ROOT / "worker.py")],
            {**self.worker_env, "YEC_TEMPORAL__WORKER_ROLE": role},
            self.run_dir,
        )
        self.workers.append(worker)
        # The time-skipping server can't describe task queues: the worker's own log says it polls.
        deadline = time.monotonic() + STEP_LIMIT
        while '"worker started"' not in worker.log.read_text(errors="replace"):
            worker.check()
            if time.monotonic() > deadline:
                raise Stuck(f"{worker.name} never started (log {worker.log})")
            await asyncio.sleep(0.1)
        return worker

    async def kill_activity_worker(self) -> None:
        """SIGKILL the process running the Graph steps. (It runs no workflows: the time-skipping server
        never moves a workflow off a dead worker's sticky queue, which the real server does after a
        few seconds; tests/test_rotation_schedule.py kills a whole worker on the dev server.)"""
        worker = self.workers.pop(1)
        worker.process.send_signal(signal.SIGKILL)
        await worker.process.wait()

    # --- looking ---------------------------------------------------------------------------------

    async def status(self) -> IntegrationStatus:
        for _ in range(10):
            try:
                status: IntegrationStatus = await self.handle.query(
                    IntegrationWorkflow.status, rpc_timeout=QUERY_TIMEOUT
                )
                break
            except RPCError as exc:
                # After a worker was killed the query first goes to its (dead) sticky queue; the
                # test server only moves the workflow on to the new worker with its next task.
                if exc.status != RPCStatusCode.DEADLINE_EXCEEDED and "timeout" not in exc.message.lower():
                    raise
        else:
            raise Stuck("the integration answers no query (no worker takes its tasks)")
        if status.secret is not None and status.secret.key_id not in self.secrets_in_use:
            now = await self.env.get_current_time()
            for key in self.secrets_in_use:
                self.replaced_at.setdefault(key, now)
            self.secrets_in_use[status.secret.key_id] = status.secret
        return status

    async def until(
        self, ready: Callable[[IntegrationStatus], bool], what: str, *, skip: timedelta | None = None
    ) -> IntegrationStatus:
        """Poll the status until ``ready``; with ``skip``, moving the clock on by that much between looks."""
        deadline = time.monotonic() + STEP_LIMIT
        while True:
            for worker in self.workers:
                worker.check()
            status = await self.status()
            if ready(status):
                return status
            if time.monotonic() > deadline:
                raise Stuck(
                    f"never {what}: phase {status.phase}, rotation {status.rotation}, warnings {status.warnings}"
                )
            if skip is not None:
                await self.advance(skip)
            else:
                await asyncio.sleep(0.1)

    async def sleep_until(self, moment: datetime) -> None:
        await self.advance(moment - await self.env.get_current_time())

    async def advance(self, duration: timedelta, step_at_most: timedelta = ADVANCE_STEP) -> None:
        """Move the clock on, in steps, so no single call to the server waits long on running steps
        (while one runs, the time-skipping server's clock only moves in real time)."""
        target = await self.env.get_current_time() + duration
        deadline = time.monotonic() + STEP_LIMIT * max(1.0, duration / (30 * DAY))
        while (now := await self.env.get_current_time()) < target:
            if time.monotonic() > deadline:
                raise Stuck(f"the clock stopped short of {target:%Y-%m-%d %H:%M} at {now:%Y-%m-%d %H:%M}")
            try:
                await self.env.sleep(min(target - now, step_at_most))
            except RPCError as exc:  # the call timed out; the server may have moved on anyway: look again
                if "timeout" not in exc.message.lower() and exc.status != RPCStatusCode.DEADLINE_EXCEEDED:
                    raise

    # --- the humans --------------------------------------------------------------------------------

    async def paste(self, status: IntegrationStatus, key_id: str) -> None:
        """The admin pastes a secret into the PBX portal and signs in again."""
        assert status.app is not None
        secret = await self.store.get(INTEGRATION, key_id)
        async with PortalHuman(self.sims.yeastar.url, self.sims.ca.ca_file) as human:
            await human.save_app_registration(status.app.client_id, status.app.tenant_id, secret)
            await human.sign_in_and_accept(ADMIN_UPN)

    async def onboard(self) -> IntegrationStatus:
        async with PortalHuman(self.sims.yeastar.url, self.sims.ca.ca_file) as human:
            uris = await human.read_redirect_uris()
        await self.client.start_workflow(
            IntegrationWorkflow.run,
            args=[
                OnboardInput(
                    integration_id=INTEGRATION,
                    tenant_id=self.worker_env["YEC_ENTRA__TENANT_ID"],
                    redirect_uris=uris,
                    publish_search_attributes=False,  # the time-skipping server has neither feature
                    schedule_rotations=False,
                    options=LifecycleOptions(),
                ),
                None,
            ],
            id=self.handle.id,
            task_queue=self.task_queue,
        )
        return await self.connect_pbx()

    async def connect_pbx(self) -> IntegrationStatus:
        """Guide step 6 (also after a secret expired unpasted): paste, sign in, confirm."""
        waiting = await self.until(lambda s: s.steps[Step.CONNECT_PBX].state == StepState.WAITING, "the connect card")
        assert waiting.secret is not None
        await self.paste(waiting, waiting.secret.key_id)
        await self.handle.execute_update(
            IntegrationWorkflow.confirm_consent, ConsentConfirmation(confirmed_by=ADMIN_UPN)
        )
        return await self.until(lambda s: s.phase == Phase.CONNECTED, "connected")

    async def ask_to_rotate(self) -> None:
        """What the schedule's action does."""
        self.requests += 1
        await bounded(
            self.client.execute_workflow(
                RotationRequestWorkflow.run,
                IntegrationRef(integration_id=INTEGRATION),
                id=f"rotation-request-{INTEGRATION}-{self.requests}",
                task_queue=self.task_queue,
            ),
            "the rotation request",
        )

    async def waiting_for_paste(self, after: int) -> IntegrationStatus:
        """The card of a rotation newer than the ``after``-th one."""
        return await self.until(
            lambda s: (
                s.rotation is not None
                and s.rotation.stage == RotationStage.WAITING_FOR_PBX
                and _number(s.rotation.workflow_id) > after
            ),
            "a rotation's card",
            skip=timedelta(hours=1),
        )

    async def paste_rotation(self, waiting: IntegrationStatus) -> IntegrationStatus:
        assert waiting.rotation is not None and waiting.rotation.new_secret is not None
        rotation_id = waiting.rotation.workflow_id
        await self.paste(waiting, waiting.rotation.new_secret.key_id)
        await self.handle.execute_update(
            IntegrationWorkflow.confirm_pbx_updated, ConsentConfirmation(confirmed_by=ADMIN_UPN)
        )
        return await self.until(
            lambda s: s.rotation is None and s.last_rotation is not None and s.last_rotation.workflow_id == rotation_id,
            f"{rotation_id} settled",
            skip=timedelta(minutes=10),
        )

    # --- one rotation, with or without a fault ----------------------------------------------------------

    async def rotate(self, number: int, fault: str | None) -> None:
        started = (await self.status()).rotation
        before = _number(started.workflow_id) if started else _last_number(await self.status())
        if fault == "graph-down":
            await sim_admin(self.sims, "faults", {"error_rate": 1.0})
            await self.ask_to_rotate()
            await self.advance(timedelta(hours=1), step_at_most=timedelta(minutes=5))
            await sim_admin(self.sims, "faults", {"error_rate": 0.0})
            # The rotation gave up on Graph; the integration tries again the next day by itself.
            await self.paste_rotation(await self.waiting_for_paste(before))
            return
        if fault == "worker-killed":
            await sim_admin(self.sims, "faults", {"latency_ms": 3000})
            await self.ask_to_rotate()
            await self.until_activity_running()
            await self.kill_activity_worker()
            await sim_admin(self.sims, "faults", {"latency_ms": 0})
            await self.start_worker("activities")
            await self.paste_rotation(await self.waiting_for_paste(before))
            return
        await self.ask_to_rotate()
        waiting = await self.waiting_for_paste(before)
        assert waiting.rotation is not None
        old = waiting.rotation.old_secret
        if fault == "cancelled":
            await self.client.get_workflow_handle(waiting.rotation.workflow_id).cancel()
            failed = await self.until(lambda s: s.rotation is None and s.phase == Phase.CONNECTED, "the cancel learnt")
            assert failed.last_rotation is not None and failed.last_rotation.stage == RotationStage.FAILED
            await self.advance(DAY)  # the operator reads the "rotation failed" alarm, then rotates by hand
            manual = RotationRequest(integration_id=INTEGRATION, request_id=f"manual-{number}", reason="manual")
            await self.handle.execute_update(IntegrationWorkflow.rotate_now, manual)
            await self.paste_rotation(await self.waiting_for_paste(_number(waiting.rotation.workflow_id)))
        elif fault == "paste-last-day":
            await self.sleep_until(old.expires_at - DAY)
            await self.paste_rotation(await self.status())
        elif fault == "never-pasted":
            await self.sleep_until(old.expires_at + 2 * DAY)
            await self.until(
                lambda s: s.phase == Phase.EXPIRED and s.rotation is None, "expired, waiting for the paste"
            )
            await self.connect_pbx()
        elif fault == "channel-down":
            self.inbox.down = True
            await self.advance(DAY + timedelta(hours=1))
            self.inbox.down = False
            await self.advance(2 * DAY)
            await self.paste_rotation(await self.status())
        elif fault == "provisioning-expiry":
            await sim_admin(self.sims, "provisioning-credential", {"expires_in_days": 10})
            await self.paste_rotation(waiting)
            await self.advance(8 * DAY)  # critical reminders at 7 and 3 days; the operator renews
            await sim_admin(self.sims, "provisioning-credential", {"expires_in_days": 730})
        else:
            delay = CONFIRMATION_DELAYS[(number - 1) % len(CONFIRMATION_DELAYS)]
            await self.advance(delay)
            await self.paste_rotation(await self.status())

    async def until_activity_running(self) -> None:
        """Until a rotation workflow has a Graph step in progress (to kill the worker mid-step)."""
        deadline = time.monotonic() + STEP_LIMIT
        while time.monotonic() < deadline:
            status = await self.status()
            if status.rotation is not None:
                description = await self.client.get_workflow_handle(status.rotation.workflow_id).describe()
                if any(
                    a.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                    for a in description.raw_description.pending_activities
                ):
                    return
            await asyncio.sleep(0.05)
        raise Stuck("no rotation step ever started")


def _number(rotation_id: str) -> int:
    return int(rotation_id.rsplit("-", 1)[-1])


def _last_number(status: IntegrationStatus) -> int:
    return _number(status.last_rotation.workflow_id) if status.last_rotation else 0


async def run_lengths(client: Client, workflow_id: str) -> list[int]:
    """Events of every run of a workflow's continue-as-new chain."""
    handle = client.get_workflow_handle(workflow_id)
    run_id = (await handle.describe()).raw_description.workflow_execution_info.first_run_id
    lengths = []
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        lengths.append(len(history.events))
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            else ""
        )
    return lengths


async def live(years: float, run_dir: Path, *, faults: Sequence[str] = ()) -> dict[str, Any]:
    keys = random_keys()
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(Settings(encryption_keys=keys)),
        test_server_existing_path=str(test_server_binary()),
    )
    inbox = Inbox()
    clock = CallableClock(env.get_current_time)
    try:
        yeastar = YeastarSimConfig(sync_interval_seconds=0.2)
        entra = EntraSimConfig(provisioning_secret_lifetime_days=int(365 * (years + 1)))
        async with (
            running_simulators(run_dir / "sim", entra=entra, yeastar=yeastar, clock=clock) as sims,
            receiver(inbox, env.get_current_time) as webhook_url,
        ):
            worker_env = {
                **base_env(),
                **sims.env(),
                "YEC_ENCRYPTION_KEYS": keys,
                "YEC_SECRET_STORE__KEYS": random_keys(),
                "YEC_DATA_DIR": str(run_dir / "data"),
                "YEC_TEMPORAL__ADDRESS": env.client.service_client.config.target_host,
                "YEC_TEMPORAL__TASK_QUEUE": f"life-{uuid.uuid4()}",
                "YEC_LOG_LEVEL": "INFO",
                # The test server can't skip time while a step runs: keep a failing step's attempts short.
                "YEC_ENTRA__TRANSIENT_ATTEMPTS": "2",
                "YEC_LOG_FORMAT": "json",
                "YEC_NOTIFICATION_CHANNELS": json.dumps(
                    [{"type": "webhook", "name": "ops", "url": webhook_url, "signing_secret": SIGNING_SECRET}]
                ),
            }
            life = Life(env, sims, worker_env, run_dir, inbox)
            started = time.monotonic()
            await life.start_worker("workflows")
            await life.start_worker("activities")
            try:
                connected = await life.onboard()
                assert connected.connected_at is not None
                every = LifecycleOptions().rotation_every(LifecycleOptions().secret_lifetime)
                count = int(years * 365 / every.days)
                for number in range(1, count + 1):
                    await life.sleep_until(connected.connected_at + every * number)
                    fault = faults[(number - 1) % len(faults)] if faults else None
                    await life.rotate(number, fault)
                await life.sleep_until(connected.connected_at + timedelta(days=365 * years))
                final = await life.status()
                end = await env.get_current_time()
                lengths = {"integration": await run_lengths(env.client, life.handle.id)}
                for number in range(1, _last_number(final) + 1):
                    lengths[f"rotation-{number}"] = await run_lengths(env.client, f"rotation-{INTEGRATION}-{number}")
            finally:
                for worker in life.workers:
                    await worker.stop()
            wall = time.monotonic() - started
    finally:
        await env.shutdown()
    silent = silent_expiries(life, inbox, end)
    truthful = final.phase == Phase.CONNECTED and final.rotation is None and final.secret is not None
    truthful = truthful and final.secret.expires_at > end  # type: ignore[union-attr]
    integration_runs = lengths.pop("integration")
    rotation_runs = [n for runs in lengths.values() for n in runs]
    return {
        "years": years,
        "faults": list(faults),
        "wall_seconds": wall,
        "rotations_started": _last_number(final),
        "rotations_completed": final.rotations_completed,
        "integration_runs": len(integration_runs),
        "continued_as_new": final.continued_as_new,
        "max_events_in_a_run": max([*integration_runs, *rotation_runs]),
        "events_per_integration_run": integration_runs,
        "total_events": sum(integration_runs) + sum(rotation_runs),
        "notifications": len(inbox.received),
        "critical_notifications": sum(1 for _, n in inbox.received if n.severity == "critical"),
        "silent_expiries": len(silent),
        "silent_expiry_details": silent,
        "stuck_integrations": 0 if truthful else 1,
        "final_phase": str(final.phase),
        "workers_started": life.workers_started,
        "target_max_events_per_run": TARGET_EVENTS_PER_RUN,
    }


def silent_expiries(life: Life, inbox: Inbox, end: datetime) -> list[str]:
    """Secrets that expired while in use with no critical notification in the 3 days before."""
    silent = []
    for key_id, secret in life.secrets_in_use.items():
        used_until = life.replaced_at.get(key_id, end)
        if secret.expires_at <= used_until:
            start = secret.expires_at - 3 * DAY
            if not inbox.critical_between(start, secret.expires_at + timedelta(hours=1)):
                silent.append(
                    f"{key_id} expired {secret.expires_at:%Y-%m-%d %H:%M}, replaced {used_until:%Y-%m-%d %H:%M}"
                )
    return silent


def report(result: dict[str, Any]) -> None:
    rows: Sequence[tuple[str, str]] = [
        ("years simulated", fmt(result["years"])),
        ("faults, one per rotation in turn", ", ".join(result["faults"]) or "none"),
        ("wall time (s)", fmt(result["wall_seconds"])),
        ("rotations started / completed", f"{result['rotations_started']} / {result['rotations_completed']}"),
        ("integration runs (continue-as-new + 1)", fmt(result["integration_runs"])),
        ("total events", fmt(result["total_events"])),
        ("notifications (critical)", f"{result['notifications']} ({result['critical_notifications']})"),
        ("worker processes started", fmt(result["workers_started"])),
    ]
    print_table("Lifetime of one integration (time-skipping)", ("figure", "value"), [list(r) for r in rows])
    print()
    print(f"silent expiries: {result['silent_expiries']}")
    print(f"stuck integrations: {result['stuck_integrations']}")
    print(f"max events in a run: {result['max_events_in_a_run']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--years", type=float, default=10.0)
    parser.add_argument(
        "--faults",
        nargs="?",
        const=",".join(FAULTS),
        default="",
        help=f"one injected fault per rotation, in turn: all, or a comma-separated choice of {', '.join(FAULTS)}",
    )
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--keep-dir", type=Path)
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    with run_directory(args.keep_dir) as run_dir:
        faults = [fault for fault in args.faults.split(",") if fault]
        if unknown := set(faults) - set(FAULTS):
            parser.error(f"unknown fault(s): {', '.join(sorted(unknown))}")
        result = asyncio.run(live(args.years, run_dir, faults=faults))
    report(result)
    print(f"\nresults: {write_results('lifetime', result, args.json_out)}")
    if (
        result["silent_expiries"]
        or result["stuck_integrations"]
        or result["max_events_in_a_run"] >= TARGET_EVENTS_PER_RUN
    ):
        raise SystemExit("FAILED: a target was missed (see the three lines above)")


if __name__ == "__main__":
    main()
