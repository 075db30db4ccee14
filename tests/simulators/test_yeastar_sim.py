"""The Yeastar simulator over raw HTTPS: documented shapes, limits, persistence, and the portal
stand-in end to end with the Entra simulator."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from simulators.clock import OffsetClock
from simulators.entra.seed import ADMIN_UPN
from simulators.harness import RunningSimulators, running_simulators
from simulators.yeastar.server import YeastarSimConfig, YeastarSimulator, start_yeastar_simulator
from tests.conftest import StartYeastar

UA = {"User-Agent": "OpenAPI"}


@pytest.fixture
async def sim(start_yeastar: StartYeastar) -> YeastarSimulator:
    return await start_yeastar(extensions=7)


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("headers", UA)
    async with http.request(method, url, **kwargs) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def login(http: aiohttp.ClientSession, sim: YeastarSimulator, password: str | None = None) -> dict[str, Any]:
    body = {"username": sim.config.api_client_id, "password": password or sim.config.api_client_secret}
    return await call(http, "POST", f"{sim.url}/openapi/v1.0/get_token", json=body)


def advance(sim: YeastarSimulator, seconds: float) -> None:
    assert isinstance(sim.clock, OffsetClock)
    sim.clock.advance(seconds)


async def test_get_token_shape_and_user_agent(sim: YeastarSimulator, https: aiohttp.ClientSession) -> None:
    token = await login(https, sim)
    assert token["errcode"] == 0 and token["errmsg"] == "SUCCESS"
    assert token["access_token_expire_time"] == 1800 and token["refresh_token_expire_time"] == 86400
    assert token["access_token"] and token["refresh_token"]
    body = {"username": sim.config.api_client_id, "password": sim.config.api_client_secret}
    no_ua = await call(https, "POST", f"{sim.url}/openapi/v1.0/get_token", json=body, headers={})
    assert (no_ua["errcode"], no_ua["errmsg"]) == (10005, "ACCESS DENIED")
    unknown = await call(https, "GET", f"{sim.url}/openapi/v1.0/nope?access_token={token['access_token']}")
    assert (unknown["errcode"], unknown["errmsg"]) == (10001, "INTERFACE NOT EXISTED")
    # Tokens are stored hashed only.
    assert token["access_token"] not in json.dumps(sim.state.to_json(None))


async def test_token_expiry_refresh_and_del_token(sim: YeastarSimulator, https: aiohttp.ClientSession) -> None:
    token = await login(https, sim)
    info_url = f"{sim.url}/openapi/v1.0/system/information"
    info = await call(https, "GET", info_url, params={"access_token": token["access_token"]})
    assert info["data"]["firmware_version"] == "84.12.0.30"
    assert info["data"]["model_name"] == "P-Series Cloud Edition"

    advance(sim, 1801)
    expired = await call(https, "GET", info_url, params={"access_token": token["access_token"]})
    assert (expired["errcode"], expired["errmsg"]) == (10004, "TOKEN EXPIRED")

    refreshed = await call(
        https, "POST", f"{sim.url}/openapi/v1.0/refresh_token", json={"refresh_token": token["refresh_token"]}
    )
    assert refreshed["errcode"] == 0 and refreshed["access_token"] != token["access_token"]
    reused = await call(
        https, "POST", f"{sim.url}/openapi/v1.0/refresh_token", json={"refresh_token": token["refresh_token"]}
    )
    assert reused["errcode"] == 10004  # a refresh token works once

    del_url = f"{sim.url}/openapi/v1.0/del_token"
    deleted = await call(https, "GET", del_url, params={"access_token": refreshed["access_token"]})
    assert deleted["errcode"] == 0
    after = await call(https, "GET", info_url, params={"access_token": refreshed["access_token"]})
    assert after["errcode"] == 10004
    assert sim.state.valid_access_tokens(await sim.clock.now()) == 0


async def test_at_most_eight_access_tokens(sim: YeastarSimulator, https: aiohttp.ClientSession) -> None:
    tokens = [await login(https, sim) for _ in range(8)]
    assert all(t["errcode"] == 0 for t in tokens)
    ninth = await login(https, sim)
    assert ninth["errcode"] == 60002 and "MAX LIMITATION" in ninth["errmsg"]
    del_url = f"{sim.url}/openapi/v1.0/del_token"
    await call(https, "GET", del_url, params={"access_token": tokens[0]["access_token"]})
    assert (await login(https, sim))["errcode"] == 0
    advance(sim, 1801)  # expired access tokens no longer count
    assert (await login(https, sim))["errcode"] == 0


async def test_five_failed_logins_block_the_ip(sim: YeastarSimulator, https: aiohttp.ClientSession) -> None:
    for _ in range(5):
        failed = await login(https, sim, password="wrong")
        assert failed["errcode"] == -1 and failed["errmsg"] == "FAILURE"
        assert failed["invalid_param_list"] == [{"field": "username or password", "value": "error"}]
    blocked = await login(https, sim)
    assert (blocked["errcode"], blocked["errmsg"]) == (70004, "ACCOUNT IP BLOCKED")
    async with https.delete(f"{sim.url}/_sim/blocked-ips") as response:
        assert response.status == 200
    assert (await login(https, sim))["errcode"] == 0


async def test_a_success_resets_the_failure_count(sim: YeastarSimulator, https: aiohttp.ClientSession) -> None:
    for _ in range(4):
        await login(https, sim, password="wrong")
    assert (await login(https, sim))["errcode"] == 0
    for _ in range(4):
        await login(https, sim, password="wrong")
    assert (await login(https, sim))["errcode"] == 0


async def test_extension_list_pages(sim: YeastarSimulator, https: aiohttp.ClientSession) -> None:
    access = (await login(https, sim))["access_token"]
    url = f"{sim.url}/openapi/v1.0/extension/list"
    page2 = await call(https, "GET", url, params={"access_token": access, "page": "2", "page_size": "3"})
    assert page2["total_number"] == 7
    assert [row["id"] for row in page2["data"]] == [4, 5, 6]
    row = page2["data"][0]
    assert set(row) >= {
        "id",
        "number",
        "caller_id_name",
        "email_addr",
        "role_name",
        "presence_status",
        "online_status",
        "mobile_number",
    }
    last = await call(https, "GET", url, params={"access_token": access, "page": "3", "page_size": "3"})
    assert [r["id"] for r in last["data"]] == [7]
    desc = await call(https, "GET", url, params={"access_token": access, "sort_by": "number", "order_by": "desc"})
    assert desc["data"][0]["number"] == "1006"
    bad = await call(https, "GET", url, params={"access_token": access, "page": "0"})
    assert bad["errcode"] == 40002


async def test_state_survives_a_restart_without_a_plaintext_secret(
    server_ssl: ssl.SSLContext, https: aiohttp.ClientSession, tmp_path: Path
) -> None:
    config = YeastarSimConfig(state_file=tmp_path / "yeastar.json")
    first = await start_yeastar_simulator(config, server_ssl)
    try:
        token = await login(https, first)
        saved = {"client_id": "app-id", "tenant_id": "tenant-id", "client_secret": "portal-secret-value"}
        async with https.post(f"{first.url}/_sim/portal/microsoft365", json=saved) as response:
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
        info = await call(
            https,
            "GET",
            f"{second.url}/openapi/v1.0/system/information",
            params={"access_token": token["access_token"]},
        )
        assert info["errcode"] == 0
    finally:
        await second.stop()


# --- the portal stand-in, end to end with the Entra simulator ------------------------------------

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
USER_READ_ALL = "df021288-bdef-4463-88db-98f22de89214"


@dataclass
class PbxApp:
    app_id: str
    secret: str
    key_id: str


async def graph(
    http: aiohttp.ClientSession, sims: RunningSimulators, method: str, path: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A Graph call as the provisioning app (what our service does in steps 2-5)."""
    entra = sims.entra
    form = {
        "grant_type": "client_credentials",
        "client_id": entra.config.provisioning_client_id,
        "client_secret": entra.config.provisioning_secret,
        "scope": GRAPH_SCOPE,
    }
    async with http.post(f"{entra.authority}/oauth2/v2.0/token", data=form) as response:
        token = (await response.json())["access_token"]
    async with http.request(
        method, f"{entra.url}/v1.0{path}", json=body, headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status < 300, await response.text()
        result: dict[str, Any] = await response.json()
        return result


async def register_pbx_app(
    http: aiohttp.ClientSession, sims: RunningSimulators, secret_end: datetime | None = None
) -> PbxApp:
    app = await graph(
        http, sims, "POST", "/applications", {"displayName": "Yeastar PBX", "signInAudience": "AzureADMyOrg"}
    )
    sp = await graph(http, sims, "POST", "/servicePrincipals", {"appId": app["appId"]})
    graph_sp = await graph(http, sims, "GET", "/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')")
    await graph(
        http,
        sims,
        "POST",
        f"/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo",
        {"principalId": sp["id"], "resourceId": graph_sp["id"], "appRoleId": USER_READ_ALL},
    )
    credential: dict[str, Any] = {"displayName": "pbx"}
    if secret_end is not None:
        credential["endDateTime"] = secret_end.isoformat().replace("+00:00", "Z")
    password = await graph(
        http, sims, "POST", f"/applications/{app['id']}/addPassword", {"passwordCredential": credential}
    )
    return PbxApp(app["appId"], password["secretText"], password["keyId"])


async def portal(
    http: aiohttp.ClientSession,
    sims: RunningSimulators,
    method: str,
    path: str = "",
    *,
    body: dict[str, Any] | None = None,
    status: int = 200,
) -> dict[str, Any]:
    async with http.request(method, f"{sims.yeastar.url}/_sim/portal/microsoft365{path}", json=body) as response:
        assert response.status == status, await response.text()
        result: dict[str, Any] = await response.json()
        return result


async def save(http: aiohttp.ClientSession, sims: RunningSimulators, app_id: str, secret: str) -> dict[str, Any]:
    body = {"client_id": app_id, "tenant_id": sims.entra.config.tenant_id, "client_secret": secret}
    return await portal(http, sims, "POST", body=body)


async def sign_in(http: aiohttp.ClientSession, sims: RunningSimulators, status: int = 200) -> dict[str, Any]:
    body = {"user_principal_name": ADMIN_UPN, "consent_for_organization": True}
    return await portal(http, sims, "POST", "/sign-in", body=body, status=status)


@pytest.fixture
async def sims(tmp_path: Path) -> AsyncIterator[RunningSimulators]:
    # A long interval: the tests trigger syncs themselves.
    async with running_simulators(tmp_path, yeastar=YeastarSimConfig(sync_interval_seconds=3600)) as sims:
        yield sims


@pytest.fixture
async def sims_http(sims: RunningSimulators) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=sims.ca.ca_file))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


