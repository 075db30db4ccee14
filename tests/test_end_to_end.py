"""worker.py and starter.py as real processes on the real Temporal dev server, against the simulators:
the whole onboarding as an operator does it, with the worker killed (SIGKILL) mid-flow."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from simulators.entra.seed import ADMIN_UPN
from simulators.entra.server import EntraSimConfig
from simulators.harness import RunningSimulators, running_simulators
from simulators.human import PortalHuman
from tests.conftest import TEST_ENCRYPTION_KEYS
from tests.secret_scan import leaks
from workflows.models import REQUIRED_GRAPH_PERMISSIONS

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.devserver


@dataclass
class Operator:
    env: dict[str, str]
    outputs: list[str]

    def run(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, str(ROOT / "starter.py"), *args],
            env=self.env,
            cwd=ROOT,
            text=True,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if args[0] != "secret":
            self.outputs += [result.stdout, result.stderr]
        assert result.returncode == expect, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def status(self, integration_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.run("status", integration_id, "--json").stdout)
        return data

    async def wait_for(self, integration_id: str, predicate: Any, what: str, limit: float = 60.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + limit
        while True:
            status = self.status(integration_id)
            if predicate(status):
                return status
            assert asyncio.get_running_loop().time() < deadline, f"never {what}: {json.dumps(status, indent=1)}"
            await asyncio.sleep(0.3)


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, cwd=ROOT, stdout=out, stderr=out)


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[RunningSimulators]:
    # A replication delay widens the window in which the worker dies mid-step.
    async with running_simulators(tmp_path / "sim", entra=EntraSimConfig(replication_delay_seconds=2.0)) as running:
        yield running


async def test_operator_flow_with_worker_killed_mid_flow(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **sims.env(),
        "YEC_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEYS,
        "YEC_DATA_DIR": str(tmp_path / "data"),
        "YEC_TEMPORAL__ADDRESS": dev_env.client.service_client.config.target_host,
        "YEC_TEMPORAL__TASK_QUEUE": f"e2e-{uuid.uuid4()}",
        "YEC_LOG_FORMAT": "json",
    }
    operator = Operator(env, [])
    worker_log = tmp_path / "worker.log"
    worker = start_worker(env, worker_log)
    try:
        async with PortalHuman(sims.yeastar.url, sims.ca.ca_file) as human:
            uris = await human.read_redirect_uris()
            assert uris.sso_redirect_uri is not None
            started = operator.run(
                "onboard", "e2e", "--redirect-uri", uris.redirect_uri, "--sso-redirect-uri", uris.sso_redirect_uri
            )
            assert "integration-e2e" in started.stdout

            await operator.wait_for("e2e", lambda s: s["steps"]["register_app"]["state"] == "done", "registered")
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = start_worker(env, worker_log)

            waiting = await operator.wait_for("e2e", lambda s: s["phase"] == "WaitingForConsent", "waiting for consent")
            hidden = operator.run("secret", "e2e", expect=2)
            assert "--reveal" in hidden.stderr
            revealed = operator.run("secret", "e2e", "--reveal")
            assert "warning" in revealed.stderr
            secret = revealed.stdout.strip()
            app = waiting["app"]
            await human.save_app_registration(app["client_id"], app["tenant_id"], SecretStr(secret))
            await human.sign_in_and_accept(ADMIN_UPN)
            operator.run("consent", "e2e", "--by", ADMIN_UPN)
            connected = await operator.wait_for("e2e", lambda s: s["phase"] in ("Connected", "Blocked"), "connected")
            assert connected["phase"] == "Connected", connected["blocked"]

        shown = operator.run("status", "e2e").stdout
        assert "Integration e2e: Connected" in shown and app["client_id"] in shown
        listing = await _eventually_listed(operator, "e2e", "Connected")
        assert "e2e" in listing

        # User mistakes: one clear line, exit code 2, no traceback.
        for args, message in [
            (("status", "nope"), "no integration 'nope'"),
            (("onboard", "Bad_ID"), "must be 1-63 lowercase"),
            (("redirect-uris", "e2e", "--redirect-uri", "http://pbx.example.com/cb"), "https"),
            (("retry", "e2e"), "not Blocked"),
        ]:
            failed = operator.run(*args, expect=2)
            assert message in failed.stderr and "Traceback" not in failed.stderr

        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    finally:
        if worker.poll() is None:
            worker.kill()

    # Exactly one app, one secret, six assignments, despite the kill.
    entra = sims.entra.state
    apps = [a for a in entra.applications() if a.unique_name == "yeastar-pbx-e2e"]
    assert len(apps) == 1
    assert [p.key_id for p in apps[0].password_credentials] == [connected["secret"]["key_id"]]
    assert len(entra.app_role_assignments(connected["app"]["service_principal_id"])) == len(REQUIRED_GRAPH_PERMISSIONS)

    logs = worker_log.read_text()
    assert "worker started" in logs and "integration" in logs
    assert not leaks(secret, [logs.encode(), *(o.encode() for o in operator.outputs)])


async def _eventually_listed(operator: Operator, integration_id: str, phase: str) -> str:
    """Visibility is eventually consistent: the list catches up with the workflow within seconds."""
    for _ in range(50):
        listing = operator.run("list").stdout
        if any(line.split()[:2] == [integration_id, phase] for line in listing.splitlines()):
            return listing
        await asyncio.sleep(0.2)
    raise AssertionError(f"{integration_id} never listed as {phase}:\n{listing}")
