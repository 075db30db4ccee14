"""Fixtures for the client tests: the real Entra simulator over HTTPS, real MSAL, and injectable
sleeps so retry delays can be asserted."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from clients.graph import GraphClient
from clients.msal_auth import MsalTokenProvider
from clients.retry import RetryConfig, Sleep
from common.settings import EntraSettings
from simulators.entra.server import EntraSimulator
from simulators.tls import LocalCA
from tests.conftest import StartEntra

# Short delays so a test waits at most a few hundred milliseconds per retry sequence.
FAST_RETRY = RetryConfig(max_attempts=4, base_delay=0.02, max_delay=0.1, replication_timeout=5.0)


@dataclass
class FakeTime:
    """An injectable sleep + monotonic clock: sleeping records the delay and moves the clock."""

    now: float = 0.0
    delays: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@dataclass
class RecordingSleep:
    """Really sleeps (the simulator's replication runs on real time) and records each delay;
    ``on_sleep`` runs before the wait, e.g. to switch a simulator fault off after its first hit."""

    delays: list[float] = field(default_factory=list)
    on_sleep: Callable[[], None] | None = None

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep()
        await asyncio.sleep(seconds)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def sim(start_entra: StartEntra) -> EntraSimulator:
    return await start_entra()


def entra_settings(sim: EntraSimulator, ca: LocalCA, **overrides: Any) -> EntraSettings:
    values: dict[str, Any] = {
        "authority_host": sim.url,
        "graph_base_url": sim.url,
        "ca_bundle": ca.ca_file,
        "instance_discovery": False,
        "tenant_id": sim.config.tenant_id,
        "client_id": sim.config.provisioning_client_id,
        "client_secret": SecretStr(sim.config.provisioning_secret),
    }
    return EntraSettings(**{**values, **overrides})


def app_provider(
    sim: EntraSimulator, ca: LocalCA, client_id: str, secret: SecretStr, correlation_id: str | None = None
) -> MsalTokenProvider:
    """Sign in as ``client_id`` (e.g. a freshly created app) with ``secret``."""
    return MsalTokenProvider(
        sim.config.tenant_id,
        client_id,
        secret,
        authority_host=sim.url,
        graph_base_url=sim.url,
        ca_bundle=ca.ca_file,
        instance_discovery=False,
        retry=FAST_RETRY,
        correlation_id=correlation_id,
    )


def provisioning_graph(
    sim: EntraSimulator, ca: LocalCA, *, retry: RetryConfig = FAST_RETRY, sleep: Sleep = asyncio.sleep
) -> GraphClient:
    """A GraphClient signed in as the provisioning app (use with ``async with``)."""
    provisioning = app_provider(sim, ca, sim.config.provisioning_client_id, SecretStr(sim.config.provisioning_secret))
    return GraphClient(sim.url, provisioning, ca.ca_file, retry=retry, sleep=sleep)


@pytest.fixture
def provider(sim: EntraSimulator, ca: LocalCA) -> MsalTokenProvider:
    """The provisioning identity, built the way the worker builds it."""
    return MsalTokenProvider.from_settings(entra_settings(sim, ca))


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def graph(
    sim: EntraSimulator, ca: LocalCA, provider: MsalTokenProvider, sleep: RecordingSleep
) -> AsyncIterator[GraphClient]:
    async with GraphClient(sim.url, provider, ca.ca_file, retry=FAST_RETRY, sleep=sleep) as client:
        yield client


async def sim_admin(sim: EntraSimulator, ca: LocalCA, path: str, body: dict[str, Any]) -> Any:
    """POST to the simulator's /_sim admin API (the stand-in for a human or a tenant setting)."""
    context = ssl.create_default_context(cafile=str(ca.ca_file))
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{sim.url}/_sim/{path}", json=body, ssl=context) as response,
    ):
        response.raise_for_status()
        return await response.json()


def token_requests(sim: EntraSimulator, app_id: str) -> int:
    """Token endpoint hits for ``app_id``: the simulator logs each one as a service-principal sign-in."""
    return sum(1 for s in sim.state.sign_ins(app_id) if s.event_type == "servicePrincipal")


def route_count(sim: EntraSimulator, method: str, route: str) -> int:
    return sim.state.request_counts[f"{method} {route}"]
