"""However a rotation ends, the integration learns it and returns to a truthful phase; once the PBX
confirmed the new secret, that secret is the one tracked. Stub activities (and stub rotation
workflows registered under the real name) on the time-skipping server make each path quick."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from models.activities import IntegrationRef
from models.integration import (
    ConsentConfirmation,
    IntegrationStatus,
    Phase,
    RotationRequest,
    RotationStage,
)
from tests.conftest import bounded, record_history, wait_until
from tests.workflows.stub_rotations import (
    RotationThatFails,
    RotationThatHangs,
    SignalsAClosedWorkflow,
    stub_workflows,
)
from tests.workflows.stubs import URIS, FakeGraph, StubWorld, stub_world
from workflows.integration import IntegrationWorkflow
from workflows.rotation_request import RotationRequestWorkflow

DAY = timedelta(days=1)


async def ask_to_rotate(world: StubWorld, integration_id: str, request_id: str = "tick-1") -> None:
    """What the schedule's action does: a RotationRequestWorkflow signalling the integration."""
    await bounded(
        world.env.client.execute_workflow(
            RotationRequestWorkflow.run,
            IntegrationRef(integration_id=integration_id),
            id=f"rotation-request-{integration_id}-{request_id}",
            task_queue=world.task_queue,
        ),
        "the request",
    )


def rotating(stage: RotationStage) -> Any:
    return lambda s: s.rotation is not None and s.rotation.stage == stage


def settled(s: IntegrationStatus) -> bool:
    return s.rotation is None and s.last_rotation is not None


async def confirm_pbx(handle: WorkflowHandle[Any, Any]) -> None:
    await handle.execute_update(IntegrationWorkflow.confirm_pbx_updated, ConsentConfirmation(confirmed_by="admin"))


# ------------------------------------------------------------------ messages


async def test_a_repeated_request_is_one_rotation_and_a_second_is_refused(ts_env: WorkflowEnvironment) -> None:
    async with stub_world(ts_env) as world:
        handle, _ = await world.connected(world.onboard("twice"))
        request = RotationRequest(integration_id="twice", request_id="tick-1")
        await handle.signal(IntegrationWorkflow.request_rotation, request)
        await handle.signal(IntegrationWorkflow.request_rotation, request)  # the same tick delivered again
        status = await wait_until(handle, rotating(RotationStage.WAITING_FOR_PBX), "rotating")
        assert status.rotation is not None and status.rotation.workflow_id == "rotation-twice-1"
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            manual = RotationRequest(integration_id="twice", request_id="manual-1", reason="manual")
            await handle.execute_update(IntegrationWorkflow.rotate_now, manual)
        assert "already running (rotation-twice-1, waiting_for_pbx)" in str(refused.value.cause)
        await confirm_pbx(handle)
        await ts_env.sleep(timedelta(hours=1))  # the sign-ins settle
        done = await wait_until(handle, settled, "settled")
    assert done.phase == Phase.CONNECTED and done.rotations_completed == 1
    assert world.graph.calls["create_client_secret"] == 2, "one secret at onboarding, one for the one rotation"


async def test_a_request_to_a_closed_integration_fails_nobody(ts_env: WorkflowEnvironment) -> None:
    async with stub_world(ts_env) as world:
        handle, _ = await world.connected(world.onboard("gone"))
        await handle.terminate("offboarded by hand")
        result = await bounded(
            ts_env.client.execute_workflow(
                RotationRequestWorkflow.run,
                IntegrationRef(integration_id="gone"),
                id="rotation-request-gone-1",
                task_queue=world.task_queue,
            ),
            "the request",
        )
    assert result == "integration-gone is not running: its rotation schedule was deleted"
    await record_history(ts_env.client.get_workflow_handle("rotation-request-gone-1"), "rotation-request-to-closed")
    assert world.graph.calls["delete_rotation_schedule"] == 1


async def test_a_signal_to_a_workflow_that_has_closed_fails_nobody(ts_env: WorkflowEnvironment) -> None:
    async with stub_world(ts_env, workflows=[SignalsAClosedWorkflow]) as world:
        gone = await ts_env.client.start_workflow(
            SignalsAClosedWorkflow.run, "nobody", id="soon-gone", task_queue=world.task_queue
        )
        await bounded(gone.result(), "the first run")  # it signalled a workflow that never existed
        delivered = await bounded(
            ts_env.client.execute_workflow(
                SignalsAClosedWorkflow.run, "soon-gone", id="sender", task_queue=world.task_queue
            ),
            "the sender",
        )
    assert delivered is False, "the sender completed normally, knowing the signal was not delivered"


