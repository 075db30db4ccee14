"""Fleet onboarding: N integrations onboarded concurrently by one worker, and what that costs.

    .venv/bin/python -m bench.onboard_fleet [--count 200] [--latency-ms 20] [--concurrency 100]

One Temporal dev server (SQLite file) and one simulator process (fixed latency on every Entra call,
no faults) serve three variants in turn, each measured the same way:

  direct  the activities' own code step after step without Temporal (`bench/direct.py`),
          --concurrency integrations at a time (the worker's default activity slots are 100, too)
  floor   a skeleton workflow of the same shape whose activities only sleep (`bench/floor.py`)
  ours    IntegrationWorkflow on `worker.py`

For the two workflows the harness plays operator and human: all N started at once with redirect
URIs in the input, consent signalled as soon as the instruction card is up (visibility poll).
"Time to Connected" counts from the moment the fleet was requested.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client

from bench import floor as floor_module
from bench._common import (
    MB,
    PYTHON,
    ROOT,
    DevServer,
    Simulators,
    Window,
    add_common_arguments,
    dev_server,
    fmt,
    percentile,
    print_table,
    random_keys,
    run_directory,
    service_env,
    simulators,
    start_service,
    wait_for_worker,
    wait_until_quiet,
    write_results,
)
from bench._fleet import drive, floor, ours, timelines
from common.settings import load_settings
from common.temporal import connect

TARGET_RATIO = 0.8
TARGET_EVENTS = 150


@dataclass
class Variant:
    name: str
    count: int
    wall_seconds: float
    to_connected: list[float]
    worker_cpu_seconds: float
    worker_peak_rss: int
    server_cpu_seconds: float
    sims_cpu_seconds: float
    graph_calls: int | None = None
    history_events: list[int] = field(default_factory=list)
    # Per onboarding, from the histories: activities, timers, search-attribute upserts (the shape
    # the floor has to match).
    shape: dict[str, float] = field(default_factory=dict)
    consent_delays: list[float] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.count / self.wall_seconds

    def summary(self) -> dict[str, Any]:
        def spread(values: list[float] | list[int]) -> dict[str, float] | None:
            if not values:
                return None
            return {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values)}

        return {
            "integrations": self.count,
            "wall_seconds": self.wall_seconds,
            "integrations_per_second": self.per_second,
            "time_to_connected_seconds": spread(self.to_connected),
            "graph_calls_per_integration": self.graph_calls / self.count if self.graph_calls is not None else None,
            "history_events_per_integration": spread(self.history_events),
            "worker_peak_rss_bytes": self.worker_peak_rss,
            "worker_cpu_seconds": self.worker_cpu_seconds,
            "worker_cpu_ms_per_integration": 1000 * self.worker_cpu_seconds / self.count,
            "server_cpu_seconds": self.server_cpu_seconds,
            "simulators_cpu_seconds": self.sims_cpu_seconds,
            "consent_signal_delay_seconds": spread(self.consent_delays),
            "shape_per_integration": self.shape or None,
        }


def _ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


async def measure_direct(args: argparse.Namespace, server: DevServer, sims: Simulators, run_dir: Path) -> Variant:
    env = service_env(sims, server, run_dir, task_queue="unused", max_cached_workflows=0, keys=random_keys())
    out = run_dir / "direct.json"
    argv = [PYTHON, "-m", "bench.direct", "--count", str(args.count), "--concurrency", str(args.concurrency)]
    graph_before = await sims.graph_requests()
    window = Window({"server": server.service.pid, "sims": sims.service.pid}).open()
    process = await start_service("direct", [*argv, "--json-out", str(out)], env, run_dir)
    if await process.process.wait() != 0:
        process.check()
    window.close()
    result = json.loads(out.read_text())
    connected = [at - result["requested_at"] for at in result["connected_at"].values()]
    return Variant(
        name="direct",
        count=args.count,
        wall_seconds=max(connected),
        to_connected=connected,
        worker_cpu_seconds=result["cpu_seconds"],
        worker_peak_rss=result["peak_rss"],
        server_cpu_seconds=window.cpu_seconds["server"],
        sims_cpu_seconds=window.cpu_seconds["sims"],
        graph_calls=await sims.graph_requests() - graph_before,
    )


async def measure_workflows(
    name: str, args: argparse.Namespace, server: DevServer, sims: Simulators, run_dir: Path
) -> Variant:
    """One worker process for ``name`` ("ours" or "floor"), the fleet driven to Connected through it."""
    task_queue = f"bench-{name}"
    keys = random_keys()
    env = service_env(
        sims, server, run_dir, task_queue=task_queue, max_cached_workflows=args.max_cached_workflows, keys=keys
    )
    argv = [PYTHON, str(ROOT / "worker.py")] if name == "ours" else [PYTHON, "-m", "bench.floor"]
    worker = await start_service(f"worker-{name}", argv, env, run_dir)
    try:
        settings = load_settings(
            _env_file=None,
            temporal={"address": server.address, "task_queue": task_queue},
            encryption_keys=keys,
        )
        if name == "ours":
            client = await connect(settings)
            fleet = ours(client, tenant_id=sims.env["YEC_ENTRA__TENANT_ID"], task_queue=task_queue)
        else:
            client = await Client.connect(server.address)
            fleet = floor(client, task_queue=task_queue, latency_ms=args.latency_ms)
        await wait_for_worker(client, task_queue, worker)
        graph_before = await sims.graph_requests()
        window = Window({"worker": worker.pid, "server": server.service.pid, "sims": sims.service.pid}).open()
        run = await drive(fleet, _ids(name, args.count), window=args.count, progress=_progress(name))
        # Connected is followed by the first credential check: let the worker finish it inside the window.
        await wait_until_quiet(worker.pid)
        window.close()
        worker.check()
        graph_calls = await sims.graph_requests() - graph_before
        histories = await timelines(client, run.workflow_ids)
    finally:
        await worker.stop()
    connected = [t.connected - run.requested_at for t in histories if t.connected is not None]
    if len(connected) != args.count:
        raise RuntimeError(f"{name}: {args.count - len(connected)} histories show no Connected")
    return Variant(
        name=name,
        count=args.count,
        wall_seconds=max(connected),
        to_connected=connected,
        worker_cpu_seconds=window.cpu_seconds["worker"],
        worker_peak_rss=window.peak_rss["worker"],
        server_cpu_seconds=window.cpu_seconds["server"],
        sims_cpu_seconds=window.cpu_seconds["sims"],
        graph_calls=graph_calls if name == "ours" else None,
        history_events=[t.events for t in histories],
        shape={
            kind: sum(getattr(t, kind) for t in histories) / len(histories)
            for kind in ("activities", "timers", "upserts")
        },
        consent_delays=run.consent_delays,
    )


def _progress(name: str) -> Any:
    def note(text: str) -> None:
        print(f"  [{name}] {text}", file=sys.stderr, flush=True)

    return note


def report(args: argparse.Namespace, variants: list[Variant]) -> dict[str, Any]:
    by_name = {v.name: v for v in variants}
    rows = []
    for v in variants:
        rows.append(
            [
                v.name,
                fmt(v.wall_seconds, 2),
                fmt(v.per_second, 1),
                fmt(percentile(v.to_connected, 50), 2),
                fmt(percentile(v.to_connected, 95), 2),
                fmt(max(v.to_connected), 2),
                fmt(v.graph_calls / v.count) if v.graph_calls is not None else "-",
                fmt(sum(v.history_events) / len(v.history_events)) if v.history_events else "-",
                fmt(v.worker_peak_rss / MB, 0),
                fmt(v.worker_cpu_seconds, 1),
                fmt(1000 * v.worker_cpu_seconds / v.count, 1),
                fmt(v.server_cpu_seconds, 1),
                fmt(v.sims_cpu_seconds, 1),
            ]
        )
    print_table(
        f"Fleet onboarding: {args.count} integrations, {args.latency_ms:g} ms per Entra call, "
        f"worker cache {args.max_cached_workflows}",
        [
            "variant",
            "wall s",
            "integ/s",
            "p50 s",
            "p95 s",
            "max s",
            "Graph/integ",
            "events/integ",
            "peak RSS MB",
            "worker CPU s",
            "CPU ms/integ",
            "server CPU s",
            "sims CPU s",
        ],
        rows,
    )
    ratios: dict[str, float] = {}
    if "ours" in by_name and "floor" in by_name:
        ratios["ours_over_floor_throughput"] = by_name["ours"].per_second / by_name["floor"].per_second
    if "ours" in by_name and "direct" in by_name:
        ratios["ours_over_direct_throughput"] = by_name["ours"].per_second / by_name["direct"].per_second
    targets: dict[str, Any] = {}
    lines = []
    if "ours_over_floor_throughput" in ratios:
        ratio = ratios["ours_over_floor_throughput"]
        targets["ours_over_floor_at_least_0_8"] = ratio >= TARGET_RATIO
        lines.append(f"ours ÷ floor throughput  {ratio:.2f}   (target ≥ {TARGET_RATIO}: {_met(ratio >= TARGET_RATIO)})")
    if "ours_over_direct_throughput" in ratios:
        lines.append(f"ours ÷ direct throughput {ratios['ours_over_direct_throughput']:.2f}   (what durability costs)")
    for v in variants:
        if v.shape:
            lines.append(
                f"{v.name}: {v.shape['activities']:g} activities, {v.shape['timers']:g} timers, "
                f"{v.shape['upserts']:g} search-attribute upserts per onboarding"
            )
    if "ours" in by_name and "floor" in by_name and by_name["ours"].shape["activities"] != floor_module.ACTIVITIES:
        lines.append("note: ours runs a different number of activities than the floor: update bench/floor.py")
    if "ours" in by_name:
        mine = by_name["ours"]
        worst = max(mine.history_events)
        targets["history_events_at_most_150"] = worst <= TARGET_EVENTS
        lines.append(
            f"history events per onboarding, max {worst}   (target ≤ {TARGET_EVENTS}: {_met(worst <= TARGET_EVENTS)})"
        )
        if mine.graph_calls is not None and mine.graph_calls / mine.count != floor_module.graph_calls_per_integration():
            lines.append(
                f"note: the floor stands in for {floor_module.graph_calls_per_integration()} Graph calls per "
                f"integration, ours made {mine.graph_calls / mine.count:.1f}: update bench/floor.py"
            )
        delays = mine.consent_delays
        if delays:
            lines.append(
                f"consent signalled {percentile(delays, 50):.2f} s (p50) / {percentile(delays, 95):.2f} s (p95) "
                "after the card was up (visibility poll; included in time to Connected)"
            )
    print("\n" + "\n".join(lines))
    return {
        "parameters": {
            "count": args.count,
            "latency_ms": args.latency_ms,
            "direct_concurrency": args.concurrency,
            "max_cached_workflows": args.max_cached_workflows,
        },
        "variants": {v.name: v.summary() for v in variants},
        "raw": {v.name: asdict(v) for v in variants},
        "ratios": ratios,
        "targets_met": targets,
    }


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with run_directory(args.keep_dir) as run_dir:
        async with dev_server(run_dir, extra_flags=args.server_flag) as server, simulators(run_dir, args.latency_ms) as sims:
            variants = []
            for name in args.variants:
                print(f"running {name} ...", file=sys.stderr, flush=True)
                if name == "direct":
                    variants.append(await measure_direct(args, server, sims, run_dir))
                else:
                    variants.append(await measure_workflows(name, args, server, sims, run_dir))
    return report(args, variants)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.onboard_fleet", description=__doc__.splitlines()[0])
    add_common_arguments(parser, count=200, latency_ms=20.0, concurrency=100)
    parser.add_argument(
        "--variants",
        type=lambda text: text.split(","),
        default=["direct", "floor", "ours"],
        help="comma-separated subset of direct,floor,ours (default all, in that order)",
    )
    args = parser.parse_args()
    results = asyncio.run(run(args))
    path = write_results("onboard_fleet", results, args.json_out)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
