"""The Key Vault simulator over real HTTPS, driven by the real SDK (azure-keyvault-secrets, async) signing in
with azure-identity against the Entra simulator; raw aiohttp where the exact wire shape matters."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.identity.aio import ClientSecretCredential
from azure.keyvault.secrets._shared import http_challenge_cache
from azure.keyvault.secrets.aio import SecretClient

from common.settings import load_settings
from simulators.clock import OffsetClock
from simulators.entra import PROVISIONING_APP_ID, EntraSimulator
from simulators.harness import running_simulators
from simulators.keyvault import KeyVaultSimulator
from tests.conftest import StartKeyVault
from tests.simulators.conftest import GraphSession, Reply

VAULT_SCOPE = "https://vault.azure.net/.default"
POLL = 0.05  # seconds between the SDK's delete / recover polls (its default is 2)


def transport(http: aiohttp.ClientSession) -> AioHttpTransport:
    return AioHttpTransport(session=http, session_owner=False)


def credential(entra: EntraSimulator, http: aiohttp.ClientSession) -> ClientSecretCredential:
    """The provisioning app's identity, as the service signs in to the vault."""
    return ClientSecretCredential(
        entra.config.tenant_id,
        entra.config.provisioning_client_id,
        entra.config.provisioning_secret,
        authority=entra.url,
        disable_instance_discovery=True,
        transport=transport(http),
    )


@pytest.fixture
async def vault(entra: EntraSimulator, start_keyvault: StartKeyVault) -> KeyVaultSimulator:
    return await start_keyvault(entra)


@pytest.fixture
async def client(
    vault: KeyVaultSimulator, entra: EntraSimulator, https: aiohttp.ClientSession
) -> AsyncIterator[SecretClient]:
    # The SDK caches challenges per host:port for the whole process, and ports get reused across tests.
    http_challenge_cache.clear()
    async with (
        credential(entra, https) as identity,
        SecretClient(vault.url, identity, verify_challenge_resource=False, transport=transport(https)) as secrets,
    ):
        yield secrets


async def vault_call(
    http: aiohttp.ClientSession,
    vault: KeyVaultSimulator,
    method: str,
    path: str,
    *,
    token: str | None = None,
    api_version: str | None = "7.6",
) -> Reply:
    params = {"api-version": api_version} if api_version is not None else {}
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with http.request(method, f"{vault.url}{path}", params=params, headers=headers) as response:
        body = await response.json() if response.content_type == "application/json" else None
        return Reply(response.status, response.headers, body)


async def vault_token(graph: GraphSession) -> str:
    reply = await graph.token_response(scope=VAULT_SCOPE)
    assert reply.status == 200, reply.body
    return str(reply.body["access_token"])


async def admin(http: aiohttp.ClientSession, vault: KeyVaultSimulator, path: str, body: Any = None) -> Reply:
    method = "GET" if body is None else "POST"
    async with http.request(method, f"{vault.url}/_sim/{path}", json=body) as response:
        return Reply(response.status, response.headers, await response.json())


def count(vault: KeyVaultSimulator, route: str) -> int:
    return vault.state.request_counts[route]


async def test_challenge_then_bearer_token(
    client: SecretClient,
    vault: KeyVaultSimulator,
    entra: EntraSimulator,
    graph: GraphSession,
    https: aiohttp.ClientSession,
) -> None:
    bare = await vault_call(https, vault, "GET", "/secrets")
    assert bare.status == 401
    assert bare.headers["WWW-Authenticate"] == (
        f'Bearer authorization="{entra.authority}", resource="https://vault.azure.net"'
    )
    assert bare.body == {
        "error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer or PoP token."}
    }

    # The SDK's first request is a bodiless probe; the challenge sends it to Entra, then it sends the PUT again.
    secret = await client.set_secret("first", "v1")
    assert secret.value == "v1" and secret.id == f"{vault.url}/secrets/first/{secret.properties.version}"
    assert count(vault, "PUT /secrets/{name}") == 2
    assert len(entra.state.sign_ins(PROVISIONING_APP_ID)) == 1
    # The challenge and the token are cached: the next request goes through at once.
    assert (await client.get_secret("first")).value == "v1"
    assert count(vault, "GET /secrets/{name}/{version}") == 1

    graph_token = await graph.token()
    wrong_audience = await vault_call(https, vault, "GET", "/secrets", token=graph_token)
    assert wrong_audience.status == 401 and "WWW-Authenticate" in wrong_audience.headers
    assert wrong_audience.body["error"]["message"] == (
        "AKV10022: Invalid audience. Expected https://vault.azure.net, found: https://graph.microsoft.com."
    )


