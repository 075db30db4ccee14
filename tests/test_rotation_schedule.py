"""The rotation schedule on the real dev server: it starts a rotation by itself, the operator pauses,
triggers and resumes it from the CLI, and a worker killed while a rotation waits for the human loses
and duplicates nothing."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from common.secret_store import open_local_store
from common.settings import Settings
from simulators.entra.seed import ADMIN_UPN
from simulators.harness import RunningSimulators, running_simulators
from simulators.human import PortalHuman
from simulators.yeastar.server import YeastarSimConfig
from tests.conftest import TEST_STORE_KEYS
from tests.operator import Operator, operator_env, start_worker

pytestmark = pytest.mark.devserver
ID = "sched"


async def paste(operator: Operator, sims: RunningSimulators, status: dict[str, Any], *, pending: bool) -> None:
    """The human: reveal the secret, paste it into the PBX, sign in again, tell the service."""
    secret = (await operator.run("secret", ID, "--reveal", *(["--pending"] if pending else []))).stdout.strip()
    async with PortalHuman(sims.yeastar.url, sims.ca.ca_file) as human:
        await human.save_app_registration(status["app"]["client_id"], status["app"]["tenant_id"], SecretStr(secret))
        await human.sign_in_and_accept(ADMIN_UPN)
    await operator.run("pbx-updated" if pending else "consent", ID, "--by", ADMIN_UPN)


def waiting_for_pbx(status: dict[str, Any]) -> bool:
    rotation = status["rotation"]
    return rotation is not None and rotation["stage"] == "waiting_for_pbx"


async def test_schedule_rotates_and_survives_a_killed_worker(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_simulators(tmp_path / "sim", yeastar=YeastarSimConfig(sync_interval_seconds=0.3)) as sims:
        env = operator_env(
            dev_env,
            sims,
            tmp_path,
            YEC_ROTATION_INTERVAL="PT15S",
            YEC_SIGN_IN_POLL_INTERVAL="PT1S",
            YEC_SIGN_IN_SETTLE_TIME="PT2S",
        )
        operator = Operator(env, [])
        log = tmp_path / "worker.log"
        worker = await start_worker(env, log, dev_env.client)
        try:
            async with PortalHuman(sims.yeastar.url, sims.ca.ca_file) as human:
                uris = await human.read_redirect_uris()
            await operator.run("onboard", ID, "--redirect-uri", uris.redirect_uri)
            status = await operator.wait_for(ID, lambda s: s["phase"] == "WaitingForConsent", "waiting for consent")
            await paste(operator, sims, status, pending=False)
            await operator.wait_for(ID, lambda s: s["phase"] == "Connected", "connected")
            shown = (await operator.run("schedule", ID)).stdout
            assert "every 15 seconds" in shown and "active" in shown

            # The schedule starts the first rotation on its own; pause it so no second one follows.
            first = await operator.wait_for(ID, waiting_for_pbx, "a scheduled rotation", limit=60)
            assert first["rotation"]["reason"] == "scheduled" and first["phase"] == "Rotating"
            assert "PAUSED" in (await operator.run("schedule", ID, "--pause", "--note", "testing")).stdout

            # The worker dies while the rotation waits for the human; a new one carries on.
            worker.send_signal(signal.SIGKILL)
            worker.wait()
            worker = await start_worker(env, log, dev_env.client)
            await paste(operator, sims, first, pending=True)
            done = await operator.wait_for(ID, lambda s: s["rotations_completed"] == 1, "rotation 1 done", limit=60)
            assert (
                done["phase"] == "Connected" and done["secret"]["key_id"] == first["rotation"]["new_secret"]["key_id"]
            )

            # While paused, `rotate` still starts one now.
            assert f"starting rotation-{ID}-2" in (await operator.run("rotate", ID)).stdout
            second = await operator.wait_for(ID, waiting_for_pbx, "the manual rotation")
            assert second["rotation"]["reason"] == "manual"
            failed = await operator.run("rotate", ID, expect=2)
            assert "already running" in failed.stderr or "already starting" in failed.stderr
            await paste(operator, sims, second, pending=True)
            final = await operator.wait_for(ID, lambda s: s["rotations_completed"] == 2, "rotation 2 done", limit=60)
            assert "active" in (await operator.run("schedule", ID, "--resume")).stdout
            assert "cut-over evidence" in (await operator.run("status", ID)).stdout
        finally:
            worker.kill()
            worker.wait()

    # Exactly one secret left, the newest, in Entra and in the store: nothing lost, nothing doubled.
    key = final["secret"]["key_id"]
    app = sims.entra.state.application(final["app"]["application_object_id"])
    assert app is not None and [p.key_id for p in app.password_credentials] == [key]
    store = open_local_store(Settings(secret_store={"keys": TEST_STORE_KEYS}, data_dir=tmp_path / "data"))
    assert await store.key_ids(ID) == [key]
