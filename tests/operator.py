"""The operator's side of the dev-server tests: starter.py and worker.py as real processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from simulators.harness import RunningSimulators
from tests.conftest import TEST_ENCRYPTION_KEYS, TEST_STORE_KEYS

ROOT = Path(__file__).resolve().parent.parent


def operator_env(dev_env: WorkflowEnvironment, sims: RunningSimulators, tmp_path: Path, **extra: str) -> dict[str, str]:
    """What an operator's shell would hold: settings pointing at the simulators and the dev server."""
    return {
        **os.environ,
        **sims.env(),
        "YEC_ENCRYPTION_KEYS": TEST_ENCRYPTION_KEYS,
        "YEC_SECRET_STORE__KEYS": TEST_STORE_KEYS,
        "YEC_DATA_DIR": str(tmp_path / "data"),
        # Tests run side by side: a worker serves metrics only where a test asks for a port.
        "YEC_METRICS__PORT": "0",
        "YEC_TEMPORAL__ADDRESS": dev_env.client.service_client.config.target_host,
        "YEC_TEMPORAL__TASK_QUEUE": f"e2e-{uuid.uuid4()}",
        "YEC_LOG_FORMAT": "json",
        **extra,
    }


@dataclass
class Operator:
    env: dict[str, str]
    outputs: list[str]

    async def run(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
        """starter.py with these arguments, in a thread: the simulators this test serves stay responsive."""
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(ROOT / "starter.py"), *args],
            env=self.env,
            cwd=ROOT,
            text=True,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if args[0] != "secret":
            self.outputs += [result.stdout, result.stderr]
        assert result.returncode == expect, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    async def status(self, integration_id: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((await self.run("status", integration_id, "--json")).stdout)
        return data

    async def wait_for(self, integration_id: str, predicate: Any, what: str, limit: float = 60.0) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + limit
        while True:
            status = await self.status(integration_id)
            if predicate(status):
                return status
            assert asyncio.get_running_loop().time() < deadline, f"never {what}: {json.dumps(status, indent=1)}"
            await asyncio.sleep(0.3)


async def start_worker(env: dict[str, str], log: Path, client: Client) -> subprocess.Popen[bytes]:
    """worker.py as a process, returned once it polls its task queue (the CLI checks that it does)."""
    with log.open("ab") as out:
        worker = subprocess.Popen([sys.executable, str(ROOT / "worker.py")], env=env, cwd=ROOT, stdout=out, stderr=out)
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=env["YEC_TEMPORAL__TASK_QUEUE"]),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    identity = f"{worker.pid}@"
    for _ in range(600):
        assert worker.poll() is None, f"worker.py exited with {worker.returncode}: {log.read_text()[-2000:]}"
        pollers = (await client.workflow_service.describe_task_queue(request)).pollers
        if any(p.identity.startswith(identity) for p in pollers):
            return worker
        await asyncio.sleep(0.1)
    raise AssertionError(f"worker.py never polled its task queue (log {log})")


@contextlib.asynccontextmanager
async def worker_process(env: dict[str, str], log: Path, client: Client) -> AsyncIterator[subprocess.Popen[bytes]]:
    """worker.py for the length of the block (killed at the end: the tests' workflows stay behind)."""
    worker = await start_worker(env, log, client)
    try:
        yield worker
    finally:
        worker.kill()
        worker.wait()