async def test_consent_before_the_credentials_exist_is_refused(ts_env: WorkflowEnvironment) -> None:
    async with stub_world(ts_env) as world:
        onboard = world.onboard("early").model_copy(update={"redirect_uris": None})
        handle = await world.start(onboard)
        await wait_until(handle, lambda s: s.phase == Phase.WAITING_FOR_REDIRECT_URIS, "waiting for URIs")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(IntegrationWorkflow.confirm_consent, ConsentConfirmation(confirmed_by="early"))
        status = await handle.query(IntegrationWorkflow.status)
    assert "nothing to confirm yet: the integration is WaitingForRedirectUris" in str(refused.value.cause)
    assert status.phase == Phase.WAITING_FOR_REDIRECT_URIS


# ------------------------------------------------- the ways a rotation ends


async def test_a_failed_rotation_leaves_the_integration_connected_and_cleans_up(ts_env: WorkflowEnvironment) -> None:
    async with stub_world(ts_env, workflows=stub_workflows(RotationThatFails)) as world:
        handle, connected = await world.connected(world.onboard("fails"))
        await ask_to_rotate(world, "fails")
        status = await wait_until(handle, settled, "settled")
        await record_history(handle, "rotation-failed")
    assert status.phase == Phase.CONNECTED and status.secret == connected.secret
    assert status.last_rotation is not None and status.last_rotation.stage == RotationStage.FAILED
    assert "a bug in the rotation" in (status.last_rotation.message or "")
    assert world.graph.calls["discard_operation_secrets"] == 1, "whatever it created before its card is removed"
    assert [n.severity for n in world.graph.of_kind("rotation_failed")] == ["critical"]
    assert any("failed" in w for w in status.warnings)


async def test_a_cancelled_rotation_is_learnt_at_once(ts_env: WorkflowEnvironment) -> None:
    await ended_from_outside(ts_env, "cancelled")


async def test_a_terminated_rotation_is_learnt_at_once(dev_env: WorkflowEnvironment) -> None:
    """On the dev server: the time-skipping server never tells a parent that its child was terminated
    (temporalio/sdk-java#2921)."""
    await ended_from_outside(dev_env, "terminated")


async def ended_from_outside(env: WorkflowEnvironment, ending: str) -> None:
    async with stub_world(env, workflows=stub_workflows(RotationThatHangs)) as world:
        handle, connected = await world.connected(world.onboard(f"ended-{ending}"))
        await ask_to_rotate(world, f"ended-{ending}")
        waiting = await wait_until(handle, rotating(RotationStage.WAITING_FOR_PBX), "rotating")
        assert waiting.phase == Phase.ROTATING and waiting.rotation is not None
        child = env.client.get_workflow_handle(waiting.rotation.workflow_id)
        await (child.terminate("operator") if ending == "terminated" else child.cancel())
        status = await wait_until(handle, settled, "settled")
    assert status.phase == Phase.CONNECTED and status.secret == connected.secret
    assert status.last_rotation is not None and status.last_rotation.stage == RotationStage.FAILED
    assert "ended without finishing" in (status.last_rotation.message or "")
    # Its card was shown, so its new key may already be in the PBX: kept, and the status says so.
    assert "hung-key stays in Entra" in (status.last_rotation.message or "")
    assert world.graph.calls["discard_operation_secrets"] == 0


async def test_a_rotation_that_times_out_is_learnt_and_the_expiry_reported(ts_env: WorkflowEnvironment) -> None:
    async with stub_world(ts_env, workflows=stub_workflows(RotationThatHangs)) as world:
        handle, _ = await world.connected(world.onboard("timeout", secret_lifetime=timedelta(days=4)))
        await ask_to_rotate(world, "timeout")
        await wait_until(handle, rotating(RotationStage.WAITING_FOR_PBX), "rotating")
        await ts_env.sleep(timedelta(days=6))  # the child's run is bounded by the old secret's expiry + a day
        status = await wait_until(handle, lambda s: s.phase == Phase.EXPIRED, "expired")
    assert status.last_rotation is not None and status.last_rotation.stage == RotationStage.FAILED
    assert "timed out" in (status.last_rotation.message or "").lower()
    assert status.blocked is not None and status.blocked.error_type == "SecretExpired"


# --------------------------------------------------- after the PBX confirmed


