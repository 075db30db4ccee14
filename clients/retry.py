"""The one place that retries outside-API calls.

- ``Throttled``: wait what the server asked for (``retry_after``), else back off.
- ``Transient``: exponential backoff with full jitter, at most ``max_attempts`` calls.
- ``NotYetReplicated``: keep trying (backoff) until ``replication_timeout`` seconds have passed since
  the first such error; directory replication takes seconds to minutes (DOMAIN.md §2).

A non-idempotent request (``addPassword``) is only re-sent when the server proved it did not execute
it: a throttle, a replication error, or a 503 carrying a Graph error body. After a dropped connection
or a timeout it may have run, so the caller must reconcile (list what exists) instead.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from clients.errors import ApiError, NotYetReplicated, Throttled, Transient

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RetryConfig:
    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 30.0
    replication_timeout: float = 120.0

    def backoff(self, failures: int) -> float:
        """Full jitter: uniform in [0, min(max_delay, base_delay * 2**(failures-1))]."""
        return random.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (failures - 1)))


DEFAULT_RETRY = RetryConfig()


def _rejected_unexecuted(error: ApiError) -> bool:
    """True if the server answered in a way that proves it did not run the request."""
    if isinstance(error, Throttled | NotYetReplicated):
        return True
    # A 503 with a Graph error body came from the service refusing the request; a bare 503 or no
    # response at all (status None) may come after the request already ran.
    return isinstance(error, Transient) and error.status == 503 and bool(error.code)


async def call_with_retries(
    fn: Callable[[], Awaitable[T]],
    config: RetryConfig,
    *,
    idempotent: bool,
    describe: str,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
) -> T:
    """Call ``fn`` until it succeeds or fails in a way that retrying cannot fix (then re-raise).

    ``sleep`` and ``clock`` are injectable so tests can check delays without waiting.
    """
    failures = 0  # throttles + transient failures, bounded by max_attempts
    replication_deadline: float | None = None
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except ApiError as error:
            if not error.retryable or not (idempotent or _rejected_unexecuted(error)):
                raise
            if isinstance(error, NotYetReplicated):
                now = clock()
                if replication_deadline is None:
                    replication_deadline = now + config.replication_timeout
                remaining = replication_deadline - now
                if remaining <= 0:
                    raise
                replication_waits = attempt - failures
                delay = min(config.backoff(replication_waits), remaining)
            else:
                failures += 1
                if failures >= config.max_attempts:
                    raise
                retry_after = error.retry_after if isinstance(error, Throttled) else 0.0
                # Honour the server's Retry-After as given; only our own backoff is capped.
                delay = retry_after if retry_after > 0 else config.backoff(failures)
            log.warning(
                "api_call.retry",
                describe=describe,
                attempt=attempt,
                delay=round(delay, 3),
                error=type(error).__name__,
                status=error.status,
                code=error.code,
                request_id=error.request_id,
            )
            await sleep(delay)
