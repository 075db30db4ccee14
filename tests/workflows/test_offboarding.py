"""Ending an integration (offboard, cancel) and changing its redirect URIs after Connected, with stub
activities on the time-skipping server."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from models.integration import OffboardRequest, Phase, RedirectUris, RotationRequest, RotationStage
from tests.conftest import bounded, wait_until
from tests.workflows.stubs import FakeGraph, stub_world
from workflows.integration import IntegrationWorkflow


async def test_offboarding_removes_the_services_secrets_and_ends_the_workflow(ts_env: WorkflowEnvironment) -> None:
    graph = FakeGraph()
    async with stub_world(ts_env, graph) as world:
        handle, connected = await world.connected(world.onboard("leaving"))
        assert connected.secret is not None
        await handle.execute_update(IntegrationWorkflow.offboard, OffboardRequest(by="ops@contoso.com"))
        final = await bounded(handle.result(), "the offboarding")
    assert final.phase == Phase.OFFBOARDED
    assert graph.removed == [connected.secret.key_id] and not graph.app_deleted
    assert final.pending_human_action is not None
    assert final.pending_human_action.title.startswith("Offboarded by ops@contoso.com")
    assert "1 client secret(s)" in final.pending_human_action.steps[0]


async def test_offboarding_during_a_rotation_ends_the_rotation_first(ts_env: WorkflowEnvironment) -> None:
    graph = FakeGraph()
    async with stub_world(ts_env, graph) as world:
        handle, _ = await world.connected(world.onboard("mid-rotation"))
        request = RotationRequest(integration_id="mid-rotation", request_id="r1", reason="manual")
        await handle.execute_update(IntegrationWorkflow.rotate_now, request)
        waiting = await wait_until(
            handle, lambda s: s.rotation is not None and s.rotation.stage == RotationStage.WAITING_FOR_PBX, "rotating"
        )
        assert waiting.rotation is not None
        await handle.execute_update(IntegrationWorkflow.offboard, OffboardRequest(delete_app=True))
        final = await bounded(handle.result(), "the offboarding")
        child = await ts_env.client.get_workflow_handle(waiting.rotation.workflow_id).describe()
    assert final.phase == Phase.OFFBOARDED and graph.app_deleted
    assert child.status is not None and child.status.name == "CANCELED"
    assert not [n for c, n in graph.delivered if n.kind == "rotation_failed"], "no alarm for a deliberate end"


async def test_cancel_is_for_an_integration_that_never_connected(ts_env: WorkflowEnvironment) -> None:
    graph = FakeGraph()
    async with stub_world(ts_env, graph) as world:
        waiting = await world.start(world.onboard("never").model_copy(update={"redirect_uris": None}))
        await wait_until(waiting, lambda s: s.phase == Phase.WAITING_FOR_REDIRECT_URIS, "waiting")
        await waiting.execute_update(IntegrationWorkflow.offboard, OffboardRequest(cancel=True))
        cancelled = await bounded(waiting.result(), "the cancel")

        connected, _ = await world.connected(world.onboard("was-connected"))
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await connected.execute_update(IntegrationWorkflow.offboard, OffboardRequest(cancel=True))
    assert cancelled.phase == Phase.OFFBOARDED
    assert cancelled.pending_human_action is not None
    assert cancelled.pending_human_action.title.startswith("Cancelled")
    assert "nothing had been created" in cancelled.pending_human_action.steps[0]
    assert graph.calls["offboard_app"] == 0
    assert "it has been Connected" in str(refused.value.cause) and "use offboard" not in str(refused.value.cause)


async def test_redirect_uris_change_after_connected_and_are_applied(ts_env: WorkflowEnvironment) -> None:
    graph = FakeGraph()
    async with stub_world(ts_env, graph) as world:
        handle, _ = await world.connected(world.onboard("moved"))
        moved = RedirectUris(redirect_uri="https://new.pbx.example.com/api/microsoft365/oauth2/callback")
        before = graph.calls["set_redirect_uris"]
        status = await handle.execute_update(IntegrationWorkflow.submit_redirect_uris, moved)
        with pytest.raises(WorkflowUpdateFailedError) as same:
            await handle.execute_update(IntegrationWorkflow.submit_redirect_uris, moved)
        await ts_env.sleep(timedelta(days=2))
        later = await handle.query(IntegrationWorkflow.status)
    assert status.redirect_uris == moved and graph.calls["set_redirect_uris"] == before + 1
    assert "already has" in str(same.value.cause)
    assert later.phase == Phase.CONNECTED