async def test_after_the_pbx_confirmed_the_new_secret_is_tracked_whatever_happens(
    dev_env: WorkflowEnvironment,
) -> None:
    """On the dev server: the rotation is terminated (see above), and the time is real."""
    graph = FakeGraph(pbx_uses="old")  # sign-ins never show the PBX on the new key
    async with stub_world(dev_env, graph) as world:
        handle, connected = await world.connected(world.onboard("confirmed"))
        assert connected.secret is not None
        await ask_to_rotate(world, "confirmed")
        waiting = await wait_until(handle, rotating(RotationStage.WAITING_FOR_PBX), "waiting for the PBX")
        assert waiting.rotation is not None and waiting.rotation.new_secret is not None
        await confirm_pbx(handle)
        await wait_until(handle, rotating(RotationStage.VERIFYING_CUTOVER), "verifying")
        await dev_env.client.get_workflow_handle(waiting.rotation.workflow_id).terminate("operator mistake")
        status = await wait_until(handle, settled, "settled")
    new, old = waiting.rotation.new_secret.key_id, connected.secret.key_id
    assert status.phase == Phase.CONNECTED and status.secret is not None and status.secret.key_id == new
    assert any(f"old key {old} is left to expire" in w for w in status.warnings)
    assert old not in graph.removed, "never proven unused, so never removed"


async def test_the_cutover_wait_has_a_deadline_and_says_what_to_do(ts_env: WorkflowEnvironment) -> None:
    graph = FakeGraph(pbx_uses="old")
    async with stub_world(ts_env, graph) as world:
        handle, connected = await world.connected(world.onboard("stuck", secret_lifetime=timedelta(days=20)))
        assert connected.secret is not None
        await ts_env.sleep(timedelta(days=10))  # the schedule rotates at half the lifetime
        await ask_to_rotate(world, "stuck")
        await wait_until(handle, rotating(RotationStage.WAITING_FOR_PBX), "waiting for the PBX")
        await confirm_pbx(handle)
        await ts_env.sleep(timedelta(hours=1))
        stuck = await wait_until(
            handle,
            lambda s: s.pending_human_action is not None and "still signs in" in s.pending_human_action.title,
            "stuck",
        )
        assert stuck.phase == Phase.ROTATING and stuck.pending_human_action is not None
        assert stuck.pending_human_action.commands == [
            "python starter.py secret stuck --reveal --pending",
            "python starter.py pbx-updated stuck",
        ]
        await confirm_pbx(handle)  # re-confirming during the check is allowed, and restarts it
        await ts_env.sleep(connected.secret.expires_at - await ts_env.get_current_time() + timedelta(hours=2))
        status = await wait_until(handle, settled, "settled at the deadline")
        assert status.last_rotation is not None
        await record_history(handle, "cutover-deadline")
        rotation = ts_env.client.get_workflow_handle(status.last_rotation.workflow_id)
        await record_history(rotation, "cutover-deadline-rotation")
    assert status.last_rotation.stage == RotationStage.OLD_SECRET_EXPIRED
    assert status.phase == Phase.CONNECTED and status.secret is not None
    assert status.secret.key_id != connected.secret.key_id, "confirmed, so the new key is tracked"
    assert connected.secret.key_id in graph.removed, "expired, so no longer of use to anyone"
    stalled = graph.of_kind("rotation_pending")
    assert len([n for n in stalled if "still_old_key" in n.notification_id]) >= 9  # daily for ten days
    assert stalled[-1].severity == "critical"
    escalated = [n for c, n in graph.delivered if c == "ops" and "still_old_key" in n.notification_id]
    assert escalated


async def test_removing_the_old_key_is_retried_daily_until_it_works(ts_env: WorkflowEnvironment) -> None:
    graph = FakeGraph(removal_failures=2)
    async with stub_world(ts_env, graph) as world:
        handle, connected = await world.connected(world.onboard("retire"))
        assert connected.secret is not None
        await ask_to_rotate(world, "retire")
        await wait_until(handle, rotating(RotationStage.WAITING_FOR_PBX), "waiting for the PBX")
        await confirm_pbx(handle)
        await ts_env.sleep(timedelta(hours=1))
        first = await wait_until(handle, settled, "settled")
        assert first.retired_keys and any("not removed yet" in w for w in first.warnings)
        await ts_env.sleep(3 * DAY)
        later = await handle.query(IntegrationWorkflow.status)
    assert first.last_rotation is not None and first.last_rotation.stage == RotationStage.COMPLETED
    assert later.retired_keys == [] and not any("not removed yet" in w for w in later.warnings)
    assert graph.removed == [connected.secret.key_id]


