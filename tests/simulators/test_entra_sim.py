"""The Entra ID + Graph simulator over real HTTPS: MSAL against the login endpoints, raw aiohttp against
Graph, and the simulator's state checked after each step."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import msal
import pytest
import requests
from cryptography import x509

from simulators.clock import OffsetClock
from simulators.entra import GRAPH_APP_ID, PROVISIONING_APP_ID, SIM_TENANT_ID, EntraSimConfig, EntraSimulator
from simulators.entra.catalog import KEY_VAULT_APP_ID, ROLE_BY_VALUE
from simulators.tls import LocalCA, create_client_certificate
from tests.conftest import StartEntra
from tests.simulators.conftest import GRAPH_DEFAULT_SCOPE, GraphSession

USER_READ_ALL = ROLE_BY_VALUE["User.Read.All"].id


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def msal_session(ca: LocalCA) -> requests.Session:
    # REQUESTS_CA_BUNDLE is set on this machine and would override verify= unless trust_env is off.
    session = requests.Session()
    session.trust_env = False
    session.verify = str(ca.ca_file)
    return session


def confidential_app(sim: EntraSimulator, ca: LocalCA, credential: Any) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        sim.config.provisioning_client_id,
        client_credential=credential,
        authority=sim.authority,
        instance_discovery=False,
        http_client=msal_session(ca),
    )


async def msal_client_token(sim: EntraSimulator, ca: LocalCA, credential: Any) -> dict[str, Any]:
    def acquire() -> dict[str, Any]:
        result: dict[str, Any] = confidential_app(sim, ca, credential).acquire_token_for_client(
            scopes=[GRAPH_DEFAULT_SCOPE]
        )
        return result

    return await asyncio.to_thread(acquire)


async def new_app(graph: GraphSession, name: str, **extra: Any) -> dict[str, Any]:
    reply = await graph.call("POST", "/v1.0/applications", json={"displayName": name, **extra})
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body
    return body


async def new_app_with_sp(graph: GraphSession, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    app = await new_app(graph, name, signInAudience="AzureADMyOrg")
    reply = await graph.call("POST", "/v1.0/servicePrincipals", json={"appId": app["appId"]})
    assert reply.status == 201, reply.body
    return app, reply.body


async def add_password(graph: GraphSession, app_id: str, **credential: Any) -> dict[str, Any]:
    reply = await graph.call(
        "POST", f"/v1.0/applications/{app_id}/addPassword", json={"passwordCredential": credential}
    )
    assert reply.status == 200, reply.body
    body: dict[str, Any] = reply.body
    return body


def advance(sim: EntraSimulator, seconds: float) -> None:
    assert isinstance(sim.clock, OffsetClock)
    sim.clock.advance(seconds)


# --- login: discovery, MSAL with a secret, a certificate, device code ---------------------------
async def test_openid_configuration_and_unknown_tenant(graph: GraphSession) -> None:
    sim = graph.sim
    async with graph.http.get(f"{sim.authority}/v2.0/.well-known/openid-configuration") as response:
        assert response.status == 200
        config = await response.json()
    assert config["token_endpoint"] == f"{sim.url}/{SIM_TENANT_ID}/oauth2/v2.0/token"
    assert config["device_authorization_endpoint"] == f"{sim.url}/{SIM_TENANT_ID}/oauth2/v2.0/devicecode"
    assert config["issuer"] == f"{sim.url}/{SIM_TENANT_ID}/v2.0"
    assert {"authorization_endpoint", "jwks_uri"} <= config.keys()

    async with graph.http.get(f"{sim.url}/not-a-tenant/v2.0/.well-known/openid-configuration") as response:
        assert response.status == 400
        error = await response.json()
    assert error["error"] == "invalid_tenant"
    assert error["error_codes"] == [90002]


async def test_msal_client_secret_token_records_sign_ins(graph: GraphSession, ca: LocalCA) -> None:
    sim = graph.sim
    result = await msal_client_token(sim, ca, sim.config.provisioning_secret)
    assert result["token_type"] == "Bearer" and result["expires_in"] == 3599
    token = claims(result["access_token"])
    assert token["appid"] == PROVISIONING_APP_ID and token["tid"] == SIM_TENANT_ID and token["idtyp"] == "app"
    assert sorted(token["roles"]) == sorted(sim.config.provisioning_roles)
    app = sim.state.application_by_app_id(PROVISIONING_APP_ID)
    assert app is not None
    [secret] = sim.state.password_credentials(app.id)
    [success] = sim.state.sign_ins(PROVISIONING_APP_ID)
    assert success.error_code == 0 and success.credential_key_id == secret.key_id
    assert success.ip_address == "127.0.0.1" and success.event_type == "servicePrincipal"

    failed = await msal_client_token(sim, ca, "not-the-secret")
    assert failed["error"] == "invalid_client" and failed["error_codes"] == [7000215]
    newest = sim.state.sign_ins(PROVISIONING_APP_ID)[0]
    assert newest.error_code == 7000215 and newest.credential_key_id is None

    unknown = await graph.token_response(client_id="33333333-3333-4333-8333-333333333333")
    assert (unknown.status, unknown.body["error"], unknown.body["error_codes"]) == (
        400,
        "unauthorized_client",
        [700016],
    )
    no_default = await graph.token_response(scope="https://graph.microsoft.com/User.Read")
    assert (no_default.status, no_default.body["error"]) == (400, "invalid_scope")


async def test_client_credentials_for_key_vault(graph: GraphSession) -> None:
    """Key Vault's /.default, named by its URI or its app ID, gets an app token for the vault without Graph
    roles; Graph refuses that token, and its own tokens keep their roles."""
    for scope in ("https://vault.azure.net/.default", f"{KEY_VAULT_APP_ID}/.default"):
        reply = await graph.token_response(scope=scope)
        assert reply.status == 200, reply.body
        token = claims(reply.body["access_token"])
        assert (token["aud"], token["appid"], token["idtyp"]) == ("https://vault.azure.net", PROVISIONING_APP_ID, "app")
        assert "roles" not in token
    refused = await graph.call("GET", "/v1.0/applications", token=reply.body["access_token"])
    assert (refused.status, refused.error_code) == (401, "InvalidAuthenticationToken")

    graph_token = claims(await graph.token())
    assert graph_token["aud"] == "https://graph.microsoft.com" and graph_token["roles"]
    assert len(graph.sim.state.sign_ins(PROVISIONING_APP_ID)) == 3
    other = await graph.token_response(scope="https://storage.azure.com/.default")
    assert (other.status, other.body["error"], other.body["error_codes"]) == (400, "invalid_resource", [500011])


async def test_msal_certificate_tokens(
    start_entra: StartEntra, https: aiohttp.ClientSession, ca: LocalCA, tmp_path: Path
) -> None:
    cert = create_client_certificate(tmp_path, "provisioning")
    sim = await start_entra(EntraSimConfig(provisioning_certificate_pem=cert.cert_pem))
    app = sim.state.application_by_app_id(PROVISIONING_APP_ID)
    assert app is not None
    [key] = sim.state.key_credentials(app.id)
    assert key.sha1_thumbprint == cert.thumbprint_sha1_hex

    private_key = cert.private_key_pem.decode()
    # RS256 with x5t (SHA-1 thumbprint), then PS256 with x5t#S256 (MSAL given the certificate).
    for credential in (
        {"private_key": private_key, "thumbprint": cert.thumbprint_sha1_hex},
        {"private_key": private_key, "public_certificate": cert.cert_pem.decode()},
    ):
        result = await msal_client_token(sim, ca, credential)
        assert "access_token" in result, result
        assert claims(result["access_token"])["appidacr"] == "2"
    assert [s.credential_key_id for s in sim.state.sign_ins(PROVISIONING_APP_ID)] == [key.key_id, key.key_id]
    assert sim.state.sign_ins(PROVISIONING_APP_ID)[0].credential_type == "certificate"

    stranger = create_client_certificate(tmp_path, "stranger")
    rejected = await msal_client_token(
        sim, ca, {"private_key": stranger.private_key_pem.decode(), "thumbprint": stranger.thumbprint_sha1_hex}
    )
    assert rejected["error"] == "invalid_client" and rejected["error_codes"] == [700027]

    # Registering it through the admin API makes it valid.
    registered = await GraphSession(https, sim).admin(
        "POST", f"/_sim/apps/{PROVISIONING_APP_ID}/certificates", {"pem": stranger.cert_pem.decode()}
    )
    assert registered.status == 201 and registered.body["sha1Thumbprint"] == stranger.thumbprint_sha1_hex
    # customKeyIdentifier is Edm.Binary: base64 of the thumbprint's bytes.
    assert base64.b64decode(registered.body["customKeyIdentifier"]).hex().upper() == stranger.thumbprint_sha1_hex
    accepted = await msal_client_token(
        sim, ca, {"private_key": stranger.private_key_pem.decode(), "thumbprint": stranger.thumbprint_sha1_hex}
    )
    assert "access_token" in accepted


async def test_sign_ins_keep_the_token_requests_client_request_id(graph: GraphSession) -> None:
    """Entra records a token request's client-request-id (MSAL sends a fresh one each time) as the
    sign-in's correlationId, for failures too, and makes one up when the header is missing."""
    token = await graph.token()
    ours, failed = str(uuid.uuid4()), str(uuid.uuid4())
    assert (await graph.token_response(headers={"client-request-id": ours})).status == 200
    rejected = await graph.token_response(secret="wrong", headers={"client-request-id": failed})
    assert rejected.status == 401 and rejected.body["correlation_id"] == failed
    anonymous = await graph.token_response(secret="wrong")
    made_up = anonymous.body["correlation_id"]
    assert str(uuid.UUID(made_up)) == made_up and made_up in anonymous.body["error_description"]

    newest_first = [made_up, failed, ours]
    assert [s.correlation_id for s in graph.sim.state.sign_ins(PROVISIONING_APP_ID)[:3]] == newest_first
    filter_ = f"appId eq '{PROVISIONING_APP_ID}' and signInEventTypes/any(t: t eq 'servicePrincipal')"
    reply = await graph.call("GET", f"/beta/auditLogs/signIns?$filter={filter_}", token=token)
    assert [s["correlationId"] for s in reply.body["value"][:3]] == newest_first
    assert [s["status"]["errorCode"] for s in reply.body["value"][:3]] == [7000215, 7000215, 0]


