"""The Entra simulator as an MSP sees it: a second (customer) tenant with its own directory, a multi-tenant
app consented there through the admin consent endpoint, certificates uploaded with Graph (keyCredentials),
and an administrator's delegated (device code) token whose reach is the administrator's."""

from __future__ import annotations

import asyncio
import base64
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import msal
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from simulators.entra import GRAPH_APP_ID, SIM_TENANT_ID, EntraSimConfig, EntraSimulator
from simulators.entra.catalog import CUSTOMER_DOMAIN, CUSTOMER_TENANT_ID, ROLE_BY_VALUE, TENANT_DOMAIN
from simulators.entra.config import ExtraTenant
from simulators.entra.seed import ADMIN_UPN
from simulators.tls import LocalCA, create_client_certificate
from tests.conftest import StartEntra
from tests.simulators.conftest import GRAPH_DEFAULT_SCOPE, GraphSession, Reply
from tests.simulators.test_entra_sim import claims, msal_session, new_app_with_sp

CUSTOMER_ADMIN = f"admin@{CUSTOMER_DOMAIN}"
GRAPH_CLI = "14d82eec-204b-4c2f-b7e8-296a70dab67e"
APP_WRITE_SCOPES = [
    "https://graph.microsoft.com/Application.ReadWrite.All",
    "https://graph.microsoft.com/AppRoleAssignment.ReadWrite.All",
]
PASSWORD = EntraSimConfig().user_password


@pytest.fixture
async def sim(start_entra: StartEntra) -> EntraSimulator:
    return await start_entra(extra_tenants=[ExtraTenant()], device_code_interval_seconds=1)


@pytest.fixture
def graph(https: aiohttp.ClientSession, sim: EntraSimulator) -> GraphSession:
    return GraphSession(https, sim)


async def client_token(graph: GraphSession, tenant: str, client_id: str, secret: str) -> Reply:
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    form["scope"] = GRAPH_DEFAULT_SCOPE
    async with graph.http.post(f"{graph.sim.url}/{tenant}/oauth2/v2.0/token", data=form) as response:
        return Reply(response.status, response.headers, await response.json())


async def multi_tenant_app(graph: GraphSession, roles: list[str]) -> tuple[dict[str, Any], str]:
    """A multi-tenant app of the home tenant requesting ``roles`` on Graph, with a service principal there
    and a secret."""
    access = [{"id": ROLE_BY_VALUE[r].id, "type": "Role"} for r in roles]
    app, _ = await new_app_with_sp(graph, "MSP tool")
    patch = {
        "signInAudience": "AzureADMultipleOrgs",
        "requiredResourceAccess": [{"resourceAppId": GRAPH_APP_ID, "resourceAccess": access}],
    }
    assert (await graph.call("PATCH", f"/v1.0/applications/{app['id']}", json=patch)).status == 204
    secret = await graph.call("POST", f"/v1.0/applications/{app['id']}/addPassword", json={})
    return app, str(secret.body["secretText"])


async def device_token(
    sim: EntraSimulator, graph: GraphSession, ca: LocalCA, upn: str, *, tenant: str = "organizations"
) -> dict[str, Any]:
    """A device code sign-in of ``upn`` for the app-management scopes through MSAL (Graph CLI tools)."""
    public = await asyncio.to_thread(
        msal.PublicClientApplication,
        GRAPH_CLI,
        authority=f"{sim.url}/{tenant}",
        instance_discovery=False,
        http_client=msal_session(ca),
    )
    flow = await asyncio.to_thread(public.initiate_device_flow, scopes=APP_WRITE_SCOPES)
    approved = await graph.admin(
        "POST", "/_sim/device/approve", {"user_code": flow["user_code"], "userPrincipalName": upn}
    )
    result: dict[str, Any] = await asyncio.to_thread(
        public.acquire_token_by_device_flow, flow, exit_condition=lambda _: True
    )
    result["approval"] = approved
    return result


# --- tenants -------------------------------------------------------------------------------------