async def test_portal_connects_and_syncs_with_the_saved_secret(
    sims: RunningSimulators, sims_http: aiohttp.ClientSession
) -> None:
    http = sims_http
    page = await portal(http, sims, "GET")
    assert page["status"] == "Disconnected" and page["secret_set"] is False
    assert page["redirect_uri"].startswith("https://contoso.ras.yeastarcloud.com/")
    assert page["sso_redirect_uri"].startswith("https://contoso.ras.yeastarcloud.com/")

    app = await register_pbx_app(http, sims)
    saved = await save(http, sims, app.app_id, app.secret)
    assert (saved["status"], saved["secret_set"], saved["client_id"]) == ("Saved", True, app.app_id)
    assert app.secret not in json.dumps(saved)

    connected = await sign_in(http, sims)
    assert connected["status"] == "Connected" and connected["sync"]["ok"] is True
    assert connected["signed_in_as"] == ADMIN_UPN and connected["sync_ok_count"] == 1
    assert app.secret not in json.dumps(connected)

    # Every Entra user with a mailbox became an extension.
    mails = {u.mail.lower() for u in sims.entra.state.users() if u.mail}
    synced = {e.email_addr.lower() for e in sims.yeastar.state.extensions if e.source == "microsoft365"}
    assert synced == mails and len(sims.yeastar.state.extensions) == 5 + len(mails)

    again = await portal(http, sims, "POST", "/sync")
    assert again == {"ok": True, "status": "Connected", "users": len(mails), "created": 0, "updated": 0}
    # Each sync signed in with the saved secret: the Entra sign-in log names its key ID.
    sign_ins = [s for s in sims.entra.state.sign_ins(app.app_id) if s.event_type == "servicePrincipal"]
    assert len(sign_ins) == 2 and {s.credential_key_id for s in sign_ins} == {app.key_id}
    assert all(s.error_code == 0 for s in sign_ins)
    # And the admin's interactive sign-in + consent is there too.
    assert any(s.event_type == "interactiveUser" for s in sims.entra.state.sign_ins(app.app_id))
    page = await portal(http, sims, "GET")
    assert (page["sync_ok_count"], page["sync_failure_count"], page["last_error"]) == (2, 0, None)