async def test_versions_and_paged_lists(
    client: SecretClient, vault: KeyVaultSimulator, graph: GraphSession, https: aiohttp.ClientSession
) -> None:
    versions = [(await client.set_secret("alpha", f"a{n}")).properties.version for n in range(3)]
    for name in ("gamma", "beta"):
        await client.set_secret(name, name)

    assert (await client.get_secret("alpha")).value == "a2"
    assert (await client.get_secret("alpha", versions[0])).value == "a0"
    # Names are case-insensitive and keep the spelling they were created with.
    assert (await client.get_secret("ALPHA")).name == "alpha"

    listed = [p.version async for p in client.list_properties_of_secret_versions("alpha", max_page_size=2)]
    assert listed == versions and count(vault, "GET /secrets/{name}/versions") == 2
    names = [p.name async for p in client.list_properties_of_secrets(max_page_size=2)]
    assert names == ["alpha", "beta", "gamma"] and count(vault, "GET /secrets") == 2

    token = await vault_token(graph)
    page = await vault_call(https, vault, "GET", "/secrets?maxresults=2", token=token)
    assert [item["id"] for item in page.body["value"]] == [f"{vault.url}/secrets/alpha", f"{vault.url}/secrets/beta"]
    assert all("value" not in item for item in page.body["value"])
    assert page.body["nextLink"].startswith(f"{vault.url}/secrets?api-version=7.6&$skiptoken=")
    too_many = await vault_call(https, vault, "GET", "/secrets?maxresults=26", token=token)
    assert (too_many.status, too_many.error_code) == (400, "BadParameter")


async def test_tags_content_type_and_dates_round_trip(client: SecretClient) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    expires, not_before = now + timedelta(days=1), now - timedelta(hours=1)
    tags = {"integration-id": "i-1", "key-id": "k-1"}
    stored = await client.set_secret(
        "dated", "x", tags=tags, content_type="text/plain", expires_on=expires, not_before=not_before
    )
    read = await client.get_secret("dated")
    for properties in (stored.properties, read.properties):
        assert properties.tags == tags and properties.content_type == "text/plain"
        assert (properties.expires_on, properties.not_before, properties.enabled) == (expires, not_before, True)
        assert (properties.recovery_level, properties.recoverable_days) == ("Recoverable+Purgeable", 90)

    updated = await client.update_secret_properties("dated", tags={"k": "v"}, enabled=False)
    assert updated.tags == {"k": "v"} and updated.enabled is False and updated.content_type == "text/plain"
    with pytest.raises(HttpResponseError) as disabled:
        await client.get_secret("dated")
    assert disabled.value.status_code == 403 and disabled.value.error is not None
    assert disabled.value.error.code == "Forbidden" and disabled.value.error.innererror == {"code": "SecretDisabled"}
    await client.update_secret_properties("dated", read.properties.version, enabled=True)
    assert (await client.get_secret("dated")).value == "x"

    # Key Vault still returns a secret past its expiry ("for recovery"); exp is informational.
    await client.set_secret("expired", "still-readable", expires_on=now - timedelta(days=1))
    assert (await client.get_secret("expired")).value == "still-readable"


async def test_missing_secrets_bad_names_and_api_versions(
    client: SecretClient, vault: KeyVaultSimulator, graph: GraphSession, https: aiohttp.ClientSession
) -> None:
    with pytest.raises(ResourceNotFoundError) as missing:
        await client.get_secret("nope")
    assert missing.value.error is not None and missing.value.error.code == "SecretNotFound"
    assert "A secret with (name/id) nope was not found in this key vault." in str(missing.value.error.message)
    await client.set_secret("here", "v")
    with pytest.raises(ResourceNotFoundError):
        await client.get_secret("here", "0" * 32)
    with pytest.raises(HttpResponseError) as bad_name:
        await client.set_secret("bad_name", "v")
    assert bad_name.value.status_code == 400 and bad_name.value.error is not None
    assert bad_name.value.error.message == "The request URI contains an invalid name: bad_name"

    token = await vault_token(graph)
    for version in ("7.0", "7.6", "2025-07-01", "2026-04-01"):
        assert (await vault_call(https, vault, "GET", "/secrets/here", token=token, api_version=version)).status == 200
    absent = await vault_call(https, vault, "GET", "/secrets/here", token=token, api_version=None)
    assert (absent.status, absent.error_code) == (400, "BadParameter")
    unknown = await vault_call(https, vault, "GET", "/secrets/here", token=token, api_version="9.9")
    assert (unknown.status, unknown.error_code) == (400, "BadParameter")
    assert unknown.body["error"]["message"].startswith("The specified version (9.9) is not recognized.")