async def test_device_code_flow_with_msal(graph: GraphSession, ca: LocalCA) -> None:
    sim = graph.sim
    # MSAL's constructor fetches the discovery document: keep it off the event loop serving it.
    public = await asyncio.to_thread(
        msal.PublicClientApplication,
        PROVISIONING_APP_ID,
        authority=sim.authority,
        instance_discovery=False,
        http_client=msal_session(ca),
    )
    flow = await asyncio.to_thread(public.initiate_device_flow, scopes=[GRAPH_DEFAULT_SCOPE])
    assert flow["expires_in"] == 900 and flow["verification_uri"] == f"{sim.url}/devicelogin"
    assert len(flow["user_code"]) == 9 and flow["user_code"] in flow["message"]

    def poll_once() -> dict[str, Any]:
        result: dict[str, Any] = public.acquire_token_by_device_flow(flow, exit_condition=lambda _: True)
        return result

    pending = await asyncio.to_thread(poll_once)
    assert pending["error"] == "authorization_pending"

    approved = await graph.admin("POST", "/_sim/device/approve", {"user_code": flow["user_code"]})
    assert approved.status == 200
    with pytest.warns(UserWarning, match="Attempted too soon"):
        result = await asyncio.to_thread(poll_once)
    assert "access_token" in result, result
    assert result["id_token_claims"]["preferred_username"] == "admin@contoso-sim.onmicrosoft.com"
    token = claims(result["access_token"])
    assert token["idtyp"] == "user" and "Application.ReadWrite.All" in token["scp"].split()

    # The admin's delegated token works on Graph, and the refresh token gets a new one.
    reply = await graph.call("GET", "/v1.0/applications", token=result["access_token"])
    assert reply.status == 200
    refreshed = await asyncio.to_thread(
        public.acquire_token_by_refresh_token, result["refresh_token"], scopes=[GRAPH_DEFAULT_SCOPE]
    )
    assert claims(refreshed["access_token"])["upn"] == "admin@contoso-sim.onmicrosoft.com"
    assert [s.event_type for s in sim.state.sign_ins(PROVISIONING_APP_ID)] == ["nonInteractiveUser", "interactiveUser"]