async def test_each_tenant_has_its_own_discovery_directory_and_tokens(
    graph: GraphSession, sim: EntraSimulator, ca: LocalCA
) -> None:
    for segment, tenant in ((CUSTOMER_DOMAIN, CUSTOMER_TENANT_ID), (CUSTOMER_TENANT_ID, CUSTOMER_TENANT_ID)):
        async with graph.http.get(f"{sim.url}/{segment}/v2.0/.well-known/openid-configuration") as response:
            document = await response.json()
        assert document["issuer"] == f"{sim.url}/{tenant}/v2.0"
        assert document["token_endpoint"] == f"{sim.url}/{tenant}/oauth2/v2.0/token"
    async with graph.http.get(f"{sim.url}/organizations/v2.0/.well-known/openid-configuration") as response:
        document = await response.json()
    assert document["issuer"] == f"{sim.url}/{{tenantid}}/v2.0"
    assert document["device_authorization_endpoint"] == f"{sim.url}/organizations/oauth2/v2.0/devicecode"

    customer = sim.tenant_state(CUSTOMER_DOMAIN)
    assert customer.tenant_id == CUSTOMER_TENANT_ID and customer.user(CUSTOMER_ADMIN) is not None
    assert customer.service_principal_by_app_id(GRAPH_APP_ID) is not None
    assert customer.user(ADMIN_UPN) is None and sim.state.user(CUSTOMER_ADMIN) is None

    # A customer's own app (registered there) signs in there, and Graph answers from that directory.
    customer_admin = await device_token(sim, graph, ca, CUSTOMER_ADMIN, tenant=CUSTOMER_DOMAIN)
    assert claims(customer_admin["access_token"])["tid"] == CUSTOMER_TENANT_ID
    users = await graph.call("GET", "/v1.0/users", token=customer_admin["access_token"])
    assert users.status == 403  # Application.ReadWrite.All is no licence to read users
    created = await graph.call(
        "POST", "/v1.0/applications", json={"displayName": "Fabrikam's own"}, token=customer_admin["access_token"]
    )
    assert created.status == 201 and created.body["publisherDomain"] == CUSTOMER_DOMAIN
    assert customer.application_by_app_id(created.body["appId"]) is not None
    assert sim.state.application_by_app_id(created.body["appId"]) is None
    state = await graph.admin("GET", f"/_sim/state?tenant={CUSTOMER_DOMAIN}")
    assert state.body["tenantId"] == CUSTOMER_TENANT_ID
    assert [a["appId"] for a in state.body["applications"]] == [created.body["appId"]]


async def test_unknown_tenants_and_organizations_for_app_tokens(graph: GraphSession, sim: EntraSimulator) -> None:
    app, secret = await multi_tenant_app(graph, ["User.Read.All"])
    unknown = await client_token(graph, "nowhere.example.com", app["appId"], secret)
    assert (unknown.status, unknown.body["error_codes"]) == (400, [90002])
    organizations = await client_token(graph, "organizations", app["appId"], secret)
    assert organizations.status == 400 and organizations.body["error"] == "invalid_request"


async def test_state_file_keeps_every_tenant(
    start_entra: StartEntra, tmp_path: Path, https: aiohttp.ClientSession
) -> None:
    config = EntraSimConfig(extra_tenants=[ExtraTenant()], state_file=tmp_path / "entra.json")
    first = await start_entra(config)
    await GraphSession(https, first).admin(
        "POST", "/_sim/users", {"userPrincipalName": f"ops@{CUSTOMER_DOMAIN}", "tenant": CUSTOMER_TENANT_ID}
    )
    await first.stop()
    second = await start_entra(EntraSimConfig(extra_tenants=[ExtraTenant()], state_file=config.state_file))
    assert second.tenant_state(CUSTOMER_TENANT_ID).user(f"ops@{CUSTOMER_DOMAIN}") is not None
    assert second.state.user(f"ops@{CUSTOMER_DOMAIN}") is None


# --- admin consent for a multi-tenant app ------------------------------------------------------


async def consent_form(graph: GraphSession, url: str, username: str) -> tuple[int, str, str | None]:
    async with graph.http.get(url) as page:
        assert page.status == 200, await page.text()
        text = await page.text()
    action = re.search(r'<form method="post" action="([^"]+)"', text)
    assert action is not None, text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', text))
    form = {**fields, "username": username, "password": PASSWORD}
    async with graph.http.post(f"{graph.sim.url}{action.group(1)}", data=form, allow_redirects=False) as response:
        return response.status, await response.text(), response.headers.get("Location")