async def test_wrong_then_expired_secret_show_as_failed_syncs(
    sims: RunningSimulators, sims_http: aiohttp.ClientSession
) -> None:
    http = sims_http
    now = await sims.clock.now()
    app = await register_pbx_app(http, sims, secret_end=now + timedelta(days=1))
    await save(http, sims, app.app_id, "not-the-secret")
    page = await sign_in(http, sims)
    assert page["status"] == "Error" and "AADSTS7000215" in page["last_error"]
    assert (page["sync_ok_count"], page["sync_failure_count"]) == (0, 1)
    failed = await portal(http, sims, "POST", "/sync")
    assert failed["ok"] is False and "AADSTS7000215" in failed["error"]
    assert (await portal(http, sims, "GET"))["sync_failure_count"] == 2

    # The admin pastes the right secret: Save, sign in again, Connected.
    await save(http, sims, app.app_id, app.secret)
    assert (await sign_in(http, sims))["status"] == "Connected"
    # The secret expires: the next sync fails with Entra's expired-secret error.
    assert isinstance(sims.clock, OffsetClock)
    sims.clock.advance(2 * 86400)
    expired = await portal(http, sims, "POST", "/sync")
    assert expired["ok"] is False and "AADSTS7000222" in expired["error"]
    page = await portal(http, sims, "GET")
    assert page["status"] == "Error" and (page["sync_ok_count"], page["sync_failure_count"]) == (1, 3)


