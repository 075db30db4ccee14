"""The Yeastar simulator over raw HTTPS: documented shapes, limits, persistence, and the portal
stand-in end to end with the Entra simulator."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from simulators.clock import OffsetClock
from simulators.tls import LocalCA, load_or_create_local_ca, server_ssl_context
from simulators.yeastar.server import YeastarSimConfig, YeastarSimulator, start_yeastar_simulator

UA = {"User-Agent": "OpenAPI"}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return load_or_create_local_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_ssl(ca: LocalCA) -> ssl.SSLContext:
    return server_ssl_context(ca)


@pytest.fixture
async def http(ca: LocalCA) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca.ca_file))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


@pytest.fixture
async def sim(server_ssl: ssl.SSLContext) -> AsyncIterator[YeastarSimulator]:
    sim = await start_yeastar_simulator(YeastarSimConfig(extensions=7), server_ssl, clock=OffsetClock())
    yield sim
    await sim.stop()


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("headers", UA)
    async with http.request(method, url, **kwargs) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def login(
    http: aiohttp.ClientSession, sim: YeastarSimulator, password: str | None = None
) -> dict[str, Any]:
    body = {"username": sim.config.api_client_id, "password": password or sim.config.api_client_secret}
    return await call(http, "POST", f"{sim.url}/openapi/v1.0/get_token", json=body)


def advance(sim: YeastarSimulator, seconds: float) -> None:
    assert isinstance(sim.clock, OffsetClock)
    sim.clock.advance(seconds)


async def test_get_token_shape_and_user_agent(sim: YeastarSimulator, http: aiohttp.ClientSession) -> None:
    token = await login(http, sim)
    assert token["errcode"] == 0 and token["errmsg"] == "SUCCESS"
    assert token["access_token_expire_time"] == 1800 and token["refresh_token_expire_time"] == 86400
    assert token["access_token"] and token["refresh_token"]
    body = {"username": sim.config.api_client_id, "password": sim.config.api_client_secret}
    no_ua = await call(http, "POST", f"{sim.url}/openapi/v1.0/get_token", json=body, headers={})
    assert (no_ua["errcode"], no_ua["errmsg"]) == (10005, "ACCESS DENIED")
    unknown = await call(http, "GET", f"{sim.url}/openapi/v1.0/nope?access_token={token['access_token']}")
    assert (unknown["errcode"], unknown["errmsg"]) == (10001, "INTERFACE NOT EXISTED")
    # Tokens are stored hashed only.
    assert token["access_token"] not in json.dumps(sim.state.to_json(None))


async def test_token_expiry_refresh_and_del_token(sim: YeastarSimulator, http: aiohttp.ClientSession) -> None:
    token = await login(http, sim)
    info_url = f"{sim.url}/openapi/v1.0/system/information"
    info = await call(http, "GET", info_url, params={"access_token": token["access_token"]})
    assert info["data"]["firmware_version"] == "84.12.0.30"
    assert info["data"]["model_name"] == "P-Series Cloud Edition"

    advance(sim, 1801)
    expired = await call(http, "GET", info_url, params={"access_token": token["access_token"]})
    assert (expired["errcode"], expired["errmsg"]) == (10004, "TOKEN EXPIRED")

    refreshed = await call(http, "POST", f"{sim.url}/openapi/v1.0/refresh_token",
                           json={"refresh_token": token["refresh_token"]})
    assert refreshed["errcode"] == 0 and refreshed["access_token"] != token["access_token"]
    reused = await call(http, "POST", f"{sim.url}/openapi/v1.0/refresh_token",
                        json={"refresh_token": token["refresh_token"]})
    assert reused["errcode"] == 10004  # a refresh token works once

    del_url = f"{sim.url}/openapi/v1.0/del_token"
    deleted = await call(http, "GET", del_url, params={"access_token": refreshed["access_token"]})
    assert deleted["errcode"] == 0
    after = await call(http, "GET", info_url, params={"access_token": refreshed["access_token"]})
    assert after["errcode"] == 10004
    assert sim.state.valid_access_tokens(await sim.clock.now()) == 0


async def test_at_most_eight_access_tokens(sim: YeastarSimulator, http: aiohttp.ClientSession) -> None:
    tokens = [await login(http, sim) for _ in range(8)]
    assert all(t["errcode"] == 0 for t in tokens)
    ninth = await login(http, sim)
    assert ninth["errcode"] == 60002 and "MAX LIMITATION" in ninth["errmsg"]
    del_url = f"{sim.url}/openapi/v1.0/del_token"
    await call(http, "GET", del_url, params={"access_token": tokens[0]["access_token"]})
    assert (await login(http, sim))["errcode"] == 0
    advance(sim, 1801)  # expired access tokens no longer count
    assert (await login(http, sim))["errcode"] == 0


async def test_five_failed_logins_block_the_ip(sim: YeastarSimulator, http: aiohttp.ClientSession) -> None:
    for _ in range(5):
        failed = await login(http, sim, password="wrong")
        assert failed["errcode"] == -1 and failed["errmsg"] == "FAILURE"
        assert failed["invalid_param_list"] == [{"field": "username or password", "value": "error"}]
    blocked = await login(http, sim)
    assert (blocked["errcode"], blocked["errmsg"]) == (70004, "ACCOUNT IP BLOCKED")
    async with http.delete(f"{sim.url}/_sim/blocked-ips") as response:
        assert response.status == 200
    assert (await login(http, sim))["errcode"] == 0


async def test_a_success_resets_the_failure_count(sim: YeastarSimulator, http: aiohttp.ClientSession) -> None:
    for _ in range(4):
        await login(http, sim, password="wrong")
    assert (await login(http, sim))["errcode"] == 0
    for _ in range(4):
        await login(http, sim, password="wrong")
    assert (await login(http, sim))["errcode"] == 0


async def test_extension_list_pages(sim: YeastarSimulator, http: aiohttp.ClientSession) -> None:
    access = (await login(http, sim))["access_token"]
    url = f"{sim.url}/openapi/v1.0/extension/list"
    page2 = await call(http, "GET", url, params={"access_token": access, "page": "2", "page_size": "3"})
    assert page2["total_number"] == 7
    assert [row["id"] for row in page2["data"]] == [4, 5, 6]
    row = page2["data"][0]
    assert set(row) >= {"id", "number", "caller_id_name", "email_addr", "role_name", "presence_status",
                        "online_status", "mobile_number"}
    last = await call(http, "GET", url, params={"access_token": access, "page": "3", "page_size": "3"})
    assert [r["id"] for r in last["data"]] == [7]
    desc = await call(http, "GET", url,
                      params={"access_token": access, "sort_by": "number", "order_by": "desc"})
    assert desc["data"][0]["number"] == "1006"
    bad = await call(http, "GET", url, params={"access_token": access, "page": "0"})
    assert bad["errcode"] == 40002


async def test_state_survives_a_restart_without_a_plaintext_secret(
    server_ssl: ssl.SSLContext, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    config = YeastarSimConfig(state_file=tmp_path / "yeastar.json")
    first = await start_yeastar_simulator(config, server_ssl)
    try:
        token = await login(http, first)
        saved = {"client_id": "app-id", "tenant_id": "tenant-id", "client_secret": "portal-secret-value"}
        async with http.post(f"{first.url}/_sim/portal/microsoft365", json=saved) as response:
            view = await response.json()
        assert view["status"] == "Saved" and view["secret_set"] is True
        assert "portal-secret-value" not in json.dumps(view)
    finally:
        await first.stop()
    stored = config.state_file.read_text() if config.state_file else ""
    assert "portal-secret-value" not in stored and token["access_token"] not in stored
    assert (tmp_path / "yeastar.json").stat().st_mode & 0o077 == 0

    second = await start_yeastar_simulator(config, server_ssl)
    try:
        assert second.state.portal.secret == "portal-secret-value"
        assert second.state.valid_access_tokens(await second.clock.now()) == 1
        info = await call(http, "GET", f"{second.url}/openapi/v1.0/system/information",
                          params={"access_token": token["access_token"]})
        assert info["errcode"] == 0
    finally:
        await second.stop()
