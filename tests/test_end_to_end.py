"""worker.py and starter.py as real processes on the real Temporal dev server, against the simulators:
the whole onboarding as an operator does it, with the worker killed (SIGKILL) mid-flow."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from models.integration import REQUIRED_GRAPH_PERMISSIONS
from simulators.entra import EntraSimConfig
from simulators.entra.seed import ADMIN_UPN
from simulators.harness import RunningSimulators, running_simulators
from simulators.human import PortalHuman
from tests.operator import Operator, operator_env, start_worker
from tests.secret_scan import leaks

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.devserver


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[RunningSimulators]:
    # A replication delay widens the window in which the worker dies mid-step.
    async with running_simulators(tmp_path / "sim", entra=EntraSimConfig(replication_delay_seconds=2.0)) as running:
        yield running


async def test_operator_flow_with_worker_killed_mid_flow(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    env = operator_env(dev_env, sims, tmp_path)
    operator = Operator(env, [])
    worker_log = tmp_path / "worker.log"
    worker = await start_worker(env, worker_log, dev_env.client)
    try:
        async with PortalHuman(sims.yeastar.url, sims.ca.ca_file) as human:
            uris = await human.read_redirect_uris()
            assert uris.sso_redirect_uri is not None
            started = await operator.run(
                "onboard", "e2e", "--redirect-uri", uris.redirect_uri, "--sso-redirect-uri", uris.sso_redirect_uri
            )
            assert "integration-e2e" in started.stdout

            await operator.wait_for("e2e", lambda s: s["steps"]["register_app"]["state"] == "done", "registered")
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = await start_worker(env, worker_log, dev_env.client)

            waiting = await operator.wait_for("e2e", lambda s: s["phase"] == "WaitingForConsent", "waiting for consent")
            hidden = await operator.run("secret", "e2e", expect=2)
            assert "--reveal" in hidden.stderr
            revealed = await operator.run("secret", "e2e", "--reveal")
            assert "warning" in revealed.stderr
            secret = revealed.stdout.strip()
            app = waiting["app"]
            await human.save_app_registration(app["client_id"], app["tenant_id"], SecretStr(secret))
            await human.sign_in_and_accept(ADMIN_UPN)
            await operator.run("consent", "e2e", "--by", ADMIN_UPN)
            connected = await operator.wait_for("e2e", lambda s: s["phase"] in ("Connected", "Blocked"), "connected")
            assert connected["phase"] == "Connected", connected["blocked"]

        shown = (await operator.run("status", "e2e")).stdout
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
            failed = await operator.run(*args, expect=2)
            assert message in failed.stderr and "Traceback" not in failed.stderr

        worker.send_signal(signal.SIGTERM)
        # Waited for off the event loop: the simulators it serves answer the worker's goodbye calls.
        assert await asyncio.to_thread(worker.wait, 30) == 0
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
        listing = (await operator.run("list")).stdout
        if any(line.split()[:2] == [integration_id, phase] for line in listing.splitlines()):
            return listing
        await asyncio.sleep(0.2)
    raise AssertionError(f"{integration_id} never listed as {phase}:\n{listing}")