# --- applications ------------------------------------------------------------------------------
async def test_create_if_missing_then_update_and_lookups(graph: GraphSession) -> None:
    sim = graph.sim
    path = "/v1.0/applications(uniqueName='yeastar-pbx-1')"
    body = {
        "displayName": "Yeastar PBX",
        "signInAudience": "AzureADMyOrg",
        "web": {"redirectUris": ["https://pbx.example.com/oauth/callback"]},
    }
    missing = await graph.call("PATCH", path, json=body)
    assert (missing.status, missing.error_code) == (404, "Request_ResourceNotFound")

    created = await graph.call(
        "PATCH", path, json=body, headers={"Prefer": "create-if-missing", "client-request-id": "abc-123"}
    )
    assert created.status == 201
    assert created.headers["client-request-id"] == "abc-123" and created.headers["request-id"]
    app = created.body
    assert app["uniqueName"] == "yeastar-pbx-1" and app["signInAudience"] == "AzureADMyOrg"
    assert app["passwordCredentials"] == [] and app["createdDateTime"].endswith("Z")

    uris = ["https://pbx.example.com/oauth/callback", "https://pbx.example.com/sso/callback"]
    updated = await graph.call(
        "PATCH",
        path,
        json={"displayName": "Yeastar PBX", "web": {"redirectUris": uris}},
        headers={"Prefer": "create-if-missing"},
    )
    assert (updated.status, updated.body) == (204, None)
    stored = sim.state.application_by_unique_name("yeastar-pbx-1")
    assert stored is not None and stored.id == app["id"] and stored.props["web"]["redirectUris"] == uris

    for key in (f"/{app['id']}", f"(appId='{app['appId']}')", "(uniqueName='yeastar-pbx-1')"):
        reply = await graph.call("GET", f"/v1.0/applications{key}?$select=id,web")
        assert reply.status == 200 and reply.body["id"] == app["id"] and "displayName" not in reply.body
    listed = await graph.call("GET", f"/v1.0/applications?$filter=appId eq '{app['appId']}'")
    assert [a["id"] for a in listed.body["value"]] == [app["id"]]

    immutable = await graph.call("PATCH", f"/v1.0/applications/{app['id']}", json={"uniqueName": "other"})
    assert immutable.status == 400 and "immutable" in immutable.body["error"]["message"]

    plain = await new_app(graph, "Plain app")
    assert plain["signInAudience"] == "AzureADandPersonalMicrosoftAccount"

    deleted = await graph.call("DELETE", f"/v1.0/applications/{plain['id']}")
    assert deleted.status == 204
    assert sim.state.application(plain["id"]) is None and plain["id"] in sim.state.deleted_applications


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"displayName": "x", "colour": "blue"}, "Invalid property 'colour'."),
        ({"signInAudience": "AzureADMyOrg"}, "Property 'displayName' is required"),
        ({"displayName": "x", "web": {"redirectUris": ["http://pbx.example.com/cb"]}}, "property 'web'"),
        ({"displayName": "x", "web": {"redirectUris": ["https://*.example.com/cb"]}}, "property 'web'"),
        ({"displayName": "x", "web": {"redirectUris": ["https://e.com/" + "a" * 250]}}, "property 'web'"),
        ({"displayName": "x", "web": {"redirectUris": [f"https://e.com/{n}" for n in range(257)]}}, "'web'"),
        (
            {
                "displayName": "x",
                "requiredResourceAccess": [
                    {"resourceAppId": GRAPH_APP_ID, "resourceAccess": [{"id": SIM_TENANT_ID, "type": "Role"}]}
                ],
            },
            "property 'requiredResourceAccess'",
        ),
    ],
)
async def test_application_validation(graph: GraphSession, body: dict[str, Any], message: str) -> None:
    before = len(graph.sim.state.applications())
    reply = await graph.call("POST", "/v1.0/applications", json=body)
    assert reply.status == 400 and reply.error_code == "Request_BadRequest"
    assert message in reply.body["error"]["message"]
    assert set(reply.body["error"]["innerError"]) == {"date", "request-id", "client-request-id"}
    assert len(graph.sim.state.applications()) == before


