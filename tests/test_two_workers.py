"""Two worker processes, one task queue, one Key Vault, each with a data directory of its own: the fleet
completes although one worker is SIGKILLed mid-onboarding and the other mid-rotation, with exactly one
client secret per integration (two while a rotation waits for its cut-over), each readable by either
worker and by the CLI on a third "host"."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from common.key_vault_store import TAG_INTEGRATION, TAG_KEY
from simulators.entra import EntraSimConfig
from simulators.entra.seed import ADMIN_UPN
from simulators.harness import RunningSimulators, running_simulators
from simulators.human import PortalHuman
from simulators.tls import LocalCA
from simulators.yeastar.server import YeastarSimConfig, YeastarSimulator
from tests.conftest import StartYeastar
from tests.operator import Operator, operator_env, start_worker

pytestmark = pytest.mark.devserver


class Fleet:
    def __init__(self, sims: RunningSimulators, operator: Operator, pbxs: dict[str, tuple[YeastarSimulator, Path]]):
        self.sims, self.operator, self.pbxs = sims, operator, pbxs
        self.revealed: list[str] = []

    def passwords(self, status: dict[str, Any]) -> list[str]:
        app = self.sims.entra.state.application(status["app"]["application_object_id"])
        assert app is not None
        return sorted(p.key_id for p in app.password_credentials)

    def vault_keys(self, integration_id: str) -> list[str]:
        """Key IDs of the integration's live (not soft-deleted) secrets in the vault."""
        return sorted(
            tags[TAG_KEY]
            for secret in self.sims.keyvault.state.secrets()
            if (tags := secret.latest.tags or {}).get(TAG_INTEGRATION) == integration_id
        )

    async def paste(self, integration_id: str, status: dict[str, Any], *, pending: bool) -> None:
        """The PBX administrator: the secret from the CLI (another host), into the PBX, sign in, confirm."""
        revealed = await self.operator.run("secret", integration_id, "--reveal", *(["--pending"] if pending else []))
        pbx, ca_file = self.pbxs[integration_id]
        self.revealed.append(revealed.stdout.strip())
        async with PortalHuman(pbx.url, ca_file) as human:
            await human.save_app_registration(
                status["app"]["client_id"], status["app"]["tenant_id"], SecretStr(self.revealed[-1])
            )
            await human.sign_in_and_accept(ADMIN_UPN)
        await self.operator.run("pbx-updated" if pending else "consent", integration_id, "--by", ADMIN_UPN)


def kill(worker: subprocess.Popen[bytes]) -> None:
    worker.send_signal(signal.SIGKILL)
    worker.wait()


def waiting_for_pbx(status: dict[str, Any]) -> bool:
    return status["rotation"] is not None and status["rotation"]["stage"] == "waiting_for_pbx"


async def test_two_workers_one_fleet_through_key_vault(
    dev_env: WorkflowEnvironment, tmp_path: Path, start_yeastar: StartYeastar, ca: LocalCA
) -> None:
    # A replication delay makes each onboarding take seconds, so the first kill lands in the middle.
    entra = EntraSimConfig(replication_delay_seconds=1.5)
    async with running_simulators(
        tmp_path / "sim", entra=entra, yeastar=YeastarSimConfig(sync_interval_seconds=0.3)
    ) as sims:
        west = await start_yeastar(sync_interval_seconds=0.3, entra_url=sims.entra.url, entra_ca_file=sims.ca.ca_file)
        pbxs = {"east": (sims.yeastar, sims.ca.ca_file), "west": (west, ca.ca_file)}
        shared = operator_env(
            dev_env,
            sims,
            tmp_path,
            **sims.keyvault_env(),
            YEC_SIGN_IN_POLL_INTERVAL="PT1S",
            YEC_SIGN_IN_SETTLE_TIME="PT2S",
        )
        # Three "hosts": nothing may depend on a local disk.
        env_a, env_b, env_cli = ({**shared, "YEC_DATA_DIR": str(tmp_path / host)} for host in ("a", "b", "cli"))
        fleet = Fleet(sims, Operator(env_cli, []), pbxs)
        client = dev_env.client
        worker_a = await start_worker(env_a, tmp_path / "worker-a.log", client)
        worker_b = await start_worker(env_b, tmp_path / "worker-b.log", client)
        try:
            for integration_id, (pbx, ca_file) in pbxs.items():
                async with PortalHuman(pbx.url, ca_file) as human:
                    uris = await human.read_redirect_uris()
                await fleet.operator.run("onboard", integration_id, "--redirect-uri", uris.redirect_uri)
            provisioning = await fleet.operator.status("east")
            assert provisioning["phase"] in ("Starting", "Provisioning"), "the kill must land mid-onboarding"
            kill(worker_a)

            waiting = {
                integration_id: await fleet.operator.wait_for(
                    integration_id, lambda s: s["phase"] == "WaitingForConsent", "waiting for consent", limit=120
                )
                for integration_id in pbxs
            }
            worker_a = await start_worker(env_a, tmp_path / "worker-a.log", client)
            for integration_id, status in waiting.items():
                assert fleet.passwords(status) == [status["secret"]["key_id"]], "exactly one secret"
                assert fleet.vault_keys(integration_id) == [status["secret"]["key_id"]]
                await fleet.paste(integration_id, status, pending=False)
            for integration_id in pbxs:
                await fleet.operator.wait_for(integration_id, lambda s: s["phase"] == "Connected", "connected")

            for integration_id in pbxs:
                await fleet.operator.run("rotate", integration_id)
            await asyncio.sleep(0.5)
            kill(worker_b)  # while the rotations create and prove their new secrets

            rotating = {
                integration_id: await fleet.operator.wait_for(integration_id, waiting_for_pbx, "new secret", limit=120)
                for integration_id in pbxs
            }
            worker_b = await start_worker(env_b, tmp_path / "worker-b.log", client)
            for integration_id, status in rotating.items():
                both = sorted([status["secret"]["key_id"], status["rotation"]["new_secret"]["key_id"]])
                assert fleet.passwords(status) == both, "one secret per rotation stage: old and new"
                assert fleet.vault_keys(integration_id) == both
                await fleet.paste(integration_id, status, pending=True)

            for integration_id in pbxs:
                done = await fleet.operator.wait_for(
                    integration_id, lambda s: s["rotations_completed"] == 1, "rotation done", limit=120
                )
                key = done["secret"]["key_id"]
                assert key == rotating[integration_id]["rotation"]["new_secret"]["key_id"]
                assert fleet.passwords(done) == [key]
                assert fleet.vault_keys(integration_id) == [key]
                assert (await fleet.operator.run("secret", integration_id, "--reveal")).stdout.strip()
        finally:
            for worker in (worker_a, worker_b):
                worker.kill()
                worker.wait()
        logs = "".join((tmp_path / f"worker-{w}.log").read_text() for w in "ab")
        assert "SecretNotInStore" not in logs
        # Four secrets went through the vault; none of them into a log or another command's output.
        assert len(set(fleet.revealed)) == 4
        for value in fleet.revealed:
            assert value not in logs and all(value not in output for output in fleet.operator.outputs)
