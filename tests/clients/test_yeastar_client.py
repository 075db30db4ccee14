"""YeastarClient against the Yeastar simulator over real HTTPS (no mocks)."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable

import aiohttp
import pytest
from pydantic import SecretStr

from clients.errors import Transient, YeastarAuthFailed, YeastarTokenLimit
from clients.retry import RetryConfig
from clients.yeastar import MIN_FIRMWARE, YeastarClient, parse_firmware
from simulators.clock import OffsetClock
from simulators.tls import LocalCA
from simulators.yeastar.server import YeastarSimulator
from tests.conftest import StartYeastar

FAST_RETRY = RetryConfig(max_attempts=3, base_delay=0.01, max_delay=0.05)


@pytest.fixture
async def sim(start_yeastar: StartYeastar) -> YeastarSimulator:
    return await start_yeastar()


def make_client(
    sim: YeastarSimulator, ca: LocalCA, *, secret: str | None = None, monotonic: Callable[[], float] = time.monotonic
) -> YeastarClient:
    return YeastarClient(
        sim.url,
        sim.config.api_client_id,
        SecretStr(secret if secret is not None else sim.config.api_client_secret),
        ca.ca_file,
        retry=FAST_RETRY,
        monotonic=monotonic,
    )


async def valid_tokens(sim: YeastarSimulator) -> int:
    return sim.state.valid_access_tokens(await sim.clock.now())


async def test_one_token_is_reused_and_released_on_close(sim: YeastarSimulator, ca: LocalCA) -> None:
    async with make_client(sim, ca) as client:
        assert (await client.system_info()).firmware_version == "84.12.0.30"
        assert await asyncio.gather(*(client.extension_count() for _ in range(10))) == [5] * 10
        assert len(await client.list_extensions()) == 5
        assert sim.state.counters.issued == 1
        assert await valid_tokens(sim) == 1
    assert sim.state.counters.deleted == 1
    assert await valid_tokens(sim) == 0
    with pytest.raises(RuntimeError, match="after close"):
        await client.extension_count()


async def test_many_clients_that_close_never_approach_the_limit(sim: YeastarSimulator, ca: LocalCA) -> None:
    async def use_once() -> int:
        async with make_client(sim, ca) as client:
            count = await client.extension_count()
            assert await valid_tokens(sim) <= 8
            return count

    for _ in range(3):  # 18 clients in all, 6 at a time
        assert await asyncio.gather(*(use_once() for _ in range(6))) == [5] * 6
    assert sim.state.counters.issued == 18
    assert sim.state.counters.limit_rejections == 0
    assert await valid_tokens(sim) == 0


async def test_callers_that_never_close_hit_the_token_limit(sim: YeastarSimulator, ca: LocalCA) -> None:
    leaky = [make_client(sim, ca) for _ in range(8)]
    try:
        for client in leaky:
            await client.extension_count()
        assert await valid_tokens(sim) == 8
        async with make_client(sim, ca) as ninth:
            with pytest.raises(YeastarTokenLimit, match="8 valid access tokens") as caught:
                await ninth.extension_count()
        assert caught.value.errcode == 60002
        assert sim.state.counters.limit_rejections == 1
    finally:
        for client in leaky:
            await client.close()
    assert await valid_tokens(sim) == 0


async def test_token_is_refreshed_before_it_expires(sim: YeastarSimulator, ca: LocalCA) -> None:
    clock = sim.clock
    assert isinstance(clock, OffsetClock)
    async with make_client(sim, ca, monotonic=lambda: time.monotonic() + clock.offset_seconds) as client:
        await client.extension_count()
        clock.advance(1800 - 120)  # two minutes before expiry: inside the refresh margin
        await client.extension_count()
        assert sim.state.counters.refreshed == 1
        assert sim.state.counters.issued == 1
        assert await valid_tokens(sim) == 1  # refreshing replaced the old token
        clock.advance(1800 - 120)  # the refreshed token is refreshed again, still one login
        await client.extension_count()
        assert (sim.state.counters.issued, sim.state.counters.refreshed) == (1, 2)


async def test_token_expired_answer_refreshes_and_retries_once(sim: YeastarSimulator, ca: LocalCA) -> None:
    clock = sim.clock
    assert isinstance(clock, OffsetClock)
    async with make_client(sim, ca) as client:  # the client's own clock does not move
        await client.extension_count()
        clock.advance(1801)
        assert await client.extension_count() == 5
        assert (sim.state.counters.issued, sim.state.counters.refreshed) == (1, 1)
        clock.advance(86401)  # refresh token gone too: the client logs in again
        assert await client.extension_count() == 5
        assert sim.state.counters.issued == 2


async def test_wrong_secret_fails_once_with_a_warning_and_is_not_retried(sim: YeastarSimulator, ca: LocalCA) -> None:
    wrong = "definitely-not-the-secret"
    async with make_client(sim, ca, secret=wrong) as client:
        with pytest.raises(YeastarAuthFailed) as caught:
            await client.extension_count()
        assert "5 failed logins" in str(caught.value)
        assert wrong not in str(caught.value) and wrong not in repr(caught.value)
        with pytest.raises(YeastarAuthFailed):
            await client.system_info()  # remembered: no second login attempt
    assert sim.state.counters.auth_failures == 1
    assert list(sim.state.failed_logins.values()) == [1]


async def test_five_failures_block_the_ip_even_for_good_credentials(sim: YeastarSimulator, ca: LocalCA) -> None:
    for _ in range(5):
        async with make_client(sim, ca, secret="wrong-secret-value") as client:
            with pytest.raises(YeastarAuthFailed):
                await client.extension_count()
    assert sim.state.blocked_ips
    async with make_client(sim, ca) as client:
        with pytest.raises(YeastarAuthFailed, match="Blocked IP") as caught:
            await client.extension_count()
    assert caught.value.errcode == 70004
    assert sim.state.counters.issued == 0

    # The admin removes the IP under Security > Blocked IPs.
    tls = ssl.create_default_context(cafile=ca.ca_file)
    async with aiohttp.ClientSession() as http, http.delete(f"{sim.url}/_sim/blocked-ips", ssl=tls) as answer:
        assert answer.status == 200
    async with make_client(sim, ca) as client:
        assert await client.extension_count() == 5


async def test_extensions_are_read_page_by_page(start_yeastar: StartYeastar, ca: LocalCA) -> None:
    sim = await start_yeastar(extensions=23)
    async with make_client(sim, ca) as client:
        extensions = await client.list_extensions(page_size=5)
        assert await client.extension_count() == 23
    assert [e.id for e in extensions] == list(range(1, 24))
    assert len({e.number for e in extensions}) == 23
    first = extensions[0]
    assert first.number == "1000" and first.email_addr == "ext1000@pbx.example"
    assert first.presence_status == "available" and first.role_name
    assert "sip_phone" in first.online_status


async def test_a_caller_session_is_used_and_left_open(sim: YeastarSimulator, ca: LocalCA) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(2):
            async with YeastarClient(
                sim.url, sim.config.api_client_id, SecretStr(sim.config.api_client_secret), ca.ca_file, session=http
            ) as client:
                assert await client.extension_count() == 5
        assert not http.closed
    assert (sim.state.counters.issued, sim.state.counters.deleted) == (2, 2)


def test_parse_firmware() -> None:
    assert parse_firmware("84.12.0.30") == (84, 12, 0, 30)
    assert parse_firmware(" 84.8.0.25 ") == MIN_FIRMWARE
    assert parse_firmware("84.8.0.24") < MIN_FIRMWARE < parse_firmware("84.10.0.1")
    for bad in ("", "84", "X.7.0.16", "84.12.0.30-beta"):
        with pytest.raises(ValueError, match="firmware"):
            parse_firmware(bad)


async def test_firmware_gates(start_yeastar: StartYeastar, ca: LocalCA) -> None:
    old = await start_yeastar(firmware_version="84.8.0.20")
    mid = await start_yeastar(firmware_version="84.9.0.1")
    async with make_client(old, ca) as client:
        info = await client.system_info()
    assert (info.firmware, info.supports_microsoft365) == ((84, 8, 0, 20), False)
    async with make_client(mid, ca) as client:
        info = await client.system_info()
    assert (info.supports_microsoft365, info.supports_org_consent) == (True, False)


async def test_server_errors_are_retried_then_reported_transient(sim: YeastarSimulator, ca: LocalCA) -> None:
    async with make_client(sim, ca) as client:
        sim.state.fail_next = 2  # fails get_token once (with an error body: safe to re-send), then one GET
        assert await client.extension_count() == 5
        assert sim.state.counters.issued == 1
        sim.state.fail_next = 10
        with pytest.raises(Transient) as caught:
            await client.extension_count()
        assert caught.value.status == 503
        sim.state.fail_next = 0


async def test_connection_refused_is_transient(ca: LocalCA) -> None:
    async with YeastarClient(
        "https://localhost:9", "id", SecretStr("secret-value"), ca.ca_file, retry=FAST_RETRY
    ) as client:
        with pytest.raises(Transient):
            await client.extension_count()
