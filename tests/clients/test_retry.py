"""call_with_retries: which failures are retried, after what delay, and when it gives up."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from structlog.testing import capture_logs

from clients.errors import (
    ApiError,
    Conflict,
    InvalidRequest,
    NotYetReplicated,
    PermissionDenied,
    Throttled,
    Transient,
)
from clients.retry import RetryConfig, call_with_retries
from tests.clients.conftest import FakeTime

CONFIG = RetryConfig(max_attempts=4, base_delay=1.0, max_delay=5.0, replication_timeout=10.0)


class Scripted:
    """An async callable that raises the given errors in turn, then returns "done"."""

    def __init__(self, errors: Sequence[ApiError]) -> None:
        self._errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self._errors:
            raise self._errors.pop(0)
        return "done"


async def run(fn: Scripted, time: FakeTime, *, idempotent: bool = True, config: RetryConfig = CONFIG) -> str:
    return await call_with_retries(
        fn, config, idempotent=idempotent, describe="test call", sleep=time.sleep, clock=time.clock
    )


async def test_success_needs_no_sleep(fake_time: FakeTime) -> None:
    fn = Scripted([])
    assert await run(fn, fake_time) == "done"
    assert (fn.calls, fake_time.delays) == (1, [])


async def test_throttled_waits_exactly_retry_after_even_above_max_delay(fake_time: FakeTime) -> None:
    fn = Scripted([Throttled("slow down", retry_after=2.5), Throttled("slow down", retry_after=7.0)])
    assert await run(fn, fake_time) == "done"
    assert fake_time.delays == [2.5, 7.0]


async def test_throttled_without_retry_after_backs_off(fake_time: FakeTime) -> None:
    fn = Scripted([Throttled("slow down", retry_after=0.0)])
    assert await run(fn, fake_time) == "done"
    assert 0.0 <= fake_time.delays[0] <= CONFIG.base_delay


async def test_transient_exponential_full_jitter_then_gives_up(fake_time: FakeTime) -> None:
    errors = [Transient(f"boom {i}", status=502) for i in range(10)]
    fn = Scripted(errors)
    with pytest.raises(Transient, match="boom 3"):
        await run(fn, fake_time)
    assert fn.calls == CONFIG.max_attempts
    caps = [1.0, 2.0, 4.0]  # base * 2**n, capped at max_delay (5.0) from the fourth on
    assert len(fake_time.delays) == len(caps)
    assert all(0.0 <= delay <= cap for delay, cap in zip(fake_time.delays, caps, strict=True))


def test_backoff_never_exceeds_max_delay() -> None:
    assert all(0.0 <= CONFIG.backoff(failures) <= CONFIG.max_delay for failures in range(1, 40))


async def test_not_yet_replicated_retried_until_replication_timeout(fake_time: FakeTime) -> None:
    lag = [NotYetReplicated("does not reference a valid application object", status=400)] * 1000
    fn = Scripted(lag)
    with pytest.raises(NotYetReplicated):
        await run(fn, fake_time)
    # Not bounded by max_attempts, but by time: the waits add up to exactly the timeout.
    assert fn.calls > CONFIG.max_attempts
    assert sum(fake_time.delays) == pytest.approx(CONFIG.replication_timeout)


async def test_replication_then_success(fake_time: FakeTime) -> None:
    fn = Scripted([NotYetReplicated("lag", status=400)] * 3)
    assert await run(fn, fake_time) == "done"
    assert fn.calls == 4


@pytest.mark.parametrize(
    "error", [InvalidRequest("bad", status=400), PermissionDenied("no", status=403), Conflict("dup", status=409)]
)
async def test_non_retryable_errors_raise_at_once(fake_time: FakeTime, error: ApiError) -> None:
    fn = Scripted([error])
    with pytest.raises(type(error)):
        await run(fn, fake_time)
    assert (fn.calls, fake_time.delays) == (1, [])


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (Transient("connection dropped"), False),  # no answer: it may have run
        (Transient("Gateway Timeout", status=504, code="GatewayTimeout"), False),
        (Transient("HTTP 503", status=503), False),  # a bare 503 (proxy?) is no proof either
        (Transient("busy", status=503, code="ServiceUnavailable"), True),  # Graph rejected it
        (Throttled("slow down", retry_after=1.0, code="TooManyRequests"), True),
        (NotYetReplicated("Directory_ConcurrencyViolation", status=409), True),
    ],
)
async def test_non_idempotent_only_retried_when_not_executed(
    fake_time: FakeTime, error: ApiError, retried: bool
) -> None:
    fn = Scripted([error])
    if retried:
        assert await run(fn, fake_time, idempotent=False) == "done"
    else:
        with pytest.raises(type(error)):
            await run(fn, fake_time, idempotent=False)
    assert fn.calls == (2 if retried else 1)


async def test_retries_are_logged_with_context(fake_time: FakeTime) -> None:
    fn = Scripted([Throttled("slow down", retry_after=1.5, code="TooManyRequests", request_id="req-1")])
    with capture_logs() as logs:
        await run(fn, fake_time)
    assert logs == [
        {
            "event": "api_call.retry",
            "log_level": "warning",
            "describe": "test call",
            "attempt": 1,
            "delay": 1.5,
            "error": "Throttled",
            "status": 429,
            "code": "TooManyRequests",
            "request_id": "req-1",
        }
    ]
