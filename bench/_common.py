"""What every benchmark shares: the processes it runs (Temporal dev server, simulators, workers), the
/proc readings it takes of them, and how it reports (a table on stdout, JSON under bench/results/).

Each measured piece runs in its own process so its memory and CPU can be read from /proc the same
way for every variant (psutil is not a dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from common.dev_server import dev_server_command
from common.settings import TemporalSettings

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
PYTHON = sys.executable
SIMS_ENV_FILE = "simulators.env"  # written by bench._sims once both simulators listen
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024
DEFAULT_CACHE = TemporalSettings().max_cached_workflows  # the worker's default, YEC_TEMPORAL__MAX_CACHED_WORKFLOWS


# ----------------------------------------------------------------------------- /proc readings


@dataclass(frozen=True)
class ProcStats:
    rss: int  # bytes resident now
    peak_rss: int  # bytes, VmHWM: the kernel's high-water mark since start (or the last reset)
    cpu_seconds: float  # user + system
    write_calls: int  # write-type system calls (a SQLite commit is several)
    written_bytes: int  # bytes this process caused to be sent to storage


def proc_stats(pid: int) -> ProcStats:
    """One reading of a live process (raises FileNotFoundError once it has exited)."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = {k: v.split() for k, _, v in (line.partition(":") for line in status.splitlines())}
    # The command name in /proc/<pid>/stat may contain spaces: split after its closing parenthesis.
    stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime = int(stat[11]), int(stat[12])
    io = {k: int(v) for k, _, v in (line.partition(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())}
    return ProcStats(
        rss=int(fields["VmRSS"][0]) * 1024,
        peak_rss=int(fields["VmHWM"][0]) * 1024,
        cpu_seconds=(utime + stime) / _CLOCK_TICKS,
        write_calls=io["syscw"],
        written_bytes=io["write_bytes"],
    )


def reset_peak_rss(pid: int) -> None:
    """Restart VmHWM at the current RSS, so a peak covers one measured window only."""
    with contextlib.suppress(OSError):  # kernels without clear_refs: the peak then spans the lifetime
        Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Window:
    """CPU and peak memory of some processes between :meth:`open` and :meth:`close`."""

    pids: dict[str, int]
    started: float = 0.0
    wall_seconds: float = 0.0
    at_start: dict[str, ProcStats] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    peak_rss: dict[str, int] = field(default_factory=dict)
    write_calls: dict[str, int] = field(default_factory=dict)
    written_bytes: dict[str, int] = field(default_factory=dict)

    def open(self) -> Window:
        for name, pid in self.pids.items():
            reset_peak_rss(pid)
            self.at_start[name] = proc_stats(pid)
        self.started = time.monotonic()
        return self

    def close(self) -> Window:
        self.wall_seconds = time.monotonic() - self.started
        for name, pid in self.pids.items():
            stats, start = proc_stats(pid), self.at_start[name]
            self.cpu_seconds[name] = stats.cpu_seconds - start.cpu_seconds
            self.peak_rss[name] = stats.peak_rss
            self.write_calls[name] = stats.write_calls - start.write_calls
            self.written_bytes[name] = stats.written_bytes - start.written_bytes
        return self


async def sample(pids: dict[str, int], seconds: float, interval: float = 1.0) -> dict[str, list[ProcStats]]:
    """Readings of each process every ``interval`` seconds for ``seconds`` (first and last included)."""
    readings: dict[str, list[ProcStats]] = {name: [] for name in pids}
    deadline = time.monotonic() + seconds
    while True:
        for name, pid in pids.items():
            readings[name].append(proc_stats(pid))
        if time.monotonic() >= deadline:
            return readings
        await asyncio.sleep(min(interval, max(0.0, deadline - time.monotonic())))


async def wait_until_quiet(pid: int, *, cpu_share: float = 0.02, window: float = 2.0, limit: float = 120.0) -> float:
    """Wait until ``pid`` uses less than ``cpu_share`` of a core over ``window`` seconds; returns the
    seconds waited. How a benchmark knows the worker has finished the work its last answer started."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        before = proc_stats(pid).cpu_seconds
        await asyncio.sleep(window)
        if proc_stats(pid).cpu_seconds - before < cpu_share * window:
            break
    return time.monotonic() - started


# ------------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Service:
    """A child process with its output in ``log``."""

    name: str
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check(self) -> None:
        if self.process.returncode is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; log {self.log}:\n{tail}")

    async def stop(self, grace: float = 30.0) -> float:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the seconds it took to exit."""
        started = time.monotonic()
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return time.monotonic() - started


async def start_service(name: str, argv: Sequence[str], env: dict[str, str], run_dir: Path) -> Service:
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            # Not the repo: a developer's .env there must not leak into the measured processes.
            cwd=run_dir,
        )
    return Service(name, process, log)