async def test_valid_application_body_is_accepted(graph: GraphSession) -> None:
    app = await new_app(
        graph,
        "Yeastar",
        signInAudience="AzureADMyOrg",
        web={"redirectUris": ["http://localhost:8080/cb", "https://pbx.example.com/cb"]},
        requiredResourceAccess=[
            {"resourceAppId": GRAPH_APP_ID, "resourceAccess": [{"id": USER_READ_ALL, "type": "Role"}]}
        ],
    )
    stored = graph.sim.state.application(app["id"])
    assert stored is not None and stored.props["requiredResourceAccess"][0]["resourceAccess"][0]["id"] == USER_READ_ALL


async def test_permissions_are_checked_against_token_roles(
    start_entra: StartEntra, https: aiohttp.ClientSession
) -> None:
    sim = await start_entra(EntraSimConfig(provisioning_roles=["Application.Read.All"]))
    graph = GraphSession(https, sim)
    assert (await graph.call("GET", "/v1.0/applications")).status == 200
    for method, path in (("POST", "/v1.0/applications"), ("GET", "/v1.0/users"), ("GET", "/beta/auditLogs/signIns")):
        reply = await graph.call(method, path, json={"displayName": "x"})
        assert (reply.status, reply.error_code) == (403, "Authorization_RequestDenied")
        assert reply.body["error"]["message"] == "Insufficient privileges to complete the operation."
    assert len(sim.state.applications()) == 1  # only the provisioning app

    async with https.get(f"{sim.url}/v1.0/applications") as response:
        assert response.status == 401
        assert (await response.json())["error"]["code"] == "InvalidAuthenticationToken"
    token = await graph.token()
    advance(sim, 3600)
    expired = await graph.call("GET", "/v1.0/applications", token=token)
    assert expired.status == 401 and "expired" in expired.body["error"]["message"]


async def test_tokens_can_follow_wall_time(start_entra: StartEntra, https: aiohttp.ClientSession) -> None:
    sim = await start_entra(EntraSimConfig(tokens_follow_clock=False))
    graph = GraphSession(https, sim)
    token = await graph.token()
    advance(sim, 30 * 86400)  # e.g. a workflow test jumping to the next rotation
    assert (await graph.call("GET", "/v1.0/applications", token=token)).status == 200


