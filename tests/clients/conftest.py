"""Fixtures for the client tests: a fake clock for retry timing."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass
class FakeTime:
    """An injectable sleep + monotonic clock: sleeping records the delay and moves the clock."""

    now: float = 0.0
    delays: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()