# ---------------------------------------------------------- bounded history


async def test_a_year_long_paste_wait_continues_as_new_and_keeps_counting(ts_env: WorkflowEnvironment) -> None:
    async with stub_world(ts_env) as world:
        onboard = world.onboard("slow-paste", secret_lifetime=timedelta(days=730), max_history_events=200)
        handle, _ = await world.connected(onboard)
        await ask_to_rotate(world, "slow-paste")
        waiting = await wait_until(handle, rotating(RotationStage.WAITING_FOR_PBX), "waiting for the PBX")
        assert waiting.rotation is not None
        await ts_env.sleep(timedelta(days=365))
        await confirm_pbx(handle)
        await ts_env.sleep(timedelta(hours=1))
        status = await wait_until(handle, settled, "settled")
        child = ts_env.client.get_workflow_handle(waiting.rotation.workflow_id)
        runs = await _runs(ts_env, child)
        await record_history(child, "rotation-year-long-paste")
    reminders = [n.notification_id for n in world.graph.of_kind("rotation_pending")]
    assert len(reminders) == 365 and len(set(reminders)) == 365, "every day once, numbering carried across runs"
    assert status.last_rotation is not None and status.last_rotation.stage == RotationStage.COMPLETED
    assert len(runs) > 5 and max(runs) < 200 + 50


async def test_human_waits_and_blocked_continue_as_new(ts_env: WorkflowEnvironment) -> None:
    graph = FakeGraph(create_fails=True)
    async with stub_world(ts_env, graph) as world:
        onboard = world.onboard("long-waits", max_history_events=150).model_copy(update={"redirect_uris": None})
        handle = await world.start(onboard)
        await wait_until(handle, lambda s: s.phase == Phase.WAITING_FOR_REDIRECT_URIS, "waiting for URIs")
        await ts_env.sleep(timedelta(days=200))
        await handle.execute_update(IntegrationWorkflow.submit_redirect_uris, URIS)
        blocked = await wait_until(handle, lambda s: s.phase == Phase.BLOCKED, "blocked")
        await ts_env.sleep(timedelta(days=200))
        graph.create_fails = False
        await handle.signal(IntegrationWorkflow.retry)
        status = await wait_until(handle, lambda s: s.phase == Phase.WAITING_FOR_CONSENT, "on to the paste")
        await record_history(handle, "long-human-waits")
    assert blocked.blocked is not None and blocked.blocked.error_type == "StubFailure"
    assert status.continued_as_new >= 10 and status.history_length < 150 + 50
    kinds = [n.notification_id for c, n in graph.delivered if c == "ops"]
    uri_reminders = [k for k in kinds if ":redirect_uris_pending:" in k]
    blocked_notes = [k for k in kinds if ":blocked:" in k]
    assert len(uri_reminders) == 200 and len(set(uri_reminders)) == 200
    assert len(blocked_notes) == 201 and len(set(blocked_notes)) == 201  # at once, then daily


def _card_title(status: IntegrationStatus) -> str:
    return status.pending_human_action.title if status.pending_human_action else ""


async def _runs(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any]) -> list[int]:
    """Events per run of a workflow's continue-as-new chain, first to last."""
    describe = await handle.describe()
    first = describe.raw_description.workflow_execution_info.first_run_id
    lengths, run_id = [], first
    while run_id:
        history = await env.client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        lengths.append(len(history.events))
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else ""
        )
    return lengths


# --------------------------------------------------------------- notifications


async def test_a_retried_notification_reaches_each_channel_exactly_once(ts_env: WorkflowEnvironment) -> None:
    graph = FakeGraph(channels=["ops", "flaky"], channel_down={"flaky"})
    async with stub_world(ts_env, graph) as world:
        handle = await world.start(world.onboard("partial", human_reminder_interval=timedelta(hours=1)))
        await wait_until(handle, lambda s: s.phase == Phase.WAITING_FOR_CONSENT, "waiting for consent")
        await ts_env.sleep(timedelta(hours=1, minutes=5))
        await asyncio.sleep(0.5)
        graph.channel_down.clear()  # the flaky channel comes back; its delivery is retried
        await ts_env.sleep(timedelta(minutes=10))
    ops = [n.notification_id for c, n in graph.delivered if c == "ops"]
    flaky = [n.notification_id for c, n in graph.delivered if c == "flaky"]
    assert len(ops) == 1 and ops[0].startswith("partial:consent_pending:")
    assert flaky == ops, "the retry went to the channel that had failed, and only there"