async def test_admin_consent_page_provisions_the_app_in_the_customer_tenant(
    graph: GraphSession, sim: EntraSimulator
) -> None:
    roles = ["Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All", "Application.Read.All"]
    app, secret = await multi_tenant_app(graph, roles)
    before = await client_token(graph, CUSTOMER_DOMAIN, app["appId"], secret)
    assert (before.status, before.body["error_codes"]) == (400, [700016])

    url = f"{sim.url}/{CUSTOMER_DOMAIN}/adminconsent?client_id={app['appId']}"
    async with graph.http.get(url) as page:
        text = await page.text()
    assert all(role in text for role in roles) and "MSP tool" in text

    # The home tenant's admin is not in the customer's directory; a customer user who isn't an admin can't.
    status, text, _ = await consent_form(graph, url, ADMIN_UPN)
    assert status == 400 and "AADSTS50020" in text
    status, text, _ = await consent_form(graph, url, f"adele.vance@{CUSTOMER_DOMAIN}")
    assert status == 403 and "AADSTS90094" in text
    customer = sim.tenant_state(CUSTOMER_TENANT_ID)
    assert customer.service_principal_by_app_id(app["appId"]) is None

    status, text, _ = await consent_form(graph, url, CUSTOMER_ADMIN)
    assert status == 200 and 'id="granted"' in text
    sp = customer.service_principal_by_app_id(app["appId"])
    assert sp is not None and sp.app_owner_organization_id == SIM_TENANT_ID
    held = {a.app_role_id for a in customer.app_role_assignments(sp.id)}
    assert held == {ROLE_BY_VALUE[r].id for r in roles}

    # Now the app signs in there with its (home) credential; Graph acts in the customer's directory.
    after = await client_token(graph, CUSTOMER_DOMAIN, app["appId"], secret)
    assert after.status == 200, after.body
    token = claims(after.body["access_token"])
    assert token["tid"] == CUSTOMER_TENANT_ID and sorted(token["roles"]) == sorted(roles)
    created = await graph.call(
        "POST", "/v1.0/applications", json={"displayName": "PBX"}, token=after.body["access_token"]
    )
    assert created.status == 201
    assert customer.application_by_app_id(created.body["appId"]) is not None
    assert customer.sign_ins(app["appId"])[0].service_principal_id == sp.id
    again = await graph.admin("POST", "/_sim/admin-consent", {"tenant": CUSTOMER_DOMAIN, "clientId": app["appId"]})
    assert again.status == 200 and len(customer.app_role_assignments(sp.id)) == len(roles)


async def test_v2_admin_consent_redirects_and_single_tenant_apps_stay_home(
    graph: GraphSession, sim: EntraSimulator
) -> None:
    app, _ = await multi_tenant_app(graph, ["User.Read.All"])
    redirect = "https://msp.example.com/consented"
    await graph.call("PATCH", f"/v1.0/applications/{app['id']}", json={"web": {"redirectUris": [redirect]}})
    url = (
        f"{sim.url}/{CUSTOMER_TENANT_ID}/v2.0/adminconsent?client_id={app['appId']}"
        f"&scope=https://graph.microsoft.com/.default&redirect_uri={redirect}&state=xyz"
    )
    status, _, location = await consent_form(graph, url, CUSTOMER_ADMIN)
    assert status == 302 and location is not None and location.startswith(redirect)
    reply = parse_qs(urlsplit(location).query)
    assert reply["admin_consent"] == ["True"] and reply["tenant"] == [CUSTOMER_TENANT_ID] and reply["state"] == ["xyz"]
    async with graph.http.get(url.replace(redirect, "https://elsewhere.example.com/")) as page:
        assert page.status == 400 and "AADSTS50011" in await page.text()

    single, _ = await new_app_with_sp(graph, "Home only")
    async with graph.http.get(f"{sim.url}/{CUSTOMER_DOMAIN}/adminconsent?client_id={single['appId']}") as page:
        assert page.status == 400 and "AADSTS700016" in await page.text()
    refused = await graph.admin("POST", "/_sim/admin-consent", {"tenant": CUSTOMER_DOMAIN, "clientId": single["appId"]})
    assert refused.status == 400


# --- certificates through Graph ------------------------------------------------------------------


def der_base64(pem: bytes) -> str:
    return base64.b64encode(x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)).decode()


