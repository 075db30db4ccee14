"""Stand-ins for the rotation child workflow, registered under its name, for the ways a rotation can
end that the real one never chooses: failing, or hanging until it is terminated, cancelled or timed
out. Kept apart from the tests: the workflow sandbox imports this module for every run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

DAY = timedelta(days=1)

with workflow.unsafe.imports_passed_through():
    from models.integration import RotationPlan, RotationStage, RotationStatus, SecretRef
    from workflows.integration import IntegrationWorkflow
    from workflows.provisioning_credential import ProvisioningCredentialWorkflow
    from workflows.rotation_request import RotationRequestWorkflow
    from workflows.shared import signal_quietly


@workflow.defn(name="SecretRotationWorkflow")
class RotationThatFails:
    @workflow.run
    async def run(self, plan: RotationPlan, carry: Any = None) -> RotationStatus:
        raise ApplicationError("a bug in the rotation", non_retryable=True)


@workflow.defn(name="SecretRotationWorkflow")
class RotationThatHangs:
    """Shows its card (so the integration knows a new secret was handed over), then never moves."""

    @workflow.run
    async def run(self, plan: RotationPlan, carry: Any = None) -> RotationStatus:
        info = workflow.info()
        assert info.parent is not None
        status = RotationStatus(
            workflow_id=info.workflow_id,
            reason=plan.reason,
            stage=RotationStage.WAITING_FOR_PBX,
            started_at=workflow.now(),
            old_secret=plan.current,
            new_secret=SecretRef(
                key_id="hung-key", hint="hun", display_name="x", expires_at=workflow.now() + timedelta(days=1)
            ),
            handed_over_at=workflow.now(),
        )
        await workflow.get_external_workflow_handle(info.parent.workflow_id).signal("rotation_progress", status)
        await workflow.wait_condition(lambda: False)
        raise AssertionError("unreachable")


def stub_workflows(rotation: type) -> list[type]:
    """The real workflows, with `rotation` in place of SecretRotationWorkflow."""
    return [IntegrationWorkflow, RotationRequestWorkflow, ProvisioningCredentialWorkflow, rotation]


@workflow.defn
class SignalsAClosedWorkflow:
    """Sends a signal the way our workflows do to a workflow that is not running."""

    @workflow.run
    async def run(self, target: str) -> bool:
        return await signal_quietly(workflow.get_external_workflow_handle(target).signal("anything", "x"), "anything")
