"""RotationRequestWorkflow: what an integration's rotation schedule starts.

It asks the integration to rotate (a signal carrying this workflow's ID, so the same schedule action
delivered twice is one request) and ends. The integration decides and runs the rotation as its own
child workflow. A schedule whose integration is gone deletes itself here.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models import activity_names as activity
    from models.activities import ActivityResult, IntegrationRef
    from models.integration import ROTATION_REQUEST_WORKFLOW, RotationRequest, workflow_id_for
    from workflows.integration import IntegrationWorkflow
    from workflows.shared import failure_reason, run_activity, signal_quietly


@workflow.defn(name=ROTATION_REQUEST_WORKFLOW)
class RotationRequestWorkflow:
    @workflow.run
    async def run(self, target: IntegrationRef) -> str:
        request = RotationRequest(
            integration_id=target.integration_id, request_id=workflow.info().workflow_id, reason="scheduled"
        )
        integration = workflow.get_external_workflow_handle(workflow_id_for(target.integration_id))
        if await signal_quietly(integration.signal(IntegrationWorkflow.request_rotation, request), "request_rotation"):
            return f"asked {integration.id} to rotate"
        try:
            await run_activity(activity.DELETE_ROTATION_SCHEDULE, target, ActivityResult)
        except ActivityError as err:
            return f"{integration.id} is not running; deleting its rotation schedule failed: {failure_reason(err)}"
        return f"{integration.id} is not running: its rotation schedule was deleted"