async def test_delete_is_polled_until_done_then_purged(client: SecretClient, vault: KeyVaultSimulator) -> None:
    await client.set_secret("gone", "v1")
    await client.set_secret("gone", "v2")
    deleted = await client.delete_secret("gone", _polling_interval=POLL)
    assert deleted.recovery_id == f"{vault.url}/deletedsecrets/gone" and deleted.name == "gone"
    assert deleted.deleted_date is not None and deleted.scheduled_purge_date is not None
    assert deleted.scheduled_purge_date - deleted.deleted_date == timedelta(days=90)
    # Deletion takes a moment: the poller first saw 404 from /deletedsecrets.
    assert count(vault, "GET /deletedsecrets/{name}") >= 2

    with pytest.raises(ResourceNotFoundError):
        await client.get_secret("gone")
    assert (await client.get_deleted_secret("gone")).recovery_id == deleted.recovery_id
    assert [d.name async for d in client.list_deleted_secrets()] == ["gone"]

    await client.purge_deleted_secret("gone")
    with pytest.raises(ResourceNotFoundError):
        await client.get_deleted_secret("gone")
    assert (await client.set_secret("gone", "again")).value == "again"


async def test_soft_deleted_name_conflicts_until_recovered(
    client: SecretClient, vault: KeyVaultSimulator, graph: GraphSession, https: aiohttp.ClientSession
) -> None:
    await client.set_secret("back", "v1")
    latest = await client.set_secret("back", "v2")

    # While the deletion runs the name cannot be set either, for another reason.
    token = await vault_token(graph)
    assert (await vault_call(https, vault, "DELETE", "/secrets/back", token=token)).status == 200
    with pytest.raises(ResourceExistsError) as deleting:
        await client.set_secret("back", "v3")
    assert deleting.value.error is not None and deleting.value.error.innererror == {"code": "ObjectIsBeingDeleted"}
    await asyncio.sleep(vault.config.delete_delay_seconds)

    with pytest.raises(ResourceExistsError) as conflict:
        await client.set_secret("back", "v3")
    assert conflict.value.status_code == 409 and conflict.value.error is not None
    assert conflict.value.error.code == "Conflict"
    assert conflict.value.error.innererror == {"code": "ObjectIsDeletedButRecoverable"}

    recovered = await client.recover_deleted_secret("back", _polling_interval=POLL)
    assert recovered.version == latest.properties.version
    assert (await client.get_secret("back")).value == "v2"
    assert len([v async for v in client.list_properties_of_secret_versions("back")]) == 2


async def test_purge_protection_forbids_purge(
    client: SecretClient, vault: KeyVaultSimulator, https: aiohttp.ClientSession
) -> None:
    switched = await admin(https, vault, "purge-protection", {"enabled": True})
    assert switched.status == 200 and switched.body["recoveryLevel"] == "Recoverable"
    assert (await client.set_secret("kept", "v")).properties.recovery_level == "Recoverable"
    await client.delete_secret("kept", _polling_interval=POLL)
    with pytest.raises(HttpResponseError) as refused:
        await client.purge_deleted_secret("kept")
    assert refused.value.status_code == 403 and refused.value.error is not None
    assert refused.value.error.code == "Forbidden"
    assert 'Operation "purge" is not allowed because purge protection is enabled' in str(refused.value.error.message)
    assert (await client.get_deleted_secret("kept")).name == "kept"


async def test_apps_outside_the_vaults_access_are_forbidden(
    client: SecretClient, vault: KeyVaultSimulator, https: aiohttp.ClientSession
) -> None:
    other_app = "44444444-4444-4444-8444-444444444444"
    assert (await admin(https, vault, "access", {"allowed_app_ids": [other_app]})).status == 200
    with pytest.raises(HttpResponseError) as denied:
        await client.set_secret("locked", "v")
    assert denied.value.status_code == 403 and denied.value.error is not None
    assert denied.value.error.innererror == {"code": "AccessDenied"}
    message = str(denied.value.error.message)
    assert f"'appid={PROVISIONING_APP_ID};" in message and "does not have secrets set permission" in message
    assert vault.state.secret("locked") is None

    await admin(https, vault, "access", {"allowed_app_ids": [other_app, PROVISIONING_APP_ID]})
    assert (await client.set_secret("locked", "v")).value == "v"
    invalid = await admin(https, vault, "access", {"allowed_app_ids": "everyone"})
    assert invalid.status == 400


