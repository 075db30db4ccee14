"""Waiting in workflow code until a moment or a condition, without ever cancelling a timer.

A workflow here sleeps until absolute moments (the next reminder, check or expiry) and is woken early
by messages. ``workflow.wait_condition(timeout=…)`` would cancel its timer on every early wake-up;
instead a timer is shared by every wait for the same moment and left to fire when a condition wins:

- The time-skipping test server refuses a CancelTimer for a timer that fired while the workflow task
  was running and never redelivers that task ("invalid history builder state for action",
  temporalio/sdk-java#2606 and #3088): the workflow hangs. The real server accepts that sequence
  (tests/workflows/test_timer_race.py shows both), but our tests and benchmarks run years of life on
  the test server, so the sequence is kept away from it by not sending it.
- A loop woken by a message goes back to sleep until the same moment on the same timer instead of
  a cancel + a new timer per wake-up, so history grows less.

A timer left pending when the run ends is dropped by the server (no command is sent for it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from temporalio import workflow


class Alarms:
    def __init__(self) -> None:
        self._timers: dict[datetime, asyncio.Task[None]] = {}

    async def wait_until(self, moment: datetime, woken: Callable[[], bool] | None = None) -> bool:
        """Sleep until ``moment``, or until ``woken()`` is true; returns ``woken()`` at the end."""
        if woken is not None and woken():
            return True
        timer = self._timer(moment)
        if timer is not None:
            waits: list[asyncio.Task[None]] = [timer]
            if woken is not None:
                waits.append(asyncio.create_task(workflow.wait_condition(woken)))
            try:
                await workflow.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waits[1:]:
                    task.cancel()  # only the condition watcher: no command goes to the server
        return woken is not None and woken()

    def _timer(self, moment: datetime) -> asyncio.Task[None] | None:
        now = workflow.now()
        if moment <= now:
            return None
        self._timers = {at: task for at, task in self._timers.items() if not task.done()}
        if moment not in self._timers:
            self._timers[moment] = asyncio.create_task(workflow.sleep(moment - now))
        return self._timers[moment]
