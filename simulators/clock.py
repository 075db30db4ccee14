"""Simulator clocks.

Simulators never call ``datetime.now()`` directly: they ask a :class:`Clock`, so tests can move time
forward (secret expiry, replication delays) without sleeping, or follow a Temporal time-skipping
environment's clock.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    async def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class OffsetClock:
    """Real time plus an adjustable offset (``advance`` only moves forward in practice)."""

    def __init__(self, offset_seconds: float = 0.0) -> None:
        self._offset = offset_seconds

    @property
    def offset_seconds(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    async def _base(self) -> datetime:
        return datetime.now(UTC)

    async def now(self) -> datetime:
        return (await self._base()) + timedelta(seconds=self._offset)


class CallableClock(OffsetClock):
    """Wraps an async time source, e.g. ``WorkflowEnvironment.get_current_time``.

    It keeps the offset of :class:`OffsetClock` so ``/_sim/clock/advance`` works with any source.
    """

    def __init__(self, source: Callable[[], Awaitable[datetime]], offset_seconds: float = 0.0) -> None:
        super().__init__(offset_seconds)
        self._source = source

    async def _base(self) -> datetime:
        value = await self._source()
        # A naive datetime from a source is taken as UTC rather than local time.
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