async def test_sign_in_preconditions(sims: RunningSimulators, sims_http: aiohttp.ClientSession) -> None:
    assert "Save" in (await sign_in(sims_http, sims, status=409))["error"]
    missing = await portal(sims_http, sims, "POST", body={"client_id": "x"}, status=400)
    assert "tenant_id" in missing["error"] and "client_secret" in missing["error"]
    await portal(sims_http, sims, "POST", "/sync", status=409)
    # Entra refuses the consent of an unknown app: the page shows Entra's reason.
    await save(sims_http, sims, "33333333-3333-4333-8333-333333333333", "whatever-secret")
    page = await sign_in(sims_http, sims)
    assert page["status"] == "Error" and page["last_error"].startswith("sign-in: ")
    assert page["last_error"] != "sign-in: HTTP 404"


async def test_old_firmware_cannot_consent_for_the_organization(
    server_ssl: ssl.SSLContext, https: aiohttp.ClientSession
) -> None:
    config = YeastarSimConfig(firmware_version="84.9.0.1", entra_url="https://localhost:9")
    sim = await start_yeastar_simulator(config, server_ssl)
    try:
        url = f"{sim.url}/_sim/portal/microsoft365"
        saved = {"client_id": "a", "tenant_id": "t", "client_secret": "s"}
        async with https.post(url, json=saved) as response:
            assert response.status == 200
        sign_in = {"user_principal_name": "admin@example.com", "consent_for_organization": True}
        async with https.post(f"{url}/sign-in", json=sign_in) as response:
            assert response.status == 400
            assert "84.10.0.30" in (await response.json())["error"]
    finally:
        await sim.stop()


async def test_the_sync_loop_runs_by_itself(tmp_path: Path) -> None:
    config = YeastarSimConfig(sync_interval_seconds=0.05)
    async with running_simulators(tmp_path, yeastar=config) as sims:
        connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=sims.ca.ca_file))
        async with aiohttp.ClientSession(connector=connector) as http:
            app = await register_pbx_app(http, sims)
            await save(http, sims, app.app_id, app.secret)
            await sign_in(http, sims)
            for _ in range(100):
                if sims.yeastar.state.portal.sync_ok_count >= 3:
                    break
                await asyncio.sleep(0.05)
            assert sims.yeastar.state.portal.sync_ok_count >= 3
