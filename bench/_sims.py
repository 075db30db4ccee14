"""The simulators as the benchmarks run them: in their own process (so their CPU is counted apart from
the worker's), a fixed latency on every Entra call, no faults, and no state file.

`python -m simulators all` persists the tenant by rewriting one JSON snapshot of it after changes;
with thousands of applications that rewrite would compete for the same cores as the code measured.

    python -m bench._sims --data-dir DIR --latency-ms 20

writes ``DIR/simulators.env`` (JSON, 0600: it holds the provisioning secret) once both listen.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from bench._common import SIMS_ENV_FILE
from common.files import write_private
from common.logging import configure_logging
from simulators.entra.config import EntraSimConfig
from simulators.harness import running_simulators


async def serve(data_dir: Path, latency_ms: float) -> None:
    async with running_simulators(data_dir, entra=EntraSimConfig(latency_ms=latency_ms)) as sims:
        # Atomic: the benchmark waits for this name and must never read half a file.
        write_private(data_dir / SIMS_ENV_FILE, json.dumps(sims.env()).encode())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench._sims", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    configure_logging("WARNING", "json")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.data_dir, args.latency_ms))


if __name__ == "__main__":
    main()
