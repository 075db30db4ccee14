"""Lifetime benchmark: one integration lived for years on the time-skipping test server.

    python -m bench.lifetime [--years 10] [--json-out FILE]

Rotations at the default cadence (every half of the 180-day secret lifetime), the human confirming on
time, a few days late or ten days late in turn, daily credential checks and human reminders. Reports
events per workflow run (the integration's runs and each rotation), continue-as-new count, total
events and the wall time of the simulation. Target: no workflow run over 10,000 events.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

import worker as worker_module
from bench._common import fmt, print_table, run_directory, write_results
from common.dev_server import test_server_binary
from common.logging import configure_logging
from common.secret_store import LocalSecretStore
from common.settings import Settings, settings_from_env
from common.temporal import data_converter
from models.integration import (
    ConsentConfirmation,
    IntegrationStatus,
    LifecycleOptions,
    OnboardInput,
    Phase,
    RotationRequest,
    RotationStage,
    workflow_id_for,
)
from simulators.clock import CallableClock
from simulators.entra.config import EntraSimConfig
from simulators.entra.seed import ADMIN_UPN
from simulators.harness import RunningSimulators, running_simulators
from simulators.human import PortalHuman
from simulators.yeastar.server import YeastarSimConfig
from workflows.integration import IntegrationWorkflow
from workflows.rotation import SecretRotationWorkflow

INTEGRATION = "lifetime"
# The human's delay per rotation, in turn: on time, late, very late.
CONFIRMATION_DELAYS = (timedelta(0), timedelta(days=3), timedelta(days=10))
TARGET_EVENTS_PER_RUN = 10_000


class Life:
    def __init__(self, env: WorkflowEnvironment, sims: RunningSimulators, settings: Settings) -> None:
        self.env, self.sims, self.settings = env, sims, settings
        self.client: Client = env.client
        self.store = LocalSecretStore(settings.data_dir / "secrets", settings.keys)
        self.handle: WorkflowHandle[Any, Any] = self.client.get_workflow_handle(workflow_id_for(INTEGRATION))
        self.first_run_id = ""

    async def status(self) -> IntegrationStatus:
        status: IntegrationStatus = await self.handle.query(IntegrationWorkflow.status)
        return status

    async def until(self, ready: Any, what: str) -> IntegrationStatus:
        for _ in range(600):
            status = await self.status()
            if ready(status):
                return status
            await asyncio.sleep(0.05)
        raise RuntimeError(f"never {what}")

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
        assert self.settings.entra.tenant_id is not None
        started = await self.client.start_workflow(
            IntegrationWorkflow.run,
            args=[
                OnboardInput(
                    integration_id=INTEGRATION,
                    tenant_id=self.settings.entra.tenant_id,
                    redirect_uris=uris,
                    publish_search_attributes=False,  # the time-skipping server has neither feature
                    schedule_rotations=False,
                    options=LifecycleOptions(),
                ),
                None,
            ],
            id=self.handle.id,
            task_queue=self.settings.temporal.task_queue,
        )
        assert started.result_run_id is not None
        self.first_run_id = started.result_run_id  # where the continue-as-new chain begins
        waiting = await self.until(lambda s: s.phase == Phase.WAITING_FOR_CONSENT, "waiting for consent")
        assert waiting.secret is not None
        await self.paste(waiting, waiting.secret.key_id)
        await self.handle.signal(IntegrationWorkflow.consent_completed, ConsentConfirmation(confirmed_by=ADMIN_UPN))
        return await self.until(lambda s: s.phase == Phase.CONNECTED, "connected")

    async def rotate(self, number: int, delay: timedelta) -> WorkflowHandle[Any, Any]:
        """What the schedule's action does, then the human after `delay`."""
        rotation = await self.client.start_workflow(
            SecretRotationWorkflow.run,
            args=[RotationRequest(integration_id=INTEGRATION), None],
            id=f"rotation-{INTEGRATION}-{number}",
            task_queue=self.settings.temporal.task_queue,
        )
        waiting = await self.until(
            lambda s: s.rotation is not None and s.rotation.stage == RotationStage.WAITING_FOR_PBX, "rotation card"
        )
        if delay:
            await self.env.sleep(delay)
        assert waiting.rotation is not None and waiting.rotation.new_secret is not None
        await self.paste(waiting, waiting.rotation.new_secret.key_id)
        await self.handle.signal(IntegrationWorkflow.pbx_secret_updated, ConsentConfirmation(confirmed_by=ADMIN_UPN))
        result = await rotation.result()
        if result.stage != RotationStage.COMPLETED:
            raise RuntimeError(f"rotation {number} ended {result.stage}: {result.message}")
        return rotation