def base_env() -> dict[str, str]:
    """This environment without YEC_* settings, with the repo importable from any working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("YEC_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # Several workers run at once: none serves /metrics (a fixed port each would collide).
    env["YEC_METRICS__PORT"] = "0"
    return env


@dataclass
class DevServer:
    service: Service
    address: str
    db_file: Path

    def db_bytes(self) -> int:
        """The SQLite database with its write-ahead log and shared-memory index."""
        return sum(p.stat().st_size for p in self.db_file.parent.glob(self.db_file.name + "*") if p.is_file())


@contextlib.asynccontextmanager
async def dev_server(
    run_dir: Path, *, extra_flags: Sequence[str] = (), limit: float = 60.0
) -> AsyncIterator[DevServer]:
    """`starter.py dev-server`'s command on free ports; ``extra_flags`` e.g. ``--sqlite-pragma …``."""
    port = free_port()
    data_dir = run_dir / "temporal"
    command = [*dev_server_command(data_dir, port=port, headless=True), *extra_flags]
    service = await start_service("temporal", command, base_env(), run_dir)
    server = DevServer(service, f"127.0.0.1:{port}", data_dir / "temporal.sqlite")
    try:
        deadline = time.monotonic() + limit
        while True:
            service.check()
            try:
                await Client.connect(server.address)
                break
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        yield server
    finally:
        await service.stop()


@dataclass
class Simulators:
    service: Service
    env: dict[str, str]  # the YEC_* settings pointing at them (hold the provisioning secret)

    @property
    def entra_url(self) -> str:
        return self.env["YEC_ENTRA__GRAPH_BASE_URL"]

    async def graph_requests(self) -> int:
        """Graph requests the Entra simulator has answered so far (its own counter)."""
        context = ssl.create_default_context(cafile=self.env["YEC_ENTRA__CA_BUNDLE"])
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.entra_url}/_sim/state", ssl=context) as response,
        ):
            response.raise_for_status()
            state: dict[str, Any] = await response.json()
        return int(state["counters"]["graphRequests"])


@contextlib.asynccontextmanager
async def simulators(run_dir: Path, latency_ms: float, *, limit: float = 60.0) -> AsyncIterator[Simulators]:
    data_dir = run_dir / "sim"
    argv = [PYTHON, "-m", "bench._sims", "--data-dir", str(data_dir), "--latency-ms", str(latency_ms)]
    service = await start_service("simulators", argv, base_env(), run_dir)
    env_file = data_dir / SIMS_ENV_FILE
    try:
        deadline = time.monotonic() + limit
        while not env_file.exists():
            service.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"simulators not ready after {limit:.0f}s (log {service.log})")
            await asyncio.sleep(0.1)
        yield Simulators(service, json.loads(env_file.read_text()))
    finally:
        await service.stop()


