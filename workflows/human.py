"""Waiting for a human: reminders at a fixed cadence, bounded history, an optional deadline.

The wait's progress (since when, how many reminders) lives in a :class:`PendingHuman` that the
workflow carries across continue-as-new, so a wait of months stays a series of small runs and the
reminders keep their numbering and escalation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.integration import PendingHuman
    from workflows.alarms import Alarms

Remind = Callable[[PendingHuman], Awaitable[None]]


async def wait_for_human(
    pending: PendingHuman,
    done: Callable[[], bool],
    *,
    every: timedelta,
    remind: Remind,
    alarms: Alarms,
    checkpoint: Callable[[], Awaitable[None]],
    deadline: datetime | None = None,
) -> bool:
    """Wait until ``done()``; True then, False if ``deadline`` came first.

    After each ``every`` without an answer ``pending.reminders`` goes up and ``remind`` is called.
    ``checkpoint`` runs before every sleep: it is where the workflow continues-as-new once its history
    is long (it never returns then), with ``pending`` in the state it carries.
    """
    while not done():
        await checkpoint()
        next_reminder = pending.since + every * (pending.reminders + 1)
        wake_at = next_reminder if deadline is None else min(next_reminder, deadline)
        if await alarms.wait_until(wake_at, done):
            return True
        if deadline is not None and workflow.now() >= deadline:
            return False
        pending.reminders += 1
        await remind(pending)
    return True


def due_expiry_reminder(
    expires_at: datetime, offsets: list[timedelta], sent: list[str], key: Callable[[timedelta], str], now: datetime
) -> tuple[timedelta | None, int]:
    """The most urgent expiry reminder due now and not sent yet, and how many went out before it.

    The others due with it are marked sent in ``sent``: after downtime only the most urgent goes out.
    """
    before = sum(1 for offset in offsets if key(offset) in sent)
    unsent = [o for o in offsets if expires_at - o <= now and key(o) not in sent]
    sent += [key(o) for o in unsent]
    return (min(unsent) if unsent else None), before


def next_expiry_reminder_at(
    expires_at: datetime, offsets: list[timedelta], sent: list[str], key: Callable[[timedelta], str]
) -> datetime | None:
    pending = [expires_at - o for o in offsets if key(o) not in sent]
    return min(pending, default=None)
