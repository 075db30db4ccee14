"""Tiny runs of the benchmarks: each completes and reports. The figures themselves are not asserted;
the benchmarks are run by hand (README, "Benchmarks")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.devserver


def run_benchmark(module: str, tmp_path: Path, *args: str) -> tuple[str, dict[str, Any]]:
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [sys.executable, "-m", module, *args, "--json-out", str(out), "--keep-dir", str(tmp_path / "run")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,  # a hung run fails here instead of hanging the suite
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results: dict[str, Any] = json.loads(out.read_text())
    return completed.stdout, results


def test_onboard_fleet_runs_all_three_variants_and_reports(tmp_path: Path) -> None:
    stdout, results = run_benchmark(
        "bench.onboard_fleet", tmp_path, "--count", "2", "--latency-ms", "0", "--repeat", "1"
    )
    assert "Fleet onboarding: 2 integrations" in stdout
    assert "ours ÷ floor throughput" in stdout
    assert set(results["median"]) == {"direct", "floor", "ours"}
    assert results["median"]["ours"]["integrations_per_second"] > 0


def test_idle_fleet_parks_restarts_and_reports(tmp_path: Path) -> None:
    stdout, results = run_benchmark("bench.idle_fleet", tmp_path, "--count", "3", "--idle-seconds", "1")
    assert "Idle fleet: 3 integrations" in stdout
    assert results["restarts"][0]["phases"] == {"Connected": 3}
    assert results["db_bytes_per_integration"] > 0
