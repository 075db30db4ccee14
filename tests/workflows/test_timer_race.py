"""The command sequence behind the hangs of `bench/lifetime.py` on the time-skipping server, and why
our workflows never send it (workflows/alarms.py).

A workflow waits on a condition with a timeout (a timer); a signal makes the condition true while
the timer fires during that same workflow task, so the task's completion cancels a timer that has
already fired. The real server accepts that (it drops the buffered TimerFired); the time-skipping
test server answers "invalid history builder state for action" and never hands the workflow another
task (temporalio/sdk-java#2606, #3088). A slow signal handler (1.5 s, a 1 s timer) makes the race
certain instead of rare.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from workflows.alarms import Alarms

TIMER = timedelta(seconds=1)
SLOW_HANDLER_SECONDS = 1.5


@workflow.defn
class CancelsAFiredTimer:
    def __init__(self) -> None:
        self.poked = False

    @workflow.run
    async def run(self) -> str:
        outcome = "timed out"
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self.poked, timeout=TIMER)
            outcome = "poked"
        # Like our loops, it goes on to wait again: the completion carries CancelTimer + StartTimer.
        await workflow.sleep(TIMER)
        return outcome

    @workflow.signal
    def poke(self) -> None:
        _busy(SLOW_HANDLER_SECONDS)  # the timer fires meanwhile
        self.poked = True


@workflow.defn
class WaitsWithAlarms:
    """The same race, waited out the way our workflows wait."""

    def __init__(self) -> None:
        self.poked = False
        self.alarms = Alarms()

    @workflow.run
    async def run(self) -> str:
        woken = await self.alarms.wait_until(workflow.now() + TIMER, lambda: self.poked)
        await self.alarms.wait_until(workflow.now() + TIMER)
        return "poked" if woken else "timed out"

    @workflow.signal
    def poke(self) -> None:
        _busy(SLOW_HANDLER_SECONDS)
        self.poked = True


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def _race(
    env: WorkflowEnvironment, workflow_class: Any, limit: float
) -> tuple[str | None, list[EventType.ValueType]]:
    """Start, poke at once, wait up to `limit` seconds: (result or None if it hung, event types)."""
    task_queue = f"race-{uuid.uuid4()}"
    # debug_mode: the slow handler must not trip the deadlock detector; unsandboxed: it reads the clock.
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[workflow_class],
        workflow_runner=UnsandboxedWorkflowRunner(),
        debug_mode=True,
    ):
        handle = await env.client.start_workflow(workflow_class.run, id=task_queue, task_queue=task_queue)
        await asyncio.sleep(0.2)
        await handle.signal("poke")
        try:
            result: str | None = await asyncio.wait_for(handle.result(), limit)
        except TimeoutError:
            result = None
        events = [e.event_type for e in (await handle.fetch_history()).events]
        if result is None:
            await handle.terminate("the race test is over")
    return result, events


async def test_the_real_server_accepts_cancelling_a_timer_that_fired_during_the_task(
    dev_env: WorkflowEnvironment,
) -> None:
    result, events = await _race(dev_env, CancelsAFiredTimer, limit=30)
    assert result == "poked"
    assert EventType.EVENT_TYPE_TIMER_CANCELED in events


async def test_the_time_skipping_server_wedges_on_that_sequence(ts_env: WorkflowEnvironment) -> None:
    """If this starts failing, the test server is fixed and workflows/alarms.py could go back to
    wait_condition(timeout=…)."""
    result, events = await _race(ts_env, CancelsAFiredTimer, limit=5)
    assert result is None
    assert events[-3:] == [
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    ]


async def test_alarms_never_send_that_sequence(ts_env: WorkflowEnvironment) -> None:
    result, events = await _race(ts_env, WaitsWithAlarms, limit=30)
    assert result == "poked"
    assert EventType.EVENT_TYPE_TIMER_CANCELED not in events
