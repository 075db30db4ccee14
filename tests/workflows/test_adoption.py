"""Adopting an app set up by hand, and the daily drift check, with stub activities on the time-skipping
server: what the workflow tells people, and every way these paths end."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from models.integration import Phase, RotationRequest, SecretRef, Step, StepState
from models.review import Finding
from tests.conftest import bounded, record_history, wait_until
from tests.workflows.stubs import FakeGraph, stub_world
from workflows.integration import IntegrationWorkflow

FOREIGN = Finding(
    code="foreign-secret", detail="client secret xyz… (key k9) was added outside this service", repairable=False
)
PUT_BACK = Finding(
    code="redirect-uri-missing", detail="Web redirect URI(s) missing: https://pbx/sso", repairable=True, repaired=True
)


async def test_adopting_a_secret_about_to_expire_warns_at_once_and_offers_the_rotation(
    ts_env: WorkflowEnvironment,
) -> None:
    now = await ts_env.get_current_time()
    graph = FakeGraph(
        hand_made=SecretRef(key_id="hand", hint="Hnd", display_name="PBX", expires_at=now + timedelta(days=5))
    )
    async with stub_world(ts_env, graph) as world:
        handle = await world.start(world.onboard("adopted", adopt="client-by-hand"))
        status = await wait_until(handle, lambda s: s.phase == Phase.CONNECTED, "adopted")

        assert status.adopted_key_id == "hand" and status.secret is not None and status.secret.key_id == "hand"
        assert status.redirect_uris is not None and status.redirect_uris.redirect_uri.startswith("https://pbx")
        assert "set up by hand (key hand)" in (status.steps[Step.CLIENT_SECRET].detail or "")
        assert status.steps[Step.VERIFY].state == StepState.SKIPPED
        assert "repaired: no admin consent for Contacts.Read" in (status.steps[Step.PERMISSIONS].detail or "")
        (urgent,) = graph.of_kind("secret_expiry")
        assert urgent.severity == "critical" and urgent.next_action.endswith("rotate adopted")
        assert graph.calls["register_application"] == 0 and graph.calls["create_client_secret"] == 0

        # No duplicate of the 7-day reminder that fell due before adoption; the 3-day one comes on time.
        await ts_env.sleep(timedelta(days=2, hours=1))
        reminders = graph.of_kind("secret_expiry")
        assert [n.title for n in reminders][1:] == ["Client secret expires in 3 days"]

        # The first rotation replaces the hand-made secret like any other.
        await handle.execute_update(
            IntegrationWorkflow.rotate_now, RotationRequest(integration_id="adopted", request_id="r1", reason="manual")
        )
        await wait_until(handle, lambda s: s.rotation is not None and s.rotation.new_secret is not None, "rotating")
        await record_history(handle, "adopted-expiring")


async def test_an_app_that_cannot_be_found_blocks_until_retried(ts_env: WorkflowEnvironment) -> None:
    graph = FakeGraph()
    async with stub_world(ts_env, graph) as world:
        handle = await world.start(world.onboard("missing", adopt="no-such-client"))
        blocked = await wait_until(handle, lambda s: s.phase == Phase.BLOCKED, "blocked")
        assert (
            blocked.blocked is not None
            and "No app registration with client ID no-such-client" in blocked.blocked.message
        )

        now = await ts_env.get_current_time()
        graph.hand_made = SecretRef(key_id="hand", hint="Hnd", display_name="PBX", expires_at=now + timedelta(days=90))
        await handle.signal(IntegrationWorkflow.retry)
        connected = await wait_until(handle, lambda s: s.phase == Phase.CONNECTED, "adopted after retry")
        assert connected.adopted_key_id == "hand"
        assert graph.of_kind("secret_expiry") == [], "90 days left: the usual reminders, later"


async def test_drift_is_reported_once_and_check_now_runs_the_check(ts_env: WorkflowEnvironment) -> None:
    graph = FakeGraph()
    async with stub_world(ts_env, graph) as world:
        handle, _ = await world.connected(world.onboard("drifting"))
        graph.drift = [PUT_BACK, FOREIGN]

        found = await bounded(handle.execute_update(IntegrationWorkflow.check_now), "check now")
        assert found == [PUT_BACK, FOREIGN]
        status = await handle.query(IntegrationWorkflow.status)
        assert FOREIGN.detail in status.warnings and PUT_BACK.detail not in status.warnings
        (told,) = graph.of_kind("app_drift")
        assert "Put back: Web redirect URI(s) missing" in told.summary and "Needs you: client secret" in told.summary

        # Found again the next day: still a warning, not a second message; gone: the warning goes too.
        await ts_env.sleep(timedelta(days=1, hours=1))
        assert len(graph.of_kind("app_drift")) == 1
        graph.drift = []
        assert await bounded(handle.execute_update(IntegrationWorkflow.check_now), "check now") == []
        status = await handle.query(IntegrationWorkflow.status)
        assert FOREIGN.detail not in status.warnings and status.last_check_at is not None
        await record_history(handle, "drift-reported")


async def test_check_now_is_refused_unless_connected(ts_env: WorkflowEnvironment) -> None:
    async with stub_world(ts_env) as world:
        handle = await world.start(world.onboard("early"))
        await wait_until(handle, lambda s: s.phase == Phase.WAITING_FOR_CONSENT, "waiting")

        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(IntegrationWorkflow.check_now)
        assert "the check runs while Connected; early is waiting for the administrator" in str(refused.value.cause)
