"""control.py against the dev server: what the CLI and the console get when a workflow can't answer."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.worker import Worker

from control import Control, Unavailable
from models.integration import workflow_id_for
from tests.conftest import Harness

pytestmark = pytest.mark.devserver


@workflow.defn(name="IntegrationWorkflow", sandboxed=False)
class BrokenIntegrationWorkflow:
    """What a bad deploy leaves: every workflow task fails (a plain exception is a task failure, retried)."""

    @workflow.run
    async def run(self, *_: object) -> None:
        raise RuntimeError("a bug in this deploy")

    @workflow.query
    def status(self) -> None:
        return None


async def until_polled(control: Control) -> None:
    """A worker's first poll takes a moment to show; operators meet a worker that runs already."""
    async with asyncio.timeout(10):
        while True:
            try:
                return await control.require_worker()
            except Unavailable:
                await asyncio.sleep(0.2)


async def task_failed(handle: WorkflowHandle[Any, Any]) -> None:
    """Returns once the workflow's first task has failed (queries before that wait for its outcome)."""
    async for event in handle.fetch_history_events(wait_new_event=True):
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
            return


async def test_a_workflow_whose_task_keeps_failing_is_reported_not_raised(dev: Harness) -> None:
    task_queue = f"broken-{uuid.uuid4()}"
    settings = dev.settings.model_copy(
        update={"temporal": dev.settings.temporal.model_copy(update={"task_queue": task_queue})}
    )
    control = Control(dev.client, settings, answer_within=timedelta(seconds=3))
    async with Worker(dev.client, task_queue=task_queue, workflows=[BrokenIntegrationWorkflow]):
        handle = await dev.client.start_workflow(
            "IntegrationWorkflow", id=workflow_id_for("broken"), task_queue=task_queue
        )
        await until_polled(control)
        async with asyncio.timeout(30):
            await task_failed(handle)
            with pytest.raises(Unavailable) as refused:
                await control.status("broken")
        await handle.terminate()
    assert re.fullmatch(
        r"integration 'broken' can't answer: its workflow task keeps failing \(attempt \d+\); "
        r"the worker's log says why",
        str(refused.value),
    )


async def test_a_workflow_no_worker_polls_for_is_reported_not_raised(dev: Harness) -> None:
    """One of another deployment (its task queue unpolled) in the same namespace, as the console lists it."""
    control = Control(dev.client, dev.settings, answer_within=timedelta(seconds=3))
    elsewhere = f"nobody-{uuid.uuid4()}"
    handle = await dev.client.start_workflow("IntegrationWorkflow", id=workflow_id_for("orphan"), task_queue=elsewhere)
    async with dev.worker():
        await until_polled(control)
        with pytest.raises(Unavailable) as refused:
            await control.status("orphan")
    await handle.terminate()
    assert str(refused.value) == (
        f"integration 'orphan' can't answer: it runs on the task queue {elsewhere!r}, which this deployment's "
        "workers don't poll"
    )
