"""IntegrationWorkflow on the time-skipping test server against the simulators over real HTTPS."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from common.secret_store import open_local_store
from models.integration import (
    REQUIRED_GRAPH_PERMISSIONS,
    ConsentConfirmation,
    IntegrationStatus,
    LifecycleOptions,
    Phase,
    RedirectUris,
    Step,
    StepState,
)
from simulators.clock import CallableClock
from simulators.entra import EntraSimConfig
from simulators.entra.seed import ADMIN_UPN
from simulators.human import PortalHuman
from tests.conftest import OPS, Harness, harness_for, record_history, wait_for_phase, wait_until
from tests.receivers import Receiver
from workflows.integration import IntegrationWorkflow

PORTAL_ADMIN = ADMIN_UPN


async def connect_pbx_as_human(h: Harness, handle: WorkflowHandle[Any, Any]) -> IntegrationStatus:
    """Step 6 as the admin does it: paste IDs + secret in the portal, sign in, Accept, then confirm."""
    status = await wait_until(handle, lambda s: s.steps[Step.CONNECT_PBX].state == StepState.WAITING, "the card")
    assert status.app is not None and status.secret is not None
    store = open_local_store(h.settings)
    secret = await store.get(status.integration_id, status.secret.key_id)
    async with PortalHuman(h.sims.yeastar.url, h.sims.ca.ca_file) as human:
        await human.save_app_registration(status.app.client_id, status.app.tenant_id, secret)
        await human.sign_in_and_accept(PORTAL_ADMIN)
    await handle.execute_update(IntegrationWorkflow.confirm_consent, ConsentConfirmation(confirmed_by=PORTAL_ADMIN))
    return await wait_for_phase(handle, Phase.CONNECTED, Phase.BLOCKED)


async def portal_redirect_uris(h: Harness) -> RedirectUris:
    async with PortalHuman(h.sims.yeastar.url, h.sims.ca.ca_file) as human:
        return await human.read_redirect_uris()


async def test_happy_path_reaches_connected_with_one_of_everything(ts: Harness) -> None:
    uris = await portal_redirect_uris(ts)
    async with ts.worker():
        handle = await ts.start(ts.onboard_input("acme", redirect_uris=uris, yeastar_configured=True))
        waiting = await wait_for_phase(handle, Phase.WAITING_FOR_CONSENT)
        card = waiting.pending_human_action
        assert card is not None and waiting.app is not None
        assert card.values["Application (client) ID"] == waiting.app.client_id
        assert any("consent acme" in c for c in card.commands)
        status = await connect_pbx_as_human(ts, handle)
        await record_history(handle, "onboarding-happy-path")

    assert status.phase == Phase.CONNECTED, status.blocked
    assert all(status.steps[s].state == StepState.DONE for s in Step), status.steps
    assert status.verification is not None
    assert sorted(status.verification.role_assignments) == sorted(REQUIRED_GRAPH_PERMISSIONS)
    assert status.verification.extension_count is not None and status.verification.extension_count > 0
    assert status.verification.admin_consent_evidence, status.warnings

    entra = ts.sims.entra.state
    assert status.app is not None and status.secret is not None
    apps = [a for a in entra.applications() if a.unique_name == "yeastar-pbx-acme"]
    assert len(apps) == 1
    app = apps[0]
    assert app.props["signInAudience"] == "AzureADMyOrg"
    assert app.props["web"]["redirectUris"] == [uris.redirect_uri, uris.sso_redirect_uri]
    assert [p.key_id for p in app.password_credentials] == [status.secret.key_id]
    assert status.app.service_principal_id is not None
    assert len(entra.app_role_assignments(status.app.service_principal_id)) == len(REQUIRED_GRAPH_PERMISSIONS)
    # Preflight and verification shared one PBX API token, revoked when the worker stopped.
    pbx_tokens = ts.sims.yeastar.state.counters
    assert (pbx_tokens.issued, pbx_tokens.deleted) == (1, 1)


async def test_redirect_uris_by_update_and_validator_rejects_bad_ones(ts: Harness) -> None:
    async with ts.worker():
        handle = await ts.start(ts.onboard_input("by-update"))
        status = await wait_for_phase(handle, Phase.WAITING_FOR_REDIRECT_URIS)
        assert status.pending_human_action is not None
        assert "redirect-uris by-update" in status.pending_human_action.commands[0]

        for bad, reason in [
            ("http://pbx.example.com/cb", "https"),
            ("https://pbx.example.com/*/cb", "wildcard"),
            ("https://pbx.example.com/cb#frag", "fragment"),
            ("https://pbx.example.com/" + "a" * 300, "256"),
        ]:
            with pytest.raises(WorkflowUpdateFailedError) as info:
                await handle.execute_update(IntegrationWorkflow.submit_redirect_uris, RedirectUris(redirect_uri=bad))
            assert reason in str(info.value.cause)
        still = await handle.query(IntegrationWorkflow.status)
        assert still.redirect_uris is None and still.phase == Phase.WAITING_FOR_REDIRECT_URIS

        good = await portal_redirect_uris(ts)
        accepted = await handle.execute_update(IntegrationWorkflow.submit_redirect_uris, good)
        assert accepted.redirect_uris == good
        with pytest.raises(WorkflowUpdateFailedError) as again:
            await handle.execute_update(IntegrationWorkflow.submit_redirect_uris, good)
        assert "already has" in str(again.value.cause)
        status = await connect_pbx_as_human(ts, handle)
        await record_history(handle, "onboarding-redirect-uris-by-update")
    assert status.phase == Phase.CONNECTED


async def test_blocked_by_policy_then_retry_resumes(ts: Harness) -> None:
    policy = ts.sims.entra.state.policy
    policy.password_addition_blocked = True
    async with ts.worker():
        handle = await ts.start(ts.onboard_input("blocked", redirect_uris=await portal_redirect_uris(ts)))
        status = await wait_for_phase(handle, Phase.BLOCKED)
        assert status.blocked is not None
        assert status.blocked.step == Step.PREFLIGHT
        assert status.blocked.error_type == "SecretsForbiddenByPolicy"
        assert "App management policies" in status.blocked.fix
        assert status.pending_human_action is not None
        assert "retry blocked" in status.pending_human_action.commands[0]
        assert ts.sims.entra.state.application_by_unique_name("yeastar-pbx-blocked") is None  # nothing created

        policy.password_addition_blocked, policy.max_password_lifetime_days = False, 90
        await handle.signal(IntegrationWorkflow.retry)
        status = await connect_pbx_as_human(ts, handle)
        await record_history(handle, "onboarding-blocked-then-retry")
    assert status.phase == Phase.CONNECTED
    assert status.steps[Step.PREFLIGHT].attempts == 2
    assert status.secret is not None and status.connected_at is not None
    assert timedelta(days=89) < status.secret.expires_at - status.connected_at < timedelta(days=91)
    assert any("clamped from 180 to 90 days" in w for w in status.warnings)


async def test_refused_pbx_login_blocks_and_retry_logs_in_once_more(ts: Harness) -> None:
    pbx = ts.sims.yeastar.state
    configured = pbx.api_client_secret
    pbx.api_client_secret = "regenerated-on-the-pbx"  # someone reset the API password in the PBX portal
    async with ts.worker():
        onboard = ts.onboard_input("pbx-refused", redirect_uris=await portal_redirect_uris(ts), yeastar_configured=True)
        handle = await ts.start(onboard)
        status = await wait_for_phase(handle, Phase.BLOCKED)
        assert status.blocked is not None
        assert (status.blocked.step, status.blocked.error_type) == (Step.PREFLIGHT, "YeastarAuthFailed")
        assert "5 failed logins" in status.blocked.fix
        assert pbx.counters.auth_failures == 1  # not retried on its own: 5 failures block the worker's IP

        pbx.api_client_secret = configured  # the admin puts back the password this service was given
        await handle.signal(IntegrationWorkflow.retry)
        status = await connect_pbx_as_human(ts, handle)
    assert status.phase == Phase.CONNECTED
    assert (pbx.counters.auth_failures, pbx.counters.issued) == (1, 1)


async def test_missing_provisioning_permission_names_it(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    roles = ["Application.ReadWrite.All", "Application.Read.All", "Policy.Read.All"]
    async with harness_for(ts_env, tmp_path, entra=EntraSimConfig(provisioning_roles=roles)) as h, h.worker():
        handle = await h.start(h.onboard_input("no-consent-right", redirect_uris=await portal_redirect_uris(h)))
        status = await wait_for_phase(handle, Phase.BLOCKED)
    assert status.blocked is not None and status.blocked.error_type == "MissingPermissions"
    assert "AppRoleAssignment.ReadWrite.All" in status.blocked.message
    assert "Grant admin consent" in status.blocked.fix


async def test_reminders_while_waiting_for_consent(ts_notified: Harness, receiver: Receiver) -> None:
    h = ts_notified
    options = LifecycleOptions(human_reminder_interval=timedelta(hours=4))
    async with h.worker():
        handle = await h.start(
            h.onboard_input("slow-admin", redirect_uris=await portal_redirect_uris(h), options=options)
        )
        await wait_for_phase(handle, Phase.WAITING_FOR_CONSENT)
        await h.env.sleep(timedelta(hours=13))
    reminders = [json.loads(r.body) for r in receiver.of(OPS)]
    assert [n["notification_id"].rsplit(":", 1)[-1] for n in reminders] == ["1", "2", "3"]  # at 4, 8 and 12 hours
    assert {n["kind"] for n in reminders} == {"consent_pending"}
    assert all("consent slow-admin" in n["next_action"] for n in reminders)


async def test_starting_again_attaches_to_the_running_workflow(ts: Harness) -> None:
    async with ts.worker():
        onboard = ts.onboard_input("twice")
        first = await ts.start(onboard)
        second = await ts.start(onboard)
        assert first.result_run_id == second.result_run_id
        await wait_for_phase(first, Phase.WAITING_FOR_REDIRECT_URIS)


async def test_secret_expiry_is_reported(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    options = LifecycleOptions(secret_lifetime=timedelta(days=10), credential_check_interval=timedelta(days=30))
    clock = CallableClock(ts_env.get_current_time)
    async with harness_for(ts_env, tmp_path, clock=clock) as h, h.worker():
        handle = await h.start(
            h.onboard_input("expiring", redirect_uris=await portal_redirect_uris(h), options=options)
        )
        connected = await connect_pbx_as_human(h, handle)
        assert connected.phase == Phase.CONNECTED
        await h.env.sleep(timedelta(days=11))
        status = await wait_for_phase(handle, Phase.EXPIRED)
        await record_history(handle, "secret-expired")
    assert status.blocked is not None and status.blocked.error_type == "SecretExpired"
    assert status.pending_human_action is not None
    assert "retry expiring" in status.pending_human_action.commands[0]
