"""Idle fleet: N integrations parked in Connected, and what keeping them there costs one worker.

    .venv/bin/python -m bench.idle_fleet [--count 2000] [--idle-seconds 60] [--also-cache 100,1000]

Onboards N integrations through worker.py (the same harness as bench.onboard_fleet, at most
--concurrency in flight), so each ends Connected with its daily credential-check timer and its
rotation schedule pending. Then, measured:

  idle      the worker's (and the dev server's) RSS and CPU, read every second for --idle-seconds
  database  the dev server's SQLite bytes (with journal/WAL) per integration, over the empty server
  restart   SIGTERM to the worker and a new one: seconds until it polls, then until every
            integration has answered a status query, i.e. been replayed from its history into
            the new worker (what a burst of due timers would also cost), and the RSS afterwards;
            again for each --also-cache bound

The worker's workflow cache is bounded (YEC_TEMPORAL__MAX_CACHED_WORKFLOWS, --max-cached-workflows),
so its memory should not grow with N.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import time
from datetime import timedelta
from typing import Any

from temporalio.client import Client

from bench._common import (
    MB,
    PYTHON,
    ROOT,
    ProcStats,
    Service,
    Stack,
    add_common_arguments,
    fmt,
    percentile,
    print_table,
    proc_stats,
    random_keys,
    run_directory,
    sample,
    stack,
    start_service,
    wait_for_worker,
    wait_until_quiet,
    write_results,
)
from bench._fleet import RPC_CONCURRENCY, drive, ours
from common.settings import load_settings
from common.temporal import connect
from models.integration import IntegrationStatus, Phase, workflow_id_for
from workflows.integration import IntegrationWorkflow

TARGET_RSS = 300 * MB
TARGET_AT = 10_000


def _series(readings: list[ProcStats], interval: float) -> dict[str, Any]:
    """RSS and CPU over one sampled window; CPU as a share of one core per interval."""
    cpu = [(b.cpu_seconds - a.cpu_seconds) / interval for a, b in itertools.pairwise(readings)]
    return {
        "rss_start_bytes": readings[0].rss,
        "rss_end_bytes": readings[-1].rss,
        "rss_max_bytes": max(r.rss for r in readings),
        "cpu_seconds": readings[-1].cpu_seconds - readings[0].cpu_seconds,
        "cpu_share_mean": statistics.mean(cpu) if cpu else 0.0,
        "cpu_share_p95": percentile(cpu, 95) if cpu else 0.0,
        "cpu_share_max": max(cpu, default=0.0),
        "written_bytes": readings[-1].written_bytes - readings[0].written_bytes,
    }


async def resume_all(client: Client, integration_ids: list[str]) -> dict[str, int]:
    """Ask every integration for its status; returns how many answered in each phase."""
    rpc = asyncio.Semaphore(RPC_CONCURRENCY)
    phases: dict[str, int] = {}

    async def one(integration_id: str) -> None:
        async with rpc:
            status: IntegrationStatus = await client.get_workflow_handle(workflow_id_for(integration_id)).query(
                IntegrationWorkflow.status
            )
        phases[str(status.phase)] = phases.get(str(status.phase), 0) + 1

    await asyncio.gather(*(one(i) for i in integration_ids))
    return phases


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ids = [f"idle-{i:05d}" for i in range(args.count)]
    task_queue = "bench-idle"
    keys = random_keys()
    with run_directory(args.keep_dir) as run_dir:
        async with stack(run_dir, temporal=True, latency_ms=args.latency_ms, server_flags=args.server_flag) as st:
            assert st.server is not None and st.sims is not None
            env = st.env(task_queue=task_queue, max_cached_workflows=args.max_cached_workflows, keys=keys)
            settings = load_settings(
                _env_file=None, temporal={"address": st.server.address, "task_queue": task_queue}, encryption_keys=keys
            )
            client = await connect(settings)
            db_empty = st.server.db_bytes()

            worker = await start_service("worker", [PYTHON, str(ROOT / "worker.py")], env, st.run_dir)
            try:
                await wait_for_worker(client, task_queue, worker)
                print(f"onboarding {args.count} integrations ...", file=sys.stderr, flush=True)
                fleet = ours(client, tenant_id=st.sims.env["YEC_ENTRA__TENANT_ID"], task_queue=task_queue)
                started = time.monotonic()
                await drive(
                    fleet,
                    ids,
                    window=args.concurrency,
                    # Consent latency does not matter here; a slower poll costs the server less.
                    poll_interval=1.0,
                    limit=timedelta(hours=2),
                    progress=lambda text: print(f"  {text}", file=sys.stderr, flush=True),
                )
                setup_seconds = time.monotonic() - started
                # Parked: the last credential checks and schedules done, nothing left to do.
                await wait_until_quiet(worker.pid)
                await wait_until_quiet(st.server.service.pid, cpu_share=0.25)
                db_bytes = st.server.db_bytes()
                print(f"idle for {args.idle_seconds:g} s ...", file=sys.stderr, flush=True)
                idle = await sample({"worker": worker.pid, **st.pids()}, args.idle_seconds)
                worker.check()
            finally:
                stop_seconds = await worker.stop()
            restarts = []
            for cache in [args.max_cached_workflows, *args.also_cache]:
                restart_env = {**env, "YEC_TEMPORAL__MAX_CACHED_WORKFLOWS": str(cache)}
                restart = await restart_and_resume(st, env=restart_env, client=client, task_queue=task_queue, ids=ids)
                restarts.append({"max_cached_workflows": cache, **restart})
    return report(
        args,
        setup_seconds=setup_seconds,
        db_per_integration=(db_bytes - db_empty) / args.count,
        db_bytes=db_bytes,
        idle=idle,
        stop_seconds=stop_seconds,
        restarts=restarts,
    )


async def restart_and_resume(
    st: Stack, *, env: dict[str, str], client: Client, task_queue: str, ids: list[str]
) -> dict[str, Any]:
    cache = env["YEC_TEMPORAL__MAX_CACHED_WORKFLOWS"]
    print(f"restarting the worker (cache {cache}), resuming every integration ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    worker: Service = await start_service(f"worker-cache{cache}", [PYTHON, str(ROOT / "worker.py")], env, st.run_dir)
    try:
        await wait_for_worker(client, task_queue, worker)
        ready = time.monotonic() - started
        cpu_before = proc_stats(worker.pid).cpu_seconds
        phases = await resume_all(client, ids)
        resumed = time.monotonic() - started
        after = proc_stats(worker.pid)  # every answer came from a replayed workflow: the work is done
        worker.check()
    finally:
        await worker.stop()
    return {
        "ready_seconds": ready,
        "all_resumed_seconds": resumed,
        "replay_ms_per_integration": 1000 * (resumed - ready) / len(ids),
        "resume_cpu_seconds": after.cpu_seconds - cpu_before,
        "rss_after_resume_bytes": after.rss,
        "peak_rss_bytes": after.peak_rss,
        "phases": phases,
    }


def report(
    args: argparse.Namespace,
    *,
    setup_seconds: float,
    db_per_integration: float,
    db_bytes: int,
    idle: dict[str, list[ProcStats]],
    stop_seconds: float,
    restarts: list[dict[str, Any]],
) -> dict[str, Any]:
    interval = args.idle_seconds / max(1, len(idle["worker"]) - 1)
    series = {name: _series(readings, interval) for name, readings in idle.items()}
    worker, server = series["worker"], series["server"]
    print_table(
        f"Idle fleet: {args.count} integrations Connected, worker cache {args.max_cached_workflows}, "
        f"{args.idle_seconds:g} s idle window",
        ["process", "RSS start MB", "RSS end MB", "RSS max MB", "CPU s", "CPU % mean", "CPU % p95", "CPU % max"],
        [
            [
                name,
                fmt(s["rss_start_bytes"] / MB, 0),
                fmt(s["rss_end_bytes"] / MB, 0),
                fmt(s["rss_max_bytes"] / MB, 0),
                fmt(s["cpu_seconds"], 2),
                fmt(100 * s["cpu_share_mean"], 1),
                fmt(100 * s["cpu_share_p95"], 1),
                fmt(100 * s["cpu_share_max"], 1),
            ]
            for name, s in series.items()
        ],
    )
    print_table(
        "Fleet at rest",
        ["figure", "value"],
        [
            ["onboarding (setup) s", fmt(setup_seconds, 0)],
            ["onboarded per s (setup)", fmt(args.count / setup_seconds, 1)],
            ["dev-server DB MB", fmt(db_bytes / MB, 1)],
            ["dev-server DB KB per integration", fmt(db_per_integration / 1024, 1)],
            ["worker stop (SIGTERM) s", fmt(stop_seconds, 1)],
        ],
    )
    print_table(
        "Worker restart: a new worker, then a status query to every integration (each replays its history)",
        ["cache bound", "polling after s", "all resumed after s", "replay ms/integ", "CPU s", "RSS after MB", "phases"],
        [
            [
                fmt(r["max_cached_workflows"]),
                fmt(r["ready_seconds"], 1),
                fmt(r["all_resumed_seconds"], 1),
                fmt(r["replay_ms_per_integration"], 1),
                fmt(r["resume_cpu_seconds"], 1),
                fmt(r["rss_after_resume_bytes"] / MB, 0),
                ", ".join(f"{k} {v}" for k, v in sorted(r["phases"].items())),
            ]
            for r in restarts
        ],
    )
    restart = restarts[0]  # the configured cache bound
    worst_rss = max(worker["rss_max_bytes"], restart["rss_after_resume_bytes"])
    connected = restart["phases"].get(str(Phase.CONNECTED), 0)
    lines = [
        f"idle worker RSS {worst_rss / MB:.0f} MB (largest of idle window and after resuming all; target < "
        f"{TARGET_RSS / MB:.0f} MB at {TARGET_AT:,}: {_verdict(worst_rss < TARGET_RSS, args.count)})",
        f"idle worker CPU {worker['cpu_seconds']:.2f} s in {args.idle_seconds:g} s "
        f"({100 * worker['cpu_share_mean']:.2f} % of a core, max {100 * worker['cpu_share_max']:.1f} % in one second); "
        f"dev server {100 * server['cpu_share_mean']:.1f} %",
        f"{connected}/{args.count} Connected after the restart",
    ]
    print("\n" + "\n".join(lines))
    return {
        "parameters": {
            "count": args.count,
            "latency_ms": args.latency_ms,
            "setup_concurrency": args.concurrency,
            "max_cached_workflows": args.max_cached_workflows,
            "idle_seconds": args.idle_seconds,
            "server_flags": args.server_flag,
        },
        "setup_seconds": setup_seconds,
        "db_bytes": db_bytes,
        "db_bytes_per_integration": db_per_integration,
        "idle": series,
        "worker_stop_seconds": stop_seconds,
        "restarts": restarts,
        "targets": {"idle_rss_below_300mb": worst_rss < TARGET_RSS, "applies": args.count >= TARGET_AT},
    }


def _verdict(ok: bool, count: int) -> str:
    verdict = "met" if ok else "MISSED"
    return verdict if count >= TARGET_AT else f"{verdict} at {count:,}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_fleet", description=__doc__.splitlines()[0])
    add_common_arguments(
        parser, count=2000, latency_ms=0.0, concurrency=500, concurrency_help="integrations in flight while onboarding"
    )
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle window (default 60)")
    parser.add_argument(
        "--also-cache",
        type=lambda text: [int(n) for n in text.split(",") if n],
        default=[],
        metavar="N[,N…]",
        help="restart and resume again with these cache bounds, to see memory against the bound",
    )
    args = parser.parse_args()
    results = asyncio.run(run(args))
    path = write_results("idle_fleet", results, args.json_out)
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