# --- replication, consent, secrets ---------------------------------------------------------------
async def test_replication_delay_on_service_principal_and_role_assignment(
    start_entra: StartEntra, https: aiohttp.ClientSession
) -> None:
    sim = await start_entra(EntraSimConfig(replication_delay_seconds=30))
    graph = GraphSession(https, sim)
    app = await new_app(graph, "Yeastar", signInAudience="AzureADMyOrg")
    early = await graph.call("POST", "/v1.0/servicePrincipals", json={"appId": app["appId"]})
    assert early.status == 400 and early.body["error"]["message"] == (
        f"The appId '{app['appId']}' of the service principal does not reference a valid application object."
    )
    advance(sim, 31)
    created = await graph.call("POST", "/v1.0/servicePrincipals", json={"appId": app["appId"]})
    assert created.status == 201
    sp = created.body
    again = await graph.call("POST", "/v1.0/servicePrincipals", json={"appId": app["appId"]})
    assert (again.status, again.error_code) == (409, "Request_MultipleObjectsWithSameKeyValue")

    graph_sp = (await graph.call("GET", f"/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')")).body
    assert {r["value"] for r in graph_sp["appRoles"]} >= {"Policy.Read.All", "AuditLog.Read.All", "Contacts.Read"}
    assign_path = f"/v1.0/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo"
    assignment = {"principalId": sp["id"], "resourceId": graph_sp["id"], "appRoleId": USER_READ_ALL}
    too_soon = await graph.call("POST", assign_path, json=assignment)
    assert (too_soon.status, too_soon.body["error"]["message"]) in {
        (
            404,
            f"Resource '{sp['id']}' does not exist or one of its queried reference-property objects are not present.",
        ),
        (400, "Not a valid reference update."),
    }
    advance(sim, 31)
    granted = await graph.call("POST", assign_path, json=assignment)
    assert granted.status == 201 and granted.body["appRoleId"] == USER_READ_ALL
    duplicate = await graph.call("POST", assign_path, json=assignment)
    assert duplicate.status == 400
    assert duplicate.body["error"]["message"] == "Permission being assigned already exists on the object."
    unknown_role = await graph.call("POST", assign_path, json={**assignment, "appRoleId": SIM_TENANT_ID})
    assert unknown_role.status == 400

    [stored] = sim.state.app_role_assignments(sp["id"])
    assert stored.app_role_id == USER_READ_ALL and stored.resource_id == graph_sp["id"]
    mine = await graph.call("GET", f"/v1.0/servicePrincipals/{sp['id']}/appRoleAssignments")
    assert [a["id"] for a in mine.body["value"]] == [granted.body["id"]]
    removed = await graph.call("DELETE", f"{assign_path}/{granted.body['id']}")
    assert removed.status == 204 and sim.state.app_role_assignments(sp["id"]) == []


async def test_new_secret_works_after_replication_and_adds_conflict(
    start_entra: StartEntra, https: aiohttp.ClientSession
) -> None:
    sim = await start_entra(EntraSimConfig(replication_delay_seconds=10))
    graph = GraphSession(https, sim)
    app = await new_app(graph, "Yeastar")
    advance(sim, 11)
    assert (await graph.call("POST", "/v1.0/servicePrincipals", json={"appId": app["appId"]})).status == 201

    secret = await add_password(graph, app["id"], displayName="op-1")
    assert secret["hint"] == secret["secretText"][:3] and secret["displayName"] == "op-1"
    conflict = await graph.call("POST", f"/v1.0/applications/{app['id']}/addPassword", json={})
    assert (conflict.status, conflict.error_code) == (409, "Directory_ConcurrencyViolation")

    early = await graph.token_response(app["appId"], secret["secretText"])
    assert (early.status, early.body["error"], early.body["error_codes"]) == (401, "invalid_client", [7000215])
    advance(sim, 11)
    token = claims(await graph.token(app["appId"], secret["secretText"]))
    assert token["appid"] == app["appId"] and "roles" not in token  # no role assignments yet

    [stored] = sim.state.password_credentials(app["id"])
    assert stored.key_id == secret["keyId"] and stored.secret_sha256 != secret["secretText"]
    assert [s.credential_key_id for s in sim.state.sign_ins(app["appId"])] == [secret["keyId"], None]


