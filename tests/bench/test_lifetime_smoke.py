"""The lifetime benchmark completes and reports (short lives; timings are not asserted, the
benchmark's own targets are: no silent expiry, no stuck integration)."""

from __future__ import annotations

from pathlib import Path

from bench.lifetime import live


async def test_lifetime_benchmark_runs_a_short_life(tmp_path: Path) -> None:
    result = await live(0.5, tmp_path)
    assert result["rotations_completed"] == 2
    assert result["integration_runs"] >= 1 and result["total_events"] > 0
    assert (result["silent_expiries"], result["stuck_integrations"]) == (0, 0)


async def test_lifetime_benchmark_survives_a_killed_worker_and_graph_down(tmp_path: Path) -> None:
    result = await live(0.5, tmp_path, faults=("worker-killed", "graph-down"))
    assert result["workers_started"] == 3, "the activity worker was killed and replaced"
    assert result["rotations_started"] == 3, "graph-down: the abandoned rotation was retried the next day"
    assert (result["silent_expiries"], result["stuck_integrations"]) == (0, 0), result["silent_expiry_details"]
