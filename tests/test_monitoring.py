"""worker.py's /healthz and /metrics on the dev server, read over HTTP as Prometheus and an orchestrator
do: health fails with the reason, and the fleet's state shows up as the gauges the alert rules use."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from temporalio.testing import WorkflowEnvironment

from common.metrics import EXPORTED_METRIC_NAMES
from simulators.harness import RunningSimulators, running_simulators
from tests.operator import ROOT, Operator, operator_env, worker_process

pytestmark = pytest.mark.devserver

PBX_REDIRECT = "https://acme.ras.yeastar.com/api/v1.0/openid/connect/entra"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def metrics_env(dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path, **extra: str) -> dict[str, str]:
    return operator_env(
        dev_env,
        sims,
        tmp_path,
        YEC_METRICS__PORT=str(free_port()),
        YEC_METRICS__SDK_PORT=str(free_port()),
        YEC_METRICS__FLEET_REFRESH_INTERVAL="PT1S",
        **extra,
    )


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[RunningSimulators]:
    async with running_simulators(tmp_path / "sim") as running:
        yield running


async def get(env: dict[str, str], path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{env['YEC_METRICS__PORT']}{path}") as answer,
    ):
        return answer.status, await answer.text()


def samples(text: str) -> dict[str, float]:
    """Exposition lines as {"name{labels}": value}."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            found[series] = float(value)
    return found


def series(found: dict[str, float], name: str, **labels: str) -> list[float]:
    """Values of the series of ``name`` carrying all of ``labels``."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return [
        value
        for key, value in found.items()
        if re.fullmatch(rf"{name}(\{{.*\}})?", key) and all(label in key for label in wanted)
    ]


async def wait_for_series(env: dict[str, str], name: str, **labels: str) -> dict[str, float]:
    for _ in range(120):
        status, text = await get(env, "/metrics")
        assert status == 200
        found = samples(text)
        if series(found, name, **labels):
            return found
        await asyncio.sleep(0.25)
    raise AssertionError(f"{name}{labels} never appeared in /metrics:\n{text[-3000:]}")


async def test_metrics_show_the_fleet_and_health_passes(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    env = metrics_env(dev_env, sims, tmp_path)
    operator = Operator(env, [])
    async with worker_process(env, tmp_path / "worker.log", dev_env.client):
        status, body = await get(env, "/healthz")
        assert status == 200, body
        assert '"status": "ok"' in body

        await operator.run("onboard", "metered", "--redirect-uri", PBX_REDIRECT)
        await operator.wait_for("metered", lambda s: s["phase"] == "WaitingForConsent", "waiting for the admin")
        found = await wait_for_series(env, "yec_pending_human_action_age_seconds", integration_id="metered")

    assert series(found, "yec_integration_info", integration_id="metered", phase="WaitingForConsent") == [1]
    assert series(found, "yec_integrations", phase="WaitingForConsent") == [1]
    assert series(found, "yec_pending_human_actions", action="connect") == [1]
    assert series(found, "yec_rotation_running", integration_id="metered") == [0]
    (expiry,) = series(found, "yec_secret_expiry_timestamp_seconds", integration_id="metered")
    (soonest,) = series(found, "yec_secret_soonest_expiry_seconds")
    assert 170 * 86400 < soonest < 181 * 86400 and expiry > 0
    # The Graph calls that set the app up, and the SDK's own metrics, in the same scrape.
    assert sum(series(found, "yec_graph_requests_total", method="POST", status="201")) >= 2
    assert series(found, "temporal_worker_task_slots_available")
    assert series(found, "yec_up") == [1]
    # Everything the service exports is declared (the alert rules and dashboard are checked against it).
    families = {re.sub(r"\{.*", "", key) for key in found if key.startswith("yec_")}
    assert families <= EXPORTED_METRIC_NAMES


async def test_health_fails_with_the_reason_when_the_secret_store_is_unreachable(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    env = metrics_env(
        dev_env,
        sims,
        tmp_path,
        YEC_SECRET_STORE__BACKEND="azure-key-vault",
        YEC_SECRET_STORE__VAULT_URL=f"https://127.0.0.1:{free_port()}",
    )
    async with worker_process(env, tmp_path / "worker.log", dev_env.client):
        status, body = await get(env, "/healthz")

    assert status == 503
    problems: dict[str, Any] = json.loads(body)["problems"]
    assert list(problems) == ["secret_store"]
    assert "Key Vault https://127.0.0.1:" in problems["secret_store"] and "unreachable" in problems["secret_store"]


async def test_a_busy_metrics_port_stops_the_worker_with_one_line(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**metrics_env(dev_env, sims, tmp_path), "YEC_METRICS__PORT": str(taken.getsockname()[1])}
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(ROOT / "worker.py")],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0
    assert f"cannot serve metrics on 127.0.0.1:{env['YEC_METRICS__PORT']}" in result.stderr
    assert "Traceback" not in result.stderr