async def test_password_policy_dates_and_remove(graph: GraphSession) -> None:
    app = await new_app(graph, "Yeastar")
    start = datetime(2030, 1, 1, tzinfo=UTC)
    custom = await add_password(
        graph, app["id"], startDateTime=start.isoformat(), endDateTime=(start + timedelta(days=30)).isoformat()
    )
    assert custom["startDateTime"] == "2030-01-01T00:00:00Z" and custom["endDateTime"] == "2030-01-31T00:00:00Z"
    default = await add_password(graph, app["id"])
    lifetime = datetime.fromisoformat(default["endDateTime"]) - datetime.fromisoformat(default["startDateTime"])
    assert lifetime.days in (730, 731)

    assert (await graph.admin("POST", "/_sim/policy", {"maxLifetimeDays": 90})).status == 200
    policy = await graph.call("GET", "/v1.0/policies/defaultAppManagementPolicy")
    assert policy.body["isEnabled"] is True
    assert policy.body["applicationRestrictions"]["passwordCredentials"][0]["maxLifetime"] == "P90D"
    too_long = await graph.call("POST", f"/v1.0/applications/{app['id']}/addPassword", json={})
    assert (too_long.status, too_long.error_code) == (400, "CredentialInvalidLifetimeAsPerAppPolicy")
    end = (datetime.now(UTC) + timedelta(days=60)).isoformat()
    await add_password(graph, app["id"], endDateTime=end)

    await graph.admin("POST", "/_sim/policy", {"passwordAddition": True})
    blocked = await graph.call("POST", f"/v1.0/applications/{app['id']}/addPassword", json={})
    assert (blocked.status, blocked.error_code) == (400, "CredentialTypeNotAllowedAsPerAppPolicy")

    assert len(graph.sim.state.password_credentials(app["id"])) == 3
    removed = await graph.call(
        "POST", f"/v1.0/applications/{app['id']}/removePassword", json={"keyId": custom["keyId"]}
    )
    assert removed.status == 204
    assert custom["keyId"] not in {c.key_id for c in graph.sim.state.password_credentials(app["id"])}
    unknown = await graph.call(
        "POST", f"/v1.0/applications/{app['id']}/removePassword", json={"keyId": custom["keyId"]}
    )
    assert unknown.status == 404


async def test_clock_advance_expires_a_secret(graph: GraphSession) -> None:
    app, _ = await new_app_with_sp(graph, "Yeastar")
    secret = await add_password(graph, app["id"], endDateTime=(datetime.now(UTC) + timedelta(days=1)).isoformat())
    assert (await graph.token_response(app["appId"], secret["secretText"])).status == 200

    advanced = await graph.admin("POST", "/_sim/clock/advance", {"seconds": 2 * 86400})
    assert advanced.body["offsetSeconds"] == 2 * 86400
    expired = await graph.token_response(app["appId"], secret["secretText"])
    assert (expired.status, expired.body["error_codes"]) == (401, [7000222])
    assert graph.sim.state.sign_ins(app["appId"])[0].error_code == 7000222


async def test_interactive_consent_leaves_a_grant_and_a_sign_in(graph: GraphSession) -> None:
    app = await new_app(graph, "Yeastar")
    consent = {"appId": app["appId"], "scope": "User.Read.All Contacts.Read"}
    first = await graph.admin("POST", "/_sim/interactive-consent", consent)
    assert first.status == 200
    sp_id = first.body["servicePrincipalId"]  # consent created the service principal
    await graph.admin("POST", "/_sim/interactive-consent", {**consent, "scope": "Presence.Read.All"})

    grants = await graph.call("GET", f"/v1.0/oauth2PermissionGrants?$filter=clientId eq '{sp_id}'")
    [grant] = grants.body["value"]
    assert grant["consentType"] == "AllPrincipals" and grant["principalId"] is None
    assert grant["scope"].split() == ["User.Read.All", "Contacts.Read", "Presence.Read.All"]
    sign_ins = graph.sim.state.sign_ins(app["appId"])
    assert [s.event_type for s in sign_ins] == ["interactiveUser", "interactiveUser"]


# --- faults ------------------------------------------------------------------------------------
async def test_every_nth_write_is_throttled(start_entra: StartEntra, https: aiohttp.ClientSession) -> None:
    sim = await start_entra(EntraSimConfig(throttle_every_n_writes=2, retry_after_seconds=0.5))
    graph = GraphSession(https, sim)
    await new_app(graph, "one")
    throttled = await graph.call("POST", "/v1.0/applications", json={"displayName": "two"})
    assert (throttled.status, throttled.error_code) == (429, "TooManyRequests")
    assert throttled.headers["Retry-After"] == "0.5"
    assert throttled.headers["x-ms-throttle-scope"].endswith(f"/{SIM_TENANT_ID}/{PROVISIONING_APP_ID}")
    assert (await graph.call("GET", "/v1.0/applications")).status == 200  # reads are not throttled
    await new_app(graph, "two")
    assert sorted(a.display_name for a in sim.state.applications())[-2:] == ["one", "two"]
    assert sim.state.write_count == 3