@dataclass
class Stack:
    """What one measurement runs against: a fresh dev server and/or fresh simulators."""

    run_dir: Path
    server: DevServer | None
    sims: Simulators | None

    def pids(self) -> dict[str, int]:
        services = {
            "server": self.server.service if self.server else None,
            "sims": self.sims.service if self.sims else None,
        }
        return {name: service.pid for name, service in services.items() if service is not None}

    def env(
        self, *, task_queue: str = "unused", max_cached_workflows: int = DEFAULT_CACHE, keys: str
    ) -> dict[str, str]:
        """The YEC_* settings a deployment's worker would get, pointed at this stack."""
        env = {
            **base_env(),
            **(self.sims.env if self.sims else {}),
            "YEC_ENCRYPTION_KEYS": keys,
            "YEC_SECRET_STORE__KEYS": random_keys(),
            "YEC_DATA_DIR": str(self.run_dir / "data"),
            "YEC_TEMPORAL__TASK_QUEUE": task_queue,
            "YEC_TEMPORAL__MAX_CACHED_WORKFLOWS": str(max_cached_workflows),
            "YEC_LOG_LEVEL": "WARNING",
            "YEC_LOG_FORMAT": "json",
        }
        if self.server is not None:
            env["YEC_TEMPORAL__ADDRESS"] = self.server.address
        return env


@contextlib.asynccontextmanager
async def stack(
    run_dir: Path, *, temporal: bool, latency_ms: float | None, server_flags: Sequence[str] = ()
) -> AsyncIterator[Stack]:
    """Fresh processes per measurement, so no variant inherits another's database or tenant.
    ``latency_ms`` None: no simulators."""
    async with contextlib.AsyncExitStack() as exits:
        server = await exits.enter_async_context(dev_server(run_dir, extra_flags=server_flags)) if temporal else None
        sims = await exits.enter_async_context(simulators(run_dir, latency_ms)) if latency_ms is not None else None
        yield Stack(run_dir, server, sims)


def random_keys() -> str:
    """A throw-away YEC_ENCRYPTION_KEYS (or YEC_SECRET_STORE__KEYS) value for one run."""
    return "bench:" + base64.b64encode(os.urandom(32)).decode()


async def wait_for_worker(client: Client, task_queue: str, service: Service, *, limit: float = 60.0) -> float:
    """Seconds until this worker process polls both the workflow and the activity task queue
    (pollers are told apart by the SDK's default identity, ``<pid>@<host>``)."""
    started = time.monotonic()
    identity = f"{service.pid}@"
    for kind in (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY):
        while True:
            service.check()
            described = await client.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=client.namespace, task_queue=TaskQueue(name=task_queue), task_queue_type=kind
                )
            )
            if any(p.identity.startswith(identity) for p in described.pollers):
                break
            if time.monotonic() - started > limit:
                raise TimeoutError(f"{service.name} not polling {task_queue} after {limit:.0f}s (log {service.log})")
            await asyncio.sleep(0.1)
    return time.monotonic() - started


@contextlib.contextmanager
def run_directory(keep: Path | None) -> Iterator[Path]:
    """Where one run keeps its database, simulator state and logs (removed afterwards unless given)."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    path = Path(tempfile.mkdtemp(prefix="yec-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------- reporting


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "python": sys.version.split()[0],
    }


def write_results(name: str, payload: dict[str, Any], json_out: Path | None) -> Path:
    stamp = datetime.now(UTC)
    path = json_out or RESULTS_DIR / f"{name}-{stamp:%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "measured_at": stamp.isoformat(), "machine": machine(), **payload}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def add_common_arguments(
    parser: argparse.ArgumentParser, *, count: int, latency_ms: float, concurrency: int, concurrency_help: str
) -> None:
    parser.add_argument("--count", type=int, default=count, help=f"integrations (default {count})")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=latency_ms,
        help=f"simulated latency per Entra call (default {latency_ms:g})",
    )
    parser.add_argument(
        "--concurrency", type=int, default=concurrency, help=f"{concurrency_help} (default {concurrency})"
    )
    parser.add_argument(
        "--max-cached-workflows",
        type=int,
        default=DEFAULT_CACHE,
        help=f"the worker's workflow cache bound (default {DEFAULT_CACHE}, as worker.py's)",
    )
    parser.add_argument("--json-out", type=Path, help="results file (default bench/results/<name>-<time>.json)")
    parser.add_argument("--keep-dir", type=Path, help="keep the database, simulator state and logs here")
    parser.add_argument(
        "--server-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra `temporal server start-dev` argument, repeatable (e.g. --server-flag=--sqlite-pragma "
        "--server-flag=synchronous=OFF)",
    )