async def run_lengths(client: Client, workflow_id: str, first_run_id: str) -> list[tuple[int, int]]:
    """(events, notify activities) of every run, following the continue-as-new chain."""
    runs = []
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        notifies = sum(
            1
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == "notify"
        )
        runs.append((len(history.events), notifies))
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
            else None
        )
    return runs


async def live(years: float, run_dir: Path) -> dict[str, Any]:
    keys = "bench:" + base64.b64encode(os.urandom(32)).decode()
    converter = data_converter(Settings(encryption_keys=keys))
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=converter, test_server_existing_path=str(test_server_binary())
    )
    clock = CallableClock(env.get_current_time)
    try:
        yeastar = YeastarSimConfig(sync_interval_seconds=0.2)
        entra = EntraSimConfig(provisioning_secret_lifetime_days=int(365 * (years + 1)))
        async with running_simulators(run_dir / "sim", entra=entra, yeastar=yeastar, clock=clock) as sims:
            settings = settings_from_env(
                sims.env(), encryption_keys=keys, data_dir=run_dir / "data", log_level="WARNING"
            )
            settings.temporal = settings.temporal.model_copy(update={"task_queue": f"life-{uuid.uuid4()}"})
            life = Life(env, sims, settings)
            started = time.monotonic()
            async with worker_module.build_worker(env.client, settings) as worker, worker:
                connected = await life.onboard()
                assert connected.connected_at is not None
                every = LifecycleOptions().rotation_every(LifecycleOptions().secret_lifetime)
                rotations = []
                for number in range(1, int(years * 365 / every.days) + 1):
                    due = connected.connected_at + every * number
                    await env.sleep(due - await env.get_current_time())
                    delay = CONFIRMATION_DELAYS[(number - 1) % len(CONFIRMATION_DELAYS)]
                    rotations.append(await life.rotate(number, delay))
                end = connected.connected_at + timedelta(days=365 * years)
                await env.sleep(max(end - await env.get_current_time(), timedelta(0)))
                final = await life.status()
                integration_runs = await run_lengths(env.client, life.handle.id, life.first_run_id)
                rotation_runs = [len((await r.fetch_history()).events) for r in rotations]
            wall = time.monotonic() - started
    finally:
        await env.shutdown()
    events = [e for e, _ in integration_runs]
    return {
        "years": years,
        "wall_seconds": wall,
        "rotations": len(rotations),
        "rotations_completed": final.rotations_completed,
        "integration_runs": len(integration_runs),
        "continued_as_new": final.continued_as_new,
        "events_per_integration_run": events,
        "max_events_per_run": max([*events, *rotation_runs]),
        "events_per_rotation": rotation_runs,
        "total_events": sum(events) + sum(rotation_runs),
        "notifications_from_integration": sum(n for _, n in integration_runs),
        "target_max_events_per_run": TARGET_EVENTS_PER_RUN,
    }


def report(result: dict[str, Any]) -> None:
    rows: Sequence[tuple[str, str]] = [
        ("years simulated", fmt(result["years"])),
        ("wall time (s)", fmt(result["wall_seconds"])),
        ("rotations completed", fmt(result["rotations_completed"])),
        ("integration runs (continue-as-new + 1)", fmt(result["integration_runs"])),
        ("max events in one integration run", fmt(max(result["events_per_integration_run"]))),
        ("max events in one rotation", fmt(max(result["events_per_rotation"], default=0))),
        ("max events in any run (target < 10,000)", fmt(result["max_events_per_run"])),
        ("total events", fmt(result["total_events"])),
        ("reminders sent by the integration", fmt(result["notifications_from_integration"])),
    ]
    print_table("Lifetime of one integration (time-skipping)", ("figure", "value"), [list(r) for r in rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--years", type=float, default=10.0)
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--keep-dir", type=Path)
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    with run_directory(args.keep_dir) as run_dir:
        result = asyncio.run(live(args.years, run_dir))
    report(result)
    print(f"\nresults: {write_results('lifetime', result, args.json_out)}")


if __name__ == "__main__":
    main()