async def test_throttling_is_retried_after_retry_after(
    client: SecretClient, vault: KeyVaultSimulator, graph: GraphSession, https: aiohttp.ClientSession
) -> None:
    await client.set_secret("busy", "v")
    await admin(https, vault, "faults", {"throttle_next": 1, "retry_after_seconds": 0.25})
    throttled = await vault_call(https, vault, "GET", "/secrets/busy", token=await vault_token(graph))
    assert (throttled.status, throttled.error_code, throttled.headers["Retry-After"]) == (429, "Throttled", "0.25")

    await admin(https, vault, "faults", {"throttle_next": 2})
    started = time.monotonic()
    assert (await client.get_secret("busy")).value == "v"
    # Both waits were the Retry-After's, not the SDK's own backoff (which would wait 1.6 s before the 2nd retry).
    assert 0.5 <= time.monotonic() - started < 1.2
    assert count(vault, "GET /secrets/{name}/{version}") == 3
    assert vault.state.throttle_next == 0


async def test_an_expired_token_is_refused_and_a_new_one_fetched(
    client: SecretClient, vault: KeyVaultSimulator, entra: EntraSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.set_secret("kept", "v")
    assert isinstance(vault.clock, OffsetClock) and vault.clock is entra.clock
    vault.clock.advance(3600)

    # The vault's clock says the token has expired while the client's still trusts it: refused.
    with pytest.raises(ClientAuthenticationError) as refused:
        await client.get_secret("kept")
    assert "[TokenExpired]" in str(refused.value)
    assert len(entra.state.sign_ins(PROVISIONING_APP_ID)) == 1

    # Once the client's clock has moved on as well, the SDK gets a new token by itself.
    wall = time.time
    monkeypatch.setattr(time, "time", lambda: wall() + 3600)
    assert (await client.get_secret("kept")).value == "v"
    assert len(entra.state.sign_ins(PROVISIONING_APP_ID)) == 2


async def test_admin_state_shows_values_only_when_asked(
    client: SecretClient, vault: KeyVaultSimulator, https: aiohttp.ClientSession
) -> None:
    await client.set_secret("shown", "s3cr3t", tags={"t": "1"})
    await client.set_secret("hidden", "x")
    instant = await admin(https, vault, "faults", {"delete_delay_seconds": 0})
    assert instant.body["faults"]["deleteDelaySeconds"] == 0
    await client.delete_secret("hidden", _polling_interval=POLL)
    assert count(vault, "GET /deletedsecrets/{name}") == 1  # done at once: the first poll finds it

    state = (await admin(https, vault, "state")).body
    [secret] = state["secrets"]
    assert secret["name"] == "shown" and secret["versions"][0]["tags"] == {"t": "1"}
    assert "s3cr3t" not in str(state) and "value" not in secret["versions"][0]
    assert [d["name"] for d in state["deleted"]] == ["hidden"] and state["deleted"][0]["deletionComplete"]
    assert state["counters"]["byRoute"]["PUT /secrets/{name}"] == 3  # one challenge probe, two secrets
    with_values = (await admin(https, vault, "state?values=1")).body
    assert with_values["secrets"][0]["versions"][0]["value"] == "s3cr3t"


async def test_harness_runs_a_vault_that_keyvault_env_selects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_simulators(tmp_path) as sims:
        assert not set(sims.keyvault_env()) & set(sims.env())  # the local store stays the default
        for name, value in {**sims.env(), **sims.keyvault_env()}.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        store, entra = settings.secret_store, settings.entra
        assert (store.backend, store.vault_url, store.ca_bundle) == (
            "azure-key-vault",
            sims.keyvault.url,
            sims.ca.ca_file,
        )

        http_challenge_cache.clear()
        assert store.vault_url and entra.tenant_id and entra.client_id and entra.client_secret
        tls = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=store.ca_bundle))
        async with (
            aiohttp.ClientSession(connector=tls) as http,
            ClientSecretCredential(
                entra.tenant_id,
                entra.client_id,
                entra.client_secret.get_secret_value(),
                authority=entra.authority_host,
                disable_instance_discovery=True,
                transport=transport(http),
            ) as identity,
            SecretClient(
                store.vault_url, identity, verify_challenge_resource=False, transport=transport(http)
            ) as vault,
        ):
            await vault.set_secret("from-settings", "v")
        assert sims.keyvault.state.secret("from-settings") is not None
