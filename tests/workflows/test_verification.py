"""Onboarding against the simulators over real HTTPS, where permissions and evidence are concerned:
the least privileged provisioning identity still connects (saying what it can't check), a missing
required permission is named before anything is created, the administrator's evidence comes only
from the PBX, and lost answers to writes leave no duplicates."""

from __future__ import annotations

import asyncio
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from models.integration import REQUIRED_GRAPH_PERMISSIONS, ConsentConfirmation, Phase, Step, StepState
from simulators.clock import CallableClock
from simulators.entra import EntraSimConfig
from tests.conftest import harness_for, wait_for_phase, wait_until
from tests.workflows.test_onboarding import connect_pbx_as_human, portal_redirect_uris
from workflows.integration import IntegrationWorkflow

MINIMUM = ["Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All"]


async def test_the_minimum_permissions_connect_and_name_what_they_cannot_check(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    entra = EntraSimConfig(provisioning_roles=MINIMUM)
    async with harness_for(ts_env, tmp_path, entra=entra) as h, h.worker():
        handle = await h.start(h.onboard_input("least", redirect_uris=await portal_redirect_uris(h)))
        status = await connect_pbx_as_human(h, handle)
    assert status.phase == Phase.CONNECTED, status.blocked
    warnings = " | ".join(status.warnings)
    for permission in ("Directory.Read.All", "AuditLog.Read.All", "Policy.Read.All"):
        assert f"without {permission}" in warnings, warnings
    assert "needs Directory.Read.All" in warnings, "verification says why it could not read the consent"


async def test_a_missing_required_permission_is_named_before_anything_is_created(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    entra = EntraSimConfig(provisioning_roles=["Application.ReadWrite.OwnedBy", "AppRoleAssignment.ReadWrite.All"])
    async with harness_for(ts_env, tmp_path, entra=entra) as h, h.worker():
        handle = await h.start(h.onboard_input("owned-by", redirect_uris=await portal_redirect_uris(h)))
        status = await wait_for_phase(handle, Phase.BLOCKED)
        created = h.sims.entra.state.application_by_unique_name("yeastar-pbx-owned-by")
    assert status.blocked is not None and status.blocked.step == Step.PREFLIGHT
    assert "Application.Read.All" in status.blocked.message + status.blocked.fix
    assert "Grant admin consent" in status.blocked.fix
    assert created is None


def _no_grants_but_logs() -> EntraSimConfig:
    """Sign-in logs readable, the organisation-wide consent not: evidence must come from sign-ins."""
    roles = [*MINIMUM, "Application.Read.All", "AuditLog.Read.All", "Policy.Read.All"]
    return EntraSimConfig(provisioning_roles=roles)


async def test_the_admins_work_in_the_pbx_is_the_evidence_even_before_the_consent_command(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    clock = CallableClock(ts_env.get_current_time)
    async with harness_for(ts_env, tmp_path, entra=_no_grants_but_logs(), clock=clock) as h, h.worker():
        handle = await h.start(h.onboard_input("evidence", redirect_uris=await portal_redirect_uris(h)))
        status = await connect_pbx_as_human(h, handle)  # the admin signs in, then the operator confirms
    assert status.verification is not None
    assert status.verification.admin_consent_evidence is not None
    assert "by the PBX since they were handed over" in status.verification.admin_consent_evidence
    assert not any("no sign-in by the PBX" in w for w in status.warnings)


async def test_the_services_own_sign_ins_are_never_taken_for_the_pbxs(
    ts_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    clock = CallableClock(ts_env.get_current_time)
    async with harness_for(ts_env, tmp_path, entra=_no_grants_but_logs(), clock=clock) as h, h.worker():
        handle = await h.start(h.onboard_input("nobody", redirect_uris=await portal_redirect_uris(h)))
        waiting = await wait_until(handle, lambda s: s.steps[Step.CONNECT_PBX].state == StepState.WAITING, "card")
        assert waiting.app is not None
        # Nobody touches the PBX; the operator confirms anyway. The service signed in as the app itself
        # (proving the secret; verifying): those sign-ins are in the log, and must not count.
        await handle.execute_update(IntegrationWorkflow.confirm_consent, ConsentConfirmation(confirmed_by="hasty"))
        status = await wait_for_phase(handle, Phase.CONNECTED)
        own = [s for s in h.sims.entra.state.sign_ins(waiting.app.client_id) if s.error_code == 0]
    assert len(own) >= 2, "the proof and the verification signed in as the app"
    assert status.verification is not None and status.verification.admin_consent_evidence is None
    assert any("no sign-in by the PBX" in w for w in status.warnings), status.warnings


async def test_lost_answers_to_writes_leave_one_of_everything(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    """A fifth of Graph writes are carried out and their answer lost (the connection drops): every
    onboarding still ends Connected with one app, one secret and six role assignments."""
    entra = EntraSimConfig(drop_after_commit_rate=0.2, seed=7)
    ids = [f"lossy-{n}" for n in range(5)]
    async with harness_for(ts_env, tmp_path, entra=entra) as h, h.worker():
        uris = await portal_redirect_uris(h)
        handles = [await h.start(h.onboard_input(i, redirect_uris=uris)) for i in ids]
        connected = await asyncio.gather(*(connect_pbx_as_human(h, handle) for handle in handles))
        state = h.sims.entra.state
        dropped = sum(1 for r in state.request_log if r.status == 0)
    assert dropped >= 5, "the fault was injected"
    for status in connected:
        assert status.phase == Phase.CONNECTED, status.blocked
        assert status.app is not None and status.secret is not None and status.app.service_principal_id
        apps = [a for a in state.applications() if a.unique_name == f"yeastar-pbx-{status.integration_id}"]
        assert len(apps) == 1
        assert [p.key_id for p in apps[0].password_credentials] == [status.secret.key_id]
        assert len(state.app_role_assignments(status.app.service_principal_id)) == len(REQUIRED_GRAPH_PERMISSIONS)