async def test_service_errors_and_dropped_connections(graph: GraphSession) -> None:
    sim = graph.sim
    await graph.call("GET", "/v1.0/applications")  # gets the token before faults start
    assert (await graph.admin("POST", "/_sim/faults", {"error_rate": 1.0})).status == 200
    failed = await graph.call("GET", "/v1.0/applications")
    assert (failed.status, failed.error_code) == (503, "ServiceUnavailable")
    assert failed.body["error"]["innerError"]["request-id"] == failed.headers["request-id"]

    await graph.admin("POST", "/_sim/faults", {"error_rate": 0, "drop_rate": 1.0})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await graph.call("GET", "/v1.0/applications")
    assert sim.state.request_log[-1].status == 0

    bad = await graph.admin("POST", "/_sim/faults", {"drop_rate": 2})
    assert bad.status == 400
    await graph.admin("POST", "/_sim/faults", {"drop_rate": 0})
    assert (await graph.call("GET", "/v1.0/applications")).status == 200
    # aiohttp retries a GET dropped on a reused connection once, so count the drops the server saw.
    dropped = sum(1 for record in sim.state.request_log if record.status == 0)
    assert dropped >= 1 and sim.state.request_counts["GET /v1.0/applications"] == 3 + dropped


async def test_writes_can_be_committed_and_their_answer_lost(graph: GraphSession) -> None:
    sim = graph.sim
    app = await new_app(graph, "Yeastar")
    faults = await graph.admin("POST", "/_sim/faults", {"drop_after_commit_rate": 1.0})
    assert faults.body["drop_after_commit_rate"] == 1.0
    assert (await graph.call("GET", f"/v1.0/applications/{app['id']}")).status == 200  # reads still answer

    with pytest.raises(aiohttp.ServerDisconnectedError):
        await graph.call(
            "POST", f"/v1.0/applications/{app['id']}/addPassword", json={"passwordCredential": {"displayName": "op-1"}}
        )
    [added] = sim.state.password_credentials(app["id"])  # carried out, although no answer arrived
    assert added.display_name == "op-1"

    remove = f"/v1.0/applications/{app['id']}/removePassword"
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await graph.call("POST", remove, json={"keyId": added.key_id})
    assert sim.state.password_credentials(app["id"]) == []
    # The re-sent request finds the key gone; a refused write commits nothing, so it is answered.
    again = await graph.call("POST", remove, json={"keyId": added.key_id})
    assert (again.status, again.error_code) == (404, "Request_ResourceNotFound")
    assert [r.status for r in sim.state.request_log if r.route.endswith("Password")] == [0, 0, 404]

    assert (await graph.admin("POST", "/_sim/faults", {"drop_after_commit_rate": 1.5})).status == 400


async def test_provisioning_credential_expiry_is_readable_and_can_be_moved(
    start_entra: StartEntra, https: aiohttp.ClientSession, ca: LocalCA, tmp_path: Path
) -> None:
    cert = create_client_certificate(tmp_path, "provisioning")
    sim = await start_entra(EntraSimConfig(provisioning_certificate_pem=cert.cert_pem))
    graph = GraphSession(https, sim)
    configured = sim.provisioning_credentials
    assert configured.secret is not None and configured.certificate is not None
    app = (await graph.call("GET", f"/v1.0/applications(appId='{PROVISIONING_APP_ID}')")).body
    [secret] = app["passwordCredentials"]
    assert (secret["keyId"], secret["hint"]) == (configured.secret.key_id, sim.config.provisioning_secret[:3])
    lifetime = datetime.fromisoformat(secret["endDateTime"]) - datetime.now(UTC)
    assert timedelta(days=729) < lifetime <= timedelta(days=sim.config.provisioning_secret_lifetime_days)
    [key] = app["keyCredentials"]
    assert key["keyId"] == configured.certificate.key_id
    assert key["customKeyIdentifier"] == base64.b64encode(bytes.fromhex(cert.thumbprint_sha1_hex)).decode()
    not_after = x509.load_pem_x509_certificate(cert.cert_pem).not_valid_after_utc
    assert datetime.fromisoformat(key["endDateTime"]) == not_after
    assert (key["type"], key["usage"]) == ("AsymmetricX509Cert", "Verify")

    moved = await graph.admin("POST", "/_sim/provisioning-credential", {"expires_in_days": -1})
    yesterday = await sim.clock.now() - timedelta(days=1)
    assert moved.status == 200
    for credential in (moved.body["passwordCredential"], moved.body["keyCredential"]):
        assert timedelta(0) <= yesterday - datetime.fromisoformat(credential["endDateTime"]) < timedelta(seconds=5)
    expired = await graph.token_response()
    assert (expired.status, expired.body["error"], expired.body["error_codes"]) == (401, "invalid_client", [7000222])
    assert f"client secret keys for app '{PROVISIONING_APP_ID}' are expired" in expired.body["error_description"]
    private_key = cert.private_key_pem.decode()
    rejected = await msal_client_token(sim, ca, {"private_key": private_key, "thumbprint": cert.thumbprint_sha1_hex})
    assert rejected["error_codes"] == [700027] and "The key used is expired." in rejected["error_description"]
    assert [s.error_code for s in sim.state.sign_ins(PROVISIONING_APP_ID)[:2]] == [700027, 7000222]

    await graph.admin("POST", "/_sim/provisioning-credential", {"expires_in_days": 30})
    assert (await graph.token_response()).status == 200
    for bad in ("soon", 1e12):
        assert (await graph.admin("POST", "/_sim/provisioning-credential", {"expires_in_days": bad})).status == 400


