"""The service's own credential: checked at preflight and daily, reminded about like any secret."""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from models.integration import Phase
from tests.conftest import record_history, wait_until
from tests.workflows.stubs import TENANT, FakeGraph, stub_world
from workflows.provisioning_credential import ProvisioningCredentialWorkflow, ProvisioningWatch, watcher_id_for

DAY = timedelta(days=1)


async def test_reminders_before_the_services_own_credential_expires_and_again_after_renewal(
    ts_env: WorkflowEnvironment,
) -> None:
    graph = FakeGraph()
    async with stub_world(ts_env, graph) as world:
        start = await ts_env.get_current_time()
        graph.provisioning_expiry = start + 20 * DAY
        handle = await ts_env.client.start_workflow(
            ProvisioningCredentialWorkflow.run,
            ProvisioningWatch(tenant_id=TENANT, client_id="prov-app"),
            id=watcher_id_for("prov-app"),
            task_queue=world.task_queue,
        )
        await ts_env.sleep(19 * DAY + timedelta(hours=23))
        first = [n for c, n in graph.delivered if c == "ops"]
        graph.provisioning_expiry = start + 400 * DAY  # renewed in place, the day before it expired
        await ts_env.sleep(2 * DAY)
        watching = await handle.query(ProvisioningCredentialWorkflow.status)
        await ts_env.sleep(start + 399 * DAY + timedelta(hours=23) - await ts_env.get_current_time())
        second = [n for c, n in graph.delivered if c == "ops"][len(first) :]
        await record_history(handle, "provisioning-credential")
        await handle.terminate("test over")
    assert [n.title for n in first] == [
        "The service's own Entra client secret expires in 20 days",
        "The service's own Entra client secret expires in 14 days",
        "The service's own Entra client secret expires in 7 days",
        "The service's own Entra client secret expires in 3 days",
        "The service's own Entra client secret expires in 1 day",
    ]
    assert [n.severity for n in first] == ["warning", "warning", "warning", "critical", "critical"]
    assert all("restart the worker" in n.next_action for n in first)
    assert watching.credential is not None and watching.credential.expires_at == start + 400 * DAY
    assert len(second) == 5 and len({n.notification_id for n in first + second}) == 10, "the new expiry, afresh"


async def test_preflight_warns_when_the_services_credential_expires_soon(ts_env: WorkflowEnvironment) -> None:
    graph = FakeGraph()
    async with stub_world(ts_env, graph) as world:
        graph.provisioning_expiry = await ts_env.get_current_time() + 5 * DAY
        handle, _ = await world.connected(world.onboard("own-credential"))
        status = await wait_until(handle, lambda s: s.phase == Phase.CONNECTED, "connected")
    assert any("service's own Entra client secret" in w and "renew it" in w for w in status.warnings), status.warnings
