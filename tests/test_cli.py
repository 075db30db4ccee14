"""starter.py as an operator meets it on the dev server: it never hangs and never prints a traceback,
checks every flag before anything starts, says what differs, and ends integrations on request."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from simulators.entra.catalog import TENANT_DOMAIN
from simulators.entra.seed import ADMIN_UPN
from simulators.harness import RunningSimulators, running_simulators
from simulators.human import PortalHuman
from tests.operator import Operator, operator_env, worker_process

pytestmark = pytest.mark.devserver


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[RunningSimulators]:
    async with running_simulators(tmp_path / "sim") as running:
        yield running


def no_traceback(*outputs: str) -> bool:
    return not any("Traceback" in output for output in outputs)


async def test_without_a_worker_commands_say_so_within_seconds(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    operator = Operator(operator_env(dev_env, sims, tmp_path), [])
    for args in (("onboard", "lonely"), ("status", "lonely")):
        started = time.monotonic()
        failed = await operator.run(*args, expect=3)
        assert time.monotonic() - started < 5 + 3  # the answer wait, plus the process's start-up
        assert "no worker is polling the task queue" in failed.stderr and len(failed.stderr.splitlines()) == 1
        assert no_traceback(failed.stderr)


async def test_onboard_flags_are_checked_before_anything_starts(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    env = operator_env(dev_env, sims, tmp_path)
    operator = Operator(env, [])
    async with worker_process(env, tmp_path / "worker.log", dev_env.client):
        for args, message in [
            (("onboard", "Bad_ID"), "integration ID: integration ID 'Bad_ID' must be 1-63 lowercase"),
            (("onboard", "ok", "--tenant", "not a tenant"), "--tenant: must be the tenant's GUID"),
            (("onboard", "ok", "--secret-lifetime-days", "0"), "--secret-lifetime-days: Input should be greater"),
            (("onboard", "ok", "--secret-lifetime-days", "731"), "--secret-lifetime-days: Input should be less"),
            (("onboard", "ok", "--redirect-uri", "http://pbx/cb"), "--redirect-uri: redirect URI: 'http://pbx/cb'"),
            (("onboard", "ok", "--sso-redirect-uri", "https://pbx/sso"), "--sso-redirect-uri needs --redirect-uri"),
            (("onboard", "ok", "--tenant", "fabrikam.onmicrosoft.com"), "--tenant: Entra knows no tenant"),
        ]:
            failed = await operator.run(*args, expect=2)
            assert message in failed.stderr, failed.stderr
            assert len(failed.stderr.splitlines()) == 1 and no_traceback(failed.stderr)
        missing = await operator.run("status", "ok", expect=2)
        assert "no integration 'ok'" in missing.stderr, "nothing was started"

        # A domain names the tenant; the integration gets its GUID.
        await operator.run("onboard", "by-domain", "--tenant", TENANT_DOMAIN, "--secret-lifetime-days", "90")
        status = await operator.status("by-domain")
        assert status["steps"]["preflight"]["state"] in ("running", "done")
        again = await operator.run(
            "onboard", "by-domain", "--tenant", TENANT_DOMAIN, "--secret-lifetime-days", "30", expect=2
        )
        assert "already runs with other settings: secret lifetime 90 days (you gave 30 days)" in again.stderr
        same = await operator.run("onboard", "by-domain", "--tenant", sims.entra.config.tenant_id)
        assert "already running with these settings" in same.stdout


async def test_a_key_this_process_lacks_is_named_in_one_line(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    env = operator_env(dev_env, sims, tmp_path)
    async with worker_process(env, tmp_path / "worker.log", dev_env.client):
        await Operator(env, []).run("onboard", "keyed")
        other_keys = {**env, "YEC_ENCRYPTION_KEYS": "other:" + base64.b64encode(b"o" * 32).decode()}
        failed = await Operator(other_keys, []).run("status", "keyed", expect=2)
    assert "can't decrypt the workflow's data: it was encrypted with key ID 'test'" in failed.stderr
    assert len(failed.stderr.splitlines()) == 1 and no_traceback(failed.stderr)


async def test_a_worker_with_other_keys_says_so_once_per_workflow(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    env = operator_env(dev_env, sims, tmp_path)
    log = tmp_path / "worker.log"
    other_keys = {**env, "YEC_ENCRYPTION_KEYS": "other:" + base64.b64encode(b"o" * 32).decode()}
    async with worker_process(other_keys, log, dev_env.client):
        await Operator(env, []).run("onboard", "foreign", expect=3)  # written with the key "test"
        await asyncio.sleep(15)  # the server hands the failing task out again meanwhile
    lines = [line for line in log.read_text().splitlines() if "can't be processed by this worker" in line]
    assert len(lines) == 1, log.read_text()[-3000:]
    assert "key ID 'test', which is not in YEC_ENCRYPTION_KEYS here" in lines[0]
    assert "Traceback" not in log.read_text()


async def test_ending_integrations_asks_first_then_removes_what_the_service_made(
    dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path
) -> None:
    env = operator_env(dev_env, sims, tmp_path)
    operator = Operator(env, [])
    async with worker_process(env, tmp_path / "worker.log", dev_env.client):
        async with PortalHuman(sims.yeastar.url, sims.ca.ca_file) as human:
            uris = await human.read_redirect_uris()
            await operator.run("onboard", "bye", "--redirect-uri", uris.redirect_uri)
            waiting = await operator.wait_for("bye", lambda s: s["phase"] == "WaitingForConsent", "the card")
            secret = (await operator.run("secret", "bye", "--reveal")).stdout.strip()
            app: dict[str, Any] = waiting["app"]
            await human.save_app_registration(app["client_id"], app["tenant_id"], SecretStr(secret))
            await human.sign_in_and_accept(ADMIN_UPN)
        early = await operator.run("redirect-uris", "bye", "--redirect-uri", uris.redirect_uri, expect=2)
        assert "already has" in early.stderr
        await operator.run("consent", "bye", "--by", ADMIN_UPN)
        await operator.wait_for("bye", lambda s: s["phase"] == "Connected", "connected")

        moved = uris.redirect_uri.replace("contoso", "contoso-new")
        changed = await operator.run("redirect-uris", "bye", "--redirect-uri", moved)
        assert "The app registration now has these redirect URIs." in changed.stdout
        assert sims.entra.state.application(app["application_object_id"]).props["web"]["redirectUris"] == [moved]  # type: ignore[union-attr]

        refused = await operator.run("cancel", "bye", "--yes", expect=2)
        assert "it has been Connected" in refused.stderr
        unconfirmed = await operator.run("offboard", "bye", expect=2)  # no terminal to ask on
        assert "confirm with --yes" in unconfirmed.stderr
        ended = await operator.run("offboard", "bye", "--yes", "--by", "ops")
        assert "Offboarded (phase Offboarded)" in ended.stdout and "1 client secret(s)" in ended.stdout
        assert (await operator.run("offboard", "bye", "--yes", expect=2)).stderr.strip().endswith("already offboarded")

        await operator.run("onboard", "never")
        await operator.wait_for("never", lambda s: s["phase"] == "WaitingForRedirectUris", "waiting for URIs")
        cancelled = await operator.run("cancel", "never", "--yes")
        assert "Cancelled by the operator" in cancelled.stdout
    remaining = sims.entra.state.application(app["application_object_id"])
    assert remaining is not None and remaining.password_credentials == [], "the app stays, its secret is gone"
