"""The lifetime benchmark completes and reports (a short life; figures are not asserted)."""

from __future__ import annotations

from pathlib import Path

from bench.lifetime import live


async def test_lifetime_benchmark_runs_a_short_life(tmp_path: Path) -> None:
    result = await live(0.5, tmp_path)
    assert result["rotations_completed"] == 2
    assert result["integration_runs"] >= 1 and result["total_events"] > 0