# --- reads: paging, sign-in logs ---------------------------------------------------------------
async def test_users_are_paged_with_absolute_next_links(start_entra: StartEntra, https: aiohttp.ClientSession) -> None:
    sim = await start_entra(EntraSimConfig(users=12))
    graph = GraphSession(https, sim)
    url, seen, pages = "/v1.0/users?$top=5", [], 0
    while url:
        reply = await graph.call("GET", url)
        assert reply.status == 200
        seen += reply.body["value"]
        pages += 1
        url = reply.body.get("@odata.nextLink", "")
        assert not url or url.startswith(f"{sim.url}/v1.0/users?")
    assert pages == 3 and len({u["id"] for u in seen}) == 13  # 12 seeded users + the admin
    assert all(u["mail"] and u["userPrincipalName"] for u in seen)
    groups = await graph.call("GET", "/v1.0/groups")
    assert len(groups.body["value"]) == 4  # three Microsoft 365 groups and the operators security group


async def test_beta_sign_in_logs_and_credential_activity(graph: GraphSession) -> None:
    sim = graph.sim
    before = datetime.now(UTC) - timedelta(seconds=1)
    token = await graph.token()
    await graph.token_response(secret="wrong")
    filter_ = (
        f"appId eq '{PROVISIONING_APP_ID}' and signInEventTypes/any(t: t eq 'servicePrincipal') "
        f"and createdDateTime ge {before.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    )
    reply = await graph.call("GET", f"/beta/auditLogs/signIns?$filter={filter_}", token=token)
    assert reply.status == 200
    errors = [s["status"]["errorCode"] for s in reply.body["value"]]
    assert errors == [7000215, 0]  # newest first
    app = sim.state.application_by_app_id(PROVISIONING_APP_ID)
    assert app is not None
    key_id = app.password_credentials[0].key_id
    assert reply.body["value"][1]["servicePrincipalCredentialKeyId"] == key_id

    activity = await graph.call("GET", "/beta/reports/appCredentialSignInActivities", token=token)
    [row] = activity.body["value"]
    assert row["keyId"] == key_id and row["keyType"] == "clientSecret" and row["appId"] == PROVISIONING_APP_ID

    await graph.admin("POST", "/_sim/license", {"p1": False})
    unlicensed = await graph.call("GET", "/beta/auditLogs/signIns", token=token)
    assert (unlicensed.status, unlicensed.error_code) == (403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant")


# --- persistence and the admin API -------------------------------------------------------------
async def test_state_survives_a_restart(start_entra: StartEntra, https: aiohttp.ClientSession, tmp_path: Path) -> None:
    state_file = tmp_path / "entra.json"
    config = EntraSimConfig(state_file=state_file)
    sim = await start_entra(config)
    graph = GraphSession(https, sim)
    app, sp = await new_app_with_sp(graph, "Yeastar")
    secret = await add_password(graph, app["id"])
    token = await graph.token()
    await sim.stop()

    saved = state_file.read_text()
    assert secret["secretText"] not in saved and config.provisioning_secret not in saved
    assert state_file.stat().st_mode & 0o077 == 0

    restarted = await start_entra(config)
    graph = GraphSession(https, restarted)
    reply = await graph.call("GET", f"/v1.0/applications/{app['id']}", token=token)  # old token still valid
    assert reply.status == 200 and reply.body["passwordCredentials"][0]["keyId"] == secret["keyId"]
    assert restarted.state.service_principal_by_app_id(app["appId"]) is not None
    assert (await graph.token_response(app["appId"], secret["secretText"])).status == 200
    assert restarted.state.sign_ins(PROVISIONING_APP_ID)  # the log survived too
    assert sp["id"] == restarted.state.service_principal_by_app_id(app["appId"]).id  # type: ignore[union-attr]


async def test_admin_state_has_hashes_not_secrets(graph: GraphSession) -> None:
    app = await new_app(graph, "Yeastar")
    secret = await add_password(graph, app["id"])
    reply = await graph.admin("GET", "/_sim/state")
    dump = json.dumps(reply.body)
    assert secret["secretText"] not in dump and graph.sim.config.provisioning_secret not in dump
    [stored] = [a for a in reply.body["applications"] if a["id"] == app["id"]]
    assert stored["passwordCredentials"][0]["secretSha256"]
    assert reply.body["counters"]["writes"] == 2
    unknown = await graph.admin("POST", "/_sim/faults", {"bogus": 1})
    assert unknown.status == 400
    clock = await graph.admin("GET", "/_sim/clock")
    assert clock.status == 200 and clock.body["now"].endswith("Z")