async def test_key_credentials_patch_validates_appends_and_signs_in(
    graph: GraphSession, ca: LocalCA, tmp_path: Path
) -> None:
    sim = graph.sim
    app, _ = await new_app_with_sp(graph, "Cert app")
    path = f"/v1.0/applications/{app['id']}"
    first, second = create_client_certificate(tmp_path, "first"), create_client_certificate(tmp_path, "second")
    key = {
        "type": "AsymmetricX509Cert",
        "usage": "Verify",
        "key": der_base64(first.cert_pem),
        "displayName": "CN=first",
    }
    for bad, reason in [
        ({**key, "type": "Symmetric"}, "AsymmetricX509Cert"),
        ({**key, "key": "bm90IGEgY2VydA=="}, "X.509"),
        ({**key, "endDateTime": (datetime.now(UTC) + timedelta(days=800)).strftime("%Y-%m-%dT%H:%M:%SZ")}, "validity"),
        ({**key, "bogus": 1}, "Invalid property"),
    ]:
        reply = await graph.call("PATCH", path, json={"keyCredentials": [bad]})
        assert reply.status == 400, bad
        assert reason in str(reply.body), reply.body

    assert (await graph.call("PATCH", path, json={"keyCredentials": [key]})).status == 204
    listed = await graph.call("GET", path)
    [only] = listed.body["keyCredentials"]
    assert (
        only["key"] is None and base64.b64decode(only["customKeyIdentifier"]).hex().upper() == first.thumbprint_sha1_hex
    )
    start, end = datetime.fromisoformat(only["startDateTime"]), datetime.fromisoformat(only["endDateTime"])
    assert end - start <= timedelta(days=366)  # at most a year, although the certificate runs two
    selected = await graph.call("GET", f"{path}?$select=keyCredentials")
    existing = selected.body["keyCredentials"][0]
    assert existing["key"] == key["key"]

    # The append pattern: the existing certificate sent back with its key keeps its keyId.
    new = {**key, "key": der_base64(second.cert_pem), "displayName": "CN=second"}
    assert (await graph.call("PATCH", path, json={"keyCredentials": [existing, new]})).status == 204
    stored = sim.state.key_credentials(app["id"])
    assert [k.key_id for k in stored] == [existing["keyId"], stored[1].key_id]

    def sign_in() -> dict[str, Any]:
        client = msal.ConfidentialClientApplication(
            app["appId"],
            client_credential={
                "private_key": second.private_key_pem.decode(),
                "thumbprint": second.thumbprint_sha1_hex,
            },
            authority=sim.authority,
            instance_discovery=False,
            http_client=msal_session(ca),
        )
        result: dict[str, Any] = client.acquire_token_for_client(scopes=[GRAPH_DEFAULT_SCOPE])
        return result

    assert "access_token" in await asyncio.to_thread(sign_in)
    # PATCH replaces the collection: sending only the new one removes the first.
    assert (await graph.call("PATCH", path, json={"keyCredentials": [new]})).status == 204
    assert [k.sha1_thumbprint for k in sim.state.key_credentials(app["id"])] == [second.thumbprint_sha1_hex]


# --- an administrator's delegated reach ----------------------------------------------------------


async def test_device_code_consent_and_roles_limit_a_users_token(
    graph: GraphSession, sim: EntraSimulator, ca: LocalCA
) -> None:
    # A user who may not consent to admin-only scopes never gets a token.
    user = f"adele.vance@{TENANT_DOMAIN}"
    declined = await device_token(sim, graph, ca, user)
    assert declined["approval"].status == 403 and "Need admin approval" in declined["approval"].body["error"]
    assert declined["error"] == "authorization_declined" and declined["error_codes"] == [90094]

    # A Cloud Application Administrator consents to them (for themselves) and manages apps...
    added = await graph.admin(
        "POST",
        "/_sim/users",
        {"userPrincipalName": f"apps@{TENANT_DOMAIN}", "directoryRoles": ["Cloud Application Administrator"]},
    )
    assert added.status == 201
    cloud_admin = await device_token(sim, graph, ca, f"apps@{TENANT_DOMAIN}")
    token = claims(cloud_admin["access_token"])
    assert token["wids"] == ["158c047a-c907-4556-b7ef-446551a6b5f7"] and token["tid"] == SIM_TENANT_ID
    assert set(token["scp"].split()) >= {"Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All"}
    app, sp = await new_app_with_sp(graph, "Someone's app")
    renamed = await graph.call(
        "PATCH", f"/v1.0/applications/{app['id']}", json={"displayName": "x"}, token=cloud_admin["access_token"]
    )
    assert renamed.status == 204
    # ...but can't grant Microsoft Graph's application permissions; a Global Administrator can.
    graph_sp = sim.state.service_principal_by_app_id(GRAPH_APP_ID)
    assert graph_sp is not None
    grant = {"principalId": sp["id"], "resourceId": graph_sp.id, "appRoleId": ROLE_BY_VALUE["User.Read.All"].id}
    path = f"/v1.0/servicePrincipals/{graph_sp.id}/appRoleAssignedTo"
    refused = await graph.call("POST", path, json=grant, token=cloud_admin["access_token"])
    assert (refused.status, refused.error_code) == (403, "Authorization_RequestDenied")
    global_admin = await device_token(sim, graph, ca, ADMIN_UPN, tenant=SIM_TENANT_ID)
    assert (await graph.call("POST", path, json=grant, token=global_admin["access_token"])).status == 201

    # /organizations signs the user in to their home tenant: the customer's admin gets a customer token.
    customer = await device_token(sim, graph, ca, CUSTOMER_ADMIN)
    assert claims(customer["access_token"])["tid"] == CUSTOMER_TENANT_ID
    wrong_tenant = await device_token(sim, graph, ca, CUSTOMER_ADMIN, tenant=SIM_TENANT_ID)
    assert wrong_tenant["approval"].status == 400 and "AADSTS50020" in wrong_tenant["approval"].body["error"]
