"""Rotation on the time-skipping server against the simulators: new secret first, the human's paste,
sign-in evidence, and only then the old key goes. The tests ask for rotations the way the schedule's
action does (a RotationRequestWorkflow); the integration runs each as its child workflow."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.history.v1 import History
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError

from common.codec import EncryptionCodec
from common.secret_store import open_local_store
from models.integration import (
    ConsentConfirmation,
    IntegrationStatus,
    LifecycleOptions,
    Phase,
    RotationRequest,
    RotationStage,
)
from simulators.entra.seed import ADMIN_UPN
from simulators.human import PortalHuman
from tests.conftest import Harness, bounded, record_history, wait_until
from tests.secret_scan import decoded_payload_bytes, leaks
from tests.workflows.test_onboarding import connect_pbx_as_human, portal_redirect_uris
from workflows.integration import IntegrationWorkflow


async def paste_new_secret_as_human(h: Harness, handle: WorkflowHandle[Any, Any]) -> IntegrationStatus:
    """The rotation card, done: paste the new secret into the PBX, sign in again, confirm."""
    status = await wait_until(
        handle,
        lambda s: s.rotation is not None and s.rotation.stage == RotationStage.WAITING_FOR_PBX,
        "waiting for the PBX update",
    )
    assert status.rotation is not None and status.rotation.new_secret is not None and status.app is not None
    store = open_local_store(h.settings)
    secret = await store.get(status.integration_id, status.rotation.new_secret.key_id)
    async with PortalHuman(h.sims.yeastar.url, h.sims.ca.ca_file) as human:
        await human.save_app_registration(status.app.client_id, status.app.tenant_id, secret)
        await human.sign_in_and_accept(ADMIN_UPN)
    await handle.execute_update(IntegrationWorkflow.confirm_pbx_updated, ConsentConfirmation(confirmed_by=ADMIN_UPN))
    return status


def key_ids(h: Harness, status: IntegrationStatus) -> list[str]:
    assert status.app is not None
    app = h.sims.entra.state.application(status.app.application_object_id)
    assert app is not None
    return sorted(p.key_id for p in app.password_credentials)


async def test_rotation_replaces_the_secret_and_removes_only_the_old_key(ts: Harness) -> None:
    async with ts.worker():
        handle = await ts.start(ts.onboard_input("rot", redirect_uris=await portal_redirect_uris(ts)))
        connected = await connect_pbx_as_human(ts, handle)
        assert connected.secret is not None
        old_key = connected.secret.key_id
        store = open_local_store(ts.settings)
        values = [(await store.get("rot", old_key)).get_secret_value()]

        rotation = await ts.rotate("rot")
        waiting = await paste_new_secret_as_human(ts, handle)
        assert waiting.phase == Phase.ROTATING
        assert waiting.pending_human_action is not None
        assert "pbx-updated rot" in waiting.pending_human_action.commands[-1]
        assert waiting.rotation is not None and waiting.rotation.new_secret is not None
        new_key = waiting.rotation.new_secret.key_id
        values.append((await store.get("rot", new_key)).get_secret_value())
        assert key_ids(ts, waiting) == sorted([old_key, new_key]), "new secret first, old one still there"

        status = await ts.skip_until(handle, lambda s: s.rotation is None and s.last_rotation is not None, "settled")
        result = await bounded(rotation.result(), "the rotation")
        await record_history(handle, "rotation-integration")
        await record_history(rotation, "rotation-completed")
        histories = [History(events=(await h.fetch_history()).events) for h in (handle, rotation)]

    # Neither secret's value ever entered either workflow's history, raw or decoded.
    codec = EncryptionCodec(ts.settings.keys)
    for history in histories:
        decoded = await decoded_payload_bytes(history, codec)
        assert any(new_key.encode() in d for d in decoded), "the scan reads the payloads"
        for value in values:
            assert not leaks(value, [history.SerializeToString(), *decoded])

    assert result.stage == RotationStage.CUTOVER_PROVEN, result.message
    assert result.cutover_evidence is not None and "new key" in result.cutover_evidence
    assert status.secret is not None and status.secret.key_id == new_key
    assert status.rotations_completed == 1 and status.last_rotation is not None
    assert status.last_rotation.stage == RotationStage.COMPLETED
    assert key_ids(ts, status) == [new_key], "only the old key was removed"
    assert await store.key_ids("rot") == [new_key]
    portal_view = ts.sims.yeastar.state.portal
    assert portal_view.status == "Connected"


async def test_a_second_rotation_is_refused_while_one_runs(ts: Harness) -> None:
    async with ts.worker():
        handle = await ts.start(ts.onboard_input("one-at-a-time", redirect_uris=await portal_redirect_uris(ts)))
        await connect_pbx_as_human(ts, handle)
        first = await ts.rotate("one-at-a-time")
        await wait_until(
            handle,
            lambda s: s.rotation is not None and s.rotation.stage == RotationStage.WAITING_FOR_PBX,
            "rotating",
        )
        manual = RotationRequest(integration_id="one-at-a-time", request_id="manual-1", reason="manual")
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await handle.execute_update(IntegrationWorkflow.rotate_now, manual)
        assert f"already running ({first.id}, waiting_for_pbx)" in str(refused.value.cause)
        assert "asked" in await ts.request_rotation("one-at-a-time")  # the schedule's tick: noted, not started
        status = await wait_until(handle, lambda s: any("skipped" in w for w in s.warnings), "the skip noted")
        assert status.rotation is not None and status.rotation.workflow_id == first.id


async def test_secret_removed_outside_the_service_blocks_with_the_fix(ts: Harness) -> None:
    options = LifecycleOptions(credential_check_interval=timedelta(days=1))
    async with ts.worker():
        handle = await ts.start(
            ts.onboard_input("removed", redirect_uris=await portal_redirect_uris(ts), options=options)
        )
        connected = await connect_pbx_as_human(ts, handle)
        assert connected.secret is not None and connected.app is not None
        # Someone deletes the secret in the Entra admin center.
        app = ts.sims.entra.state.application(connected.app.application_object_id)
        assert app is not None
        app.password_credentials.clear()
        ts.sims.entra.state.touch()
        await ts.env.sleep(timedelta(days=1, hours=1))
        blocked = await wait_until(handle, lambda s: s.phase == Phase.BLOCKED, "blocked")
        assert blocked.blocked is not None and blocked.blocked.error_type == "SecretRemoved"
        assert connected.secret.key_id in blocked.blocked.message
        assert blocked.pending_human_action is not None and "retry removed" in blocked.pending_human_action.commands[0]

        await handle.signal(IntegrationWorkflow.retry)
        again = await wait_until(handle, lambda s: s.phase == Phase.WAITING_FOR_CONSENT, "a new secret to paste")
    assert again.secret is not None and again.secret.key_id != connected.secret.key_id
    assert key_ids(ts, again) == [again.secret.key_id]
