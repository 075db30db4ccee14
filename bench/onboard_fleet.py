"""Fleet onboarding: N integrations onboarded concurrently by one worker, and what that costs.

    .venv/bin/python -m bench.onboard_fleet [--count 200] [--latency-ms 20] [--repeat 3]

Three variants, each on fresh processes (Temporal dev server with its SQLite file, simulators with a
fixed latency on every Entra call and no faults), measured the same way:

  direct  the activities' own code step after step without Temporal (`bench/direct.py`),
          --concurrency integrations at a time (the worker's default activity slots are 100, too)
  floor   a skeleton workflow of the same shape whose activities only sleep (`bench/floor.py`)
  ours    IntegrationWorkflow on `worker.py`

For the two workflows the harness plays operator and human: all N started at once with redirect
URIs in the input, consent signalled as soon as the instruction card is up. "Time to Connected"
counts from the moment the fleet was requested. Runs are noisy (±15 % on two cores), so each
variant runs --repeat times, in rotated order, and the comparison uses the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench import floor as floor_module
from bench._common import (
    MB,
    PYTHON,
    ROOT,
    Stack,
    Window,
    add_common_arguments,
    fmt,
    percentile,
    print_table,
    random_keys,
    run_directory,
    stack,
    start_service,
    wait_for_worker,
    wait_until_quiet,
    write_results,
)
from bench._fleet import drive, floor, ours, timelines
from common.settings import load_settings
from common.temporal import connect

VARIANTS = ("direct", "floor", "ours")
TARGET_RATIO = 0.8
TARGET_EVENTS = 150


@dataclass
class Measurement:
    variant: str
    repeat: int
    count: int
    wall_seconds: float
    to_connected: list[float]
    worker_cpu_seconds: float
    worker_peak_rss: int
    server_cpu_seconds: float | None
    sims_cpu_seconds: float | None
    # The dev server's write system calls and bytes to storage: its SQLite work, which is what
    # limits throughput on the dev server.
    server_write_calls: int | None = None
    server_written_bytes: int | None = None
    graph_calls: int | None = None
    history_events: list[int] = field(default_factory=list)
    history_bytes: list[int] = field(default_factory=list)
    # Per onboarding, from the histories: activities, timers, search-attribute upserts (the shape
    # the floor has to match).
    shape: dict[str, float] = field(default_factory=dict)
    consent_delays: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.count / self.wall_seconds

    def row(self, label: str) -> list[str]:
        return [
            label,
            fmt(self.wall_seconds, 2),
            fmt(self.per_second, 1),
            fmt(percentile(self.to_connected, 50), 2),
            fmt(percentile(self.to_connected, 95), 2),
            fmt(max(self.to_connected), 2),
            fmt(self.graph_calls / self.count) if self.graph_calls is not None else "-",
            fmt(statistics.mean(self.history_events)) if self.history_events else "-",
            fmt(statistics.mean(self.history_bytes) / 1024) if self.history_bytes else "-",
            fmt(self.worker_peak_rss / MB, 0),
            fmt(self.worker_cpu_seconds, 1),
            fmt(1000 * self.worker_cpu_seconds / self.count, 1),
            fmt(self.server_cpu_seconds, 1),
            fmt(self.server_write_calls / self.count) if self.server_write_calls is not None else "-",
            fmt(self.server_written_bytes / self.count / 1024) if self.server_written_bytes is not None else "-",
            fmt(self.sims_cpu_seconds, 1),
        ]

    def summary(self) -> dict[str, Any]:
        def spread(values: list[float] | list[int]) -> dict[str, float] | None:
            if not values:
                return None
            return {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values)}

        return {
            "repeat": self.repeat,
            "integrations": self.count,
            "wall_seconds": self.wall_seconds,
            "integrations_per_second": self.per_second,
            "time_to_connected_seconds": spread(self.to_connected),
            "graph_calls_per_integration": self.graph_calls / self.count if self.graph_calls is not None else None,
            "history_events_per_integration": spread(self.history_events),
            "history_bytes_per_integration": spread(self.history_bytes),
            "worker_peak_rss_bytes": self.worker_peak_rss,
            "worker_cpu_seconds": self.worker_cpu_seconds,
            "worker_cpu_ms_per_integration": 1000 * self.worker_cpu_seconds / self.count,
            "server_cpu_seconds": self.server_cpu_seconds,
            "server_write_calls_per_integration": (
                self.server_write_calls / self.count if self.server_write_calls is not None else None
            ),
            "server_written_bytes_per_integration": (
                self.server_written_bytes / self.count if self.server_written_bytes is not None else None
            ),
            "simulators_cpu_seconds": self.sims_cpu_seconds,
            "consent_signal_delay_seconds": spread(self.consent_delays),
            "shape_per_integration": self.shape or None,
        }


HEADERS = [
    "variant",
    "wall s",
    "integ/s",
    "p50 s",
    "p95 s",
    "max s",
    "Graph/integ",
    "events/integ",
    "hist KB/integ",
    "peak RSS MB",
    "worker CPU s",
    "CPU ms/integ",
    "server CPU s",
    "srv writes/integ",
    "srv KB/integ",
    "sims CPU s",
]


def _ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


async def measure_direct(args: argparse.Namespace, repeat: int, st: Stack) -> Measurement:
    assert st.sims is not None
    out = st.run_dir / "direct.json"
    argv = [PYTHON, "-m", "bench.direct", "--count", str(args.count), "--concurrency", str(args.concurrency)]
    graph_before = await st.sims.graph_requests()
    window = Window(st.pids()).open()
    process = await start_service("direct", [*argv, "--json-out", str(out)], st.env(keys=random_keys()), st.run_dir)
    if await process.process.wait() != 0:
        process.check()
    window.close()
    # The direct process measures its own CPU and memory over its work (not its imports).
    result = json.loads(out.read_text())
    connected = [at - result["requested_at"] for at in result["connected_at"].values()]
    return Measurement(
        variant="direct",
        repeat=repeat,
        count=args.count,
        wall_seconds=max(connected),
        to_connected=connected,
        worker_cpu_seconds=result["cpu_seconds"],
        worker_peak_rss=result["peak_rss"],
        server_cpu_seconds=None,
        sims_cpu_seconds=window.cpu_seconds["sims"],
        graph_calls=await st.sims.graph_requests() - graph_before,
    )


async def measure_workflows(name: str, args: argparse.Namespace, repeat: int, st: Stack) -> Measurement:
    """One worker process for ``name`` ("ours" or "floor"), the fleet driven to Connected through it."""
    assert st.server is not None
    task_queue = f"bench-{name}"
    keys = random_keys()
    env = st.env(task_queue=task_queue, max_cached_workflows=args.max_cached_workflows, keys=keys)
    argv = [PYTHON, str(ROOT / "worker.py")] if name == "ours" else [PYTHON, "-m", "bench.floor"]
    worker = await start_service(f"worker-{name}", argv, env, st.run_dir)
    try:
        if name == "ours":
            assert st.sims is not None
            settings = load_settings(
                _env_file=None, temporal={"address": st.server.address, "task_queue": task_queue}, encryption_keys=keys
            )
            client = await connect(settings)
            fleet = ours(client, tenant_id=st.sims.env["YEC_ENTRA__TENANT_ID"], task_queue=task_queue)
        else:
            client = await Client.connect(st.server.address)
            fleet = floor(client, task_queue=task_queue, latency_ms=args.latency_ms)
        await wait_for_worker(client, task_queue, worker)
        graph_before = await st.sims.graph_requests() if st.sims else None
        window = Window({"worker": worker.pid, **st.pids()}).open()
        run = await drive(fleet, _ids(name, args.count), window=args.count, progress=_progress(name))
        # Connected is followed by the rotation schedule and the first credential check: let the
        # worker finish those inside the window too.
        await wait_until_quiet(worker.pid)
        window.close()
        worker.check()
        graph_calls = await st.sims.graph_requests() - graph_before if st.sims and graph_before is not None else None
        histories = await timelines(client, run.workflow_ids)
    finally:
        await worker.stop()
    connected = [t.connected - run.requested_at for t in histories if t.connected is not None]
    if len(connected) != args.count:
        raise RuntimeError(f"{name}: {args.count - len(connected)} histories show no Connected")
    return Measurement(
        variant=name,
        repeat=repeat,
        count=args.count,
        wall_seconds=max(connected),
        to_connected=connected,
        worker_cpu_seconds=window.cpu_seconds["worker"],
        worker_peak_rss=window.peak_rss["worker"],
        server_cpu_seconds=window.cpu_seconds["server"],
        server_write_calls=window.write_calls["server"],
        server_written_bytes=window.written_bytes["server"],
        sims_cpu_seconds=window.cpu_seconds.get("sims"),
        graph_calls=graph_calls,
        history_events=[t.events for t in histories],
        history_bytes=[t.history_bytes for t in histories],
        shape={
            kind: statistics.mean(getattr(t, kind) for t in histories) for kind in ("activities", "timers", "upserts")
        },
        consent_delays=run.consent_delays,
    )


async def measure(name: str, args: argparse.Namespace, repeat: int, run_dir: Path) -> Measurement:
    print(f"running {name} ({repeat + 1}/{args.repeat}) ...", file=sys.stderr, flush=True)
    async with stack(
        run_dir / f"{name}-{repeat + 1}",
        temporal=name != "direct",
        latency_ms=None if name == "floor" else args.latency_ms,  # the floor only sleeps
        server_flags=args.server_flag,
    ) as st:
        if name == "direct":
            return await measure_direct(args, repeat, st)
        return await measure_workflows(name, args, repeat, st)


def _progress(name: str) -> Callable[[str], None]:
    def note(text: str) -> None:
        print(f"  [{name}] {text}", file=sys.stderr, flush=True)

    return note


def _median_run(runs: list[Measurement]) -> Measurement:
    """The run with the median throughput (a real run, so its figures belong together)."""
    return sorted(runs, key=lambda m: m.per_second)[(len(runs) - 1) // 2]


def report(args: argparse.Namespace, runs: dict[str, list[Measurement]]) -> dict[str, Any]:
    median = {name: _median_run(found) for name, found in runs.items()}
    title = (
        f"Fleet onboarding: {args.count} integrations, {args.latency_ms:g} ms per Entra call, "
        f"worker cache {args.max_cached_workflows}"
    )
    if args.repeat > 1:
        print_table(
            f"{title} — every run",
            HEADERS,
            [m.row(f"{m.variant} #{m.repeat + 1}") for found in runs.values() for m in found],
        )
        title += f" — median of {args.repeat} runs (by throughput)"
    print_table(title, HEADERS, [m.row(m.variant) for m in median.values()])

    lines: list[str] = []
    ratios: dict[str, Any] = {}
    targets: dict[str, bool] = {}
    if "ours" in runs and "floor" in runs:
        ratio = median["ours"].per_second / median["floor"].per_second
        paired = [o.per_second / f.per_second for o, f in zip(runs["ours"], runs["floor"], strict=True)]
        ratios["ours_over_floor_throughput"] = {"median_runs": ratio, "per_repeat": paired}
        targets["ours_over_floor_at_least_0_8"] = ratio >= TARGET_RATIO
        lines.append(
            f"ours ÷ floor throughput   {ratio:.2f}  (per repeat {', '.join(f'{r:.2f}' for r in paired)}; "
            f"target ≥ {TARGET_RATIO}: {_met(ratio >= TARGET_RATIO)})"
        )
    if "ours" in runs and "direct" in runs:
        ratio = median["ours"].per_second / median["direct"].per_second
        ratios["ours_over_direct_throughput"] = ratio
        lines.append(f"ours ÷ direct throughput  {ratio:.2f}  (what durability costs on this machine)")
    for name in ("floor", "ours"):
        if name in median:
            shape = median[name].shape
            lines.append(
                f"{name}: {shape['activities']:g} activities, {shape['timers']:g} timers, "
                f"{shape['upserts']:g} search-attribute upserts per onboarding"
            )
    if "ours" in median:
        mine = median["ours"]
        worst = max(max(m.history_events) for m in runs["ours"])
        targets["history_events_at_most_150"] = worst <= TARGET_EVENTS
        lines.append(
            f"history events per onboarding: max {worst}  (target ≤ {TARGET_EVENTS}: {_met(worst <= TARGET_EVENTS)})"
        )
        if mine.shape["activities"] != floor_module.ACTIVITIES:
            lines.append("note: ours runs a different number of activities than the floor: update bench/floor.py")
        measured = mine.graph_calls / mine.count if mine.graph_calls is not None else None
        if measured is not None and measured != floor_module.graph_calls_per_integration():
            lines.append(
                f"note: the floor stands in for {floor_module.graph_calls_per_integration()} Graph calls per "
                f"integration, ours made {measured:.1f}: update bench/floor.py"
            )
        if mine.consent_delays:
            lines.append(
                f"consent signalled {percentile(mine.consent_delays, 50):.2f} s (p50) / "
                f"{percentile(mine.consent_delays, 95):.2f} s (p95) after the card was up "
                "(visibility poll; part of time to Connected)"
            )
    print("\n" + "\n".join(lines))
    return {
        "parameters": {
            "count": args.count,
            "latency_ms": args.latency_ms,
            "direct_concurrency": args.concurrency,
            "max_cached_workflows": args.max_cached_workflows,
            "repeat": args.repeat,
            "server_flags": args.server_flag,
        },
        "median": {name: m.summary() for name, m in median.items()},
        "runs": {name: [m.summary() for m in found] for name, found in runs.items()},
        "raw": {name: [asdict(m) for m in found] for name, found in runs.items()},
        "ratios": ratios,
        "targets_met": targets,
    }


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[Measurement]] = {name: [] for name in args.variants}
    with run_directory(args.keep_dir) as run_dir:
        for repeat in range(args.repeat):
            # Rotate the order so no variant always runs first (a cooler machine) or last.
            shift = repeat % len(args.variants)
            for name in [*args.variants[shift:], *args.variants[:shift]]:
                runs[name].append(await measure(name, args, repeat, run_dir))
    for found in runs.values():
        found.sort(key=lambda m: m.repeat)
    return report(args, runs)


def _variants(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names or not set(names) <= set(VARIANTS):
        raise argparse.ArgumentTypeError(f"a comma-separated subset of {','.join(VARIANTS)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.onboard_fleet", description=__doc__.splitlines()[0])
    add_common_arguments(
        parser,
        count=200,
        latency_ms=20.0,
        concurrency=100,
        concurrency_help="integrations in flight in the direct variant",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant (default 3)")
    parser.add_argument(
        "--variants", type=_variants, default=list(VARIANTS), help="subset of direct,floor,ours (default all)"
    )
    args = parser.parse_args()
    results = asyncio.run(run(args))
    path = write_results("onboard_fleet", results, args.json_out)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
