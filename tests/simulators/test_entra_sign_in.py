"""Operators signing in to a web app through the Entra simulator: the OpenID Connect authorization code
flow with PKCE, driven by real MSAL (ConfidentialClientApplication) with the sign-in page filled in over
HTTPS the way a browser submits it, and once by a real Chromium; then the page's, the authorization
endpoint's and the token endpoint's failures, and the operators group in tokens and in Graph."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import shutil
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import aiohttp
import msal
import pytest
from playwright.async_api import Route, async_playwright

from simulators.entra import EntraSimConfig
from simulators.entra.catalog import OPERATORS_GROUP_ID, OPERATORS_GROUP_NAME
from simulators.entra.seed import ADMIN_UPN
from simulators.tls import LocalCA
from tests.conftest import StartEntra
from tests.simulators.conftest import GraphSession, Reply
from tests.simulators.test_entra_sim import advance, msal_session

# The web app leaves response_mode at MSAL's default (query), about which MSAL warns.
pytestmark = pytest.mark.filterwarnings("ignore:response_mode='form_post' is recommended:UserWarning")
# Never fetched: tests read the code from the redirect's Location (or intercept it in the browser).
REDIRECT_URI = "https://console.example.test/auth/callback"
SCOPE = "openid profile offline_access User.Read"


@dataclass(frozen=True)
class WebApp:
    app_id: str
    object_id: str
    secret: str


@dataclass
class Page:
    """An HTML answer, read the way a browser sees its form."""

    status: int
    url: str
    action: str = ""
    inputs: dict[str, str] = field(default_factory=dict)  # every named input's value (hidden ones too)
    texts: dict[str, str] = field(default_factory=dict)  # the text of each element with an id
    ids: set[str] = field(default_factory=set)


class _PageParser(HTMLParser):
    def __init__(self, page: Page) -> None:
        super().__init__()
        self.page = page
        self._open_id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if "id" in attributes:
            self.page.ids.add(attributes["id"])
            self._open_id = attributes["id"]
        if tag == "form":
            self.page.action = attributes.get("action", "")
        if tag == "input" and attributes.get("name"):
            self.page.inputs[attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        self._open_id = None

    def handle_data(self, data: str) -> None:
        if self._open_id is not None:
            self.page.texts[self._open_id] = self.page.texts.get(self._open_id, "") + data


@dataclass
class Answer:
    status: int
    location: str | None
    page: Page

    @property
    def redirect_params(self) -> dict[str, str]:
        assert self.status == 302 and self.location, self.page.texts
        parts = urlsplit(self.location)
        return dict(parse_qsl(parts.query or parts.fragment))


async def fetch(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Answer:
    async with http.request(method, url, allow_redirects=False, **kwargs) as response:
        page = Page(response.status, str(response.url))
        _PageParser(page).feed(await response.text())
        return Answer(response.status, response.headers.get("Location"), page)


async def submit(
    http: aiohttp.ClientSession, page: Page, headers: dict[str, str] | None = None, **fields: str
) -> Answer:
    """Post the page's form with ``fields`` typed in, as a browser would (no JavaScript needed)."""
    return await fetch(http, "POST", urljoin(page.url, page.action), data={**page.inputs, **fields}, headers=headers)


async def sign_in(http: aiohttp.ClientSession, auth_uri: str, username: str, password: str) -> dict[str, str]:
    """Open the sign-in page, sign in, and return the parameters the browser brings to the redirect URI."""
    shown = await fetch(http, "GET", auth_uri)
    assert shown.status == 200, shown.page.texts
    return (await submit(http, shown.page, username=username, password=password)).redirect_params


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def authorize_url(graph: GraphSession, client_id: str, **params: str) -> str:
    query = {
        "client_id": client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": SCOPE,
        "state": "st4te",
        "nonce": "n0nce",
        **params,
    }
    return f"{graph.sim.authority}/oauth2/v2.0/authorize?{urlencode(query)}"


async def redeem(
    graph: GraphSession, app: WebApp, code: str, verifier: str, changes: dict[str, str] | None = None
) -> Reply:
    form = {
        "grant_type": "authorization_code",
        "client_id": app.app_id,
        "client_secret": app.secret,
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        "scope": SCOPE,
        **(changes or {}),
    }
    async with graph.http.post(f"{graph.sim.authority}/oauth2/v2.0/token", data=form) as response:
        return Reply(response.status, response.headers, await response.json())


async def signed_in_code(graph: GraphSession, app: WebApp, username: str = ADMIN_UPN) -> tuple[str, str]:
    """A fresh authorization code for ``username`` and its PKCE verifier."""
    verifier, challenge = pkce()
    url = authorize_url(graph, app.app_id, code_challenge=challenge, code_challenge_method="S256")
    params = await sign_in(graph.http, url, username, graph.sim.config.user_password)
    assert params["state"] == "st4te" and params["session_state"]
    return params["code"], verifier


def id_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


async def register_web_app(graph: GraphSession, redirect_uri: str = REDIRECT_URI) -> WebApp:
    reply = await graph.admin("POST", "/_sim/apps", {"displayName": "PBX console", "redirectUris": [redirect_uri]})
    assert reply.status == 201, reply.body
    return WebApp(reply.body["appId"], reply.body["id"], reply.body["secret"])


@pytest.fixture
async def web_app(graph: GraphSession) -> WebApp:
    return await register_web_app(graph)


def msal_web_app(graph: GraphSession, ca: LocalCA, app: WebApp) -> Any:
    return msal.ConfidentialClientApplication(
        app.app_id,
        client_credential=app.secret,
        authority=graph.sim.authority,
        instance_discovery=False,
        http_client=msal_session(ca),
    )


async def msal_sign_in(graph: GraphSession, ca: LocalCA, app: WebApp, username: str) -> tuple[Any, dict[str, Any]]:
    """What the web app does: MSAL starts the flow, the user signs in, MSAL redeems the code."""
    client = await asyncio.to_thread(msal_web_app, graph, ca, app)
    flow: dict[str, Any] = await asyncio.to_thread(
        client.initiate_auth_code_flow, scopes=["User.Read"], redirect_uri=REDIRECT_URI, login_hint=username
    )
    params = await sign_in(graph.http, flow["auth_uri"], username, graph.sim.config.user_password)
    result: dict[str, Any] = await asyncio.to_thread(client.acquire_token_by_auth_code_flow, flow, params)
    return client, result


def member_upn(graph: GraphSession) -> str:
    """A seeded user who is not in the operators group."""
    return next(u.user_principal_name for u in graph.sim.state.users() if u.user_principal_name != ADMIN_UPN)


# --- the whole flow with MSAL ------------------------------------------------------------------
async def test_msal_auth_code_flow_signs_in_an_operator(graph: GraphSession, ca: LocalCA, web_app: WebApp) -> None:
    sim = graph.sim
    client, result = await msal_sign_in(graph, ca, web_app, ADMIN_UPN)
    assert "access_token" in result and "refresh_token" in result, result
    claims = result["id_token_claims"]  # MSAL has checked the state and the nonce
    admin = sim.state.user(ADMIN_UPN)
    assert admin is not None
    async with graph.http.get(f"{sim.authority}/v2.0/.well-known/openid-configuration") as response:
        discovery = await response.json()
    assert discovery["authorization_endpoint"] == f"{sim.authority}/oauth2/v2.0/authorize"
    assert claims["iss"] == discovery["issuer"] and claims["aud"] == web_app.app_id
    assert claims["tid"] == sim.config.tenant_id and claims["oid"] == admin.id and claims["nonce"]
    assert claims["preferred_username"] == ADMIN_UPN and claims["name"] == admin.display_name
    assert OPERATORS_GROUP_ID in claims["groups"]
    assert result["client_info"] and claims["exp"] > claims["iat"]

    [signed_in] = sim.state.sign_ins(web_app.app_id)
    assert signed_in.event_type == "interactiveUser" and signed_in.error_code == 0
    assert signed_in.user_principal_name == ADMIN_UPN and signed_in.correlation_id

    # The web app's refresh token works with its secret (a confidential client), groups included.
    [account] = await asyncio.to_thread(client.get_accounts)
    refreshed = await asyncio.to_thread(client.acquire_token_silent, ["User.Read"], account, force_refresh=True)
    assert refreshed and OPERATORS_GROUP_ID in refreshed["id_token_claims"]["groups"]


async def test_a_user_outside_the_group_gets_no_operators_group(
    graph: GraphSession, ca: LocalCA, web_app: WebApp
) -> None:
    user = member_upn(graph)
    _, result = await msal_sign_in(graph, ca, web_app, user)
    claims = result["id_token_claims"]
    assert claims["preferred_username"] == user
    assert OPERATORS_GROUP_ID not in claims["groups"] and claims["groups"]  # "All Company" at least


async def test_groups_claim_needs_group_membership_claims(graph: GraphSession, ca: LocalCA, web_app: WebApp) -> None:
    path = f"/v1.0/applications/{web_app.object_id}"
    rejected = await graph.call("PATCH", path, json={"groupMembershipClaims": "Everything"})
    assert rejected.status == 400
    cleared = await graph.call("PATCH", path, json={"groupMembershipClaims": None})
    assert cleared.status == 204, cleared.body
    _, result = await msal_sign_in(graph, ca, web_app, ADMIN_UPN)
    assert "groups" not in result["id_token_claims"]


async def test_operators_group_in_graph(graph: GraphSession) -> None:
    groups = await graph.call("GET", f"/v1.0/groups?$filter=displayName eq '{OPERATORS_GROUP_NAME}'")
    [group] = groups.body["value"]
    assert group["id"] == OPERATORS_GROUP_ID and group["securityEnabled"]
    assert group["groupTypes"] == [] and not group["mailEnabled"] and group["mail"] is None
    members = await graph.call("GET", f"/v1.0/groups/{OPERATORS_GROUP_ID}/members")
    assert [(m["@odata.type"], m["userPrincipalName"]) for m in members.body["value"]] == [
        ("#microsoft.graph.user", ADMIN_UPN)
    ]
    missing = await graph.call("GET", "/v1.0/groups/00000000-0000-4000-8000-000000000000/members")
    assert missing.status == 404


async def test_operators_group_is_added_to_an_older_state_file(
    start_entra: StartEntra, https: aiohttp.ClientSession, tmp_path: Path
) -> None:
    state_file = tmp_path / "entra.json"
    first = await start_entra(EntraSimConfig(state_file=state_file))
    await first.stop()
    snapshot = json.loads(state_file.read_text())
    snapshot["groups"] = [g for g in snapshot["groups"] if g["id"] != OPERATORS_GROUP_ID]
    state_file.write_text(json.dumps(snapshot))
    second = await start_entra(EntraSimConfig(state_file=state_file))
    group = second.state.group(OPERATORS_GROUP_ID)
    admin = second.state.user(ADMIN_UPN)
    assert group is not None and admin is not None and group.member_ids == [admin.id]


# --- the sign-in page and the authorization endpoint ------------------------------------------
async def test_the_sign_in_page_and_a_wrong_password(graph: GraphSession, web_app: WebApp) -> None:
    shown = await fetch(graph.http, "GET", authorize_url(graph, web_app.app_id, login_hint=ADMIN_UPN))
    page = shown.page
    assert shown.status == 200 and {"username", "password", "signin"} <= page.ids
    assert page.texts["signin"] == "Sign in" and page.inputs["username"] == ADMIN_UPN
    assert page.inputs["state"] == "st4te" and page.inputs["client_id"] == web_app.app_id

    wrong = await submit(graph.http, page, {"client-request-id": "cid-1"}, username=ADMIN_UPN, password="nope")
    assert wrong.status == 200 and wrong.location is None
    assert wrong.page.texts["error"] == "Your account or password is incorrect."
    assert wrong.page.inputs["username"] == ADMIN_UPN and "signin" in wrong.page.ids
    unknown = await submit(graph.http, wrong.page, username="nobody@example.com", password="nope")
    assert unknown.status == 200 and "username may be incorrect" in unknown.page.texts["error"]

    failures = graph.sim.state.sign_ins(web_app.app_id)
    assert [(s.error_code, s.user_principal_name) for s in failures] == [
        (50034, "nobody@example.com"),
        (50126, ADMIN_UPN),
    ]
    assert failures[1].correlation_id == "cid-1"
    right = await submit(graph.http, wrong.page, username=ADMIN_UPN, password=graph.sim.config.user_password)
    assert right.location is not None and right.location.startswith(REDIRECT_URI + "?code=")


async def test_a_configured_password(start_entra: StartEntra, https: aiohttp.ClientSession) -> None:
    graph = GraphSession(https, await start_entra(EntraSimConfig(user_password="another-one")))
    app = await register_web_app(graph)
    params = await sign_in(https, authorize_url(graph, app.app_id), ADMIN_UPN, "another-one")
    assert params["code"]


async def test_unregistered_redirect_uri_and_unknown_client_get_an_error_page(
    graph: GraphSession, web_app: WebApp
) -> None:
    elsewhere = await fetch(graph.http, "GET", authorize_url(graph, web_app.app_id, redirect_uri="https://evil.test/"))
    assert elsewhere.status == 400 and elsewhere.location is None
    assert elsewhere.page.texts["error"].startswith(
        "AADSTS50011: The redirect URI 'https://evil.test/' specified in the request does not match"
    )
    stranger = await fetch(graph.http, "GET", authorize_url(graph, "99999999-9999-4999-8999-999999999999"))
    assert stranger.status == 400 and stranger.page.texts["error"].startswith("AADSTS700016:")
    # An http loopback redirect URI matches whatever its port (RFC 8252, as Entra does).
    local = await register_web_app(graph, "http://localhost:8400/callback")
    other_port = authorize_url(graph, local.app_id, redirect_uri="http://localhost:9999/callback")
    assert (await fetch(graph.http, "GET", other_port)).status == 200


@pytest.mark.parametrize(
    ("params", "error", "aadsts"),
    [
        ({"code_challenge": "x" * 43, "code_challenge_method": "S512"}, "invalid_request", 50149),
        ({"code_challenge_method": "S256"}, "invalid_request", 50147),
        ({"code_challenge": "too-short", "code_challenge_method": "S256"}, "invalid_request", 501491),
        ({"response_type": "id_token"}, "unsupported_response_type", 700054),
        ({"scope": ""}, "invalid_request", 900144),
        ({"prompt": "none"}, "login_required", 50058),
    ],
)
async def test_other_authorization_errors_go_back_to_the_app(
    graph: GraphSession, web_app: WebApp, params: dict[str, str], error: str, aadsts: int
) -> None:
    answer = await fetch(graph.http, "GET", authorize_url(graph, web_app.app_id, **params))
    assert answer.location is not None and answer.location.startswith(REDIRECT_URI + "?")
    returned = answer.redirect_params
    assert returned["error"] == error and returned["state"] == "st4te"
    assert returned["error_description"].startswith(f"AADSTS{aadsts}:")


async def test_form_post_response_mode(graph: GraphSession, web_app: WebApp) -> None:
    shown = await fetch(graph.http, "GET", authorize_url(graph, web_app.app_id, response_mode="form_post"))
    password = graph.sim.config.user_password
    answer = await submit(graph.http, shown.page, username=ADMIN_UPN, password=password)
    assert answer.status == 200 and answer.page.action == REDIRECT_URI
    assert answer.page.inputs["code"] and answer.page.inputs["state"] == "st4te"


# --- redeeming the code ------------------------------------------------------------------------
async def test_redemption_checks_verifier_redirect_uri_and_client(graph: GraphSession, web_app: WebApp) -> None:
    code, verifier = await signed_in_code(graph, web_app)
    cases: list[tuple[dict[str, str], int, str, int]] = [
        ({"code_verifier": pkce()[0]}, 400, "invalid_grant", 501481),
        ({"code_verifier": ""}, 400, "invalid_grant", 501481),
        ({"redirect_uri": "https://console.example.test/other"}, 400, "invalid_grant", 500112),
        ({"client_secret": "not-the-secret"}, 401, "invalid_client", 7000215),
        ({"client_secret": ""}, 401, "invalid_client", 7000218),
        ({"code": "not-a-code"}, 400, "invalid_grant", 9002313),
    ]
    for changes, status, error, aadsts in cases:
        reply = await redeem(graph, web_app, code, verifier, changes)
        assert (reply.status, reply.body["error"], reply.body["error_codes"]) == (status, error, [aadsts]), changes
    assert (await redeem(graph, web_app, code, verifier)).status == 200


async def test_a_code_is_single_use(graph: GraphSession, web_app: WebApp) -> None:
    code, verifier = await signed_in_code(graph, web_app)
    first = await redeem(graph, web_app, code, verifier)
    assert first.status == 200 and id_claims(first.body["id_token"])["nonce"] == "n0nce"
    again = await redeem(graph, web_app, code, verifier)
    assert (again.status, again.body["error"], again.body["error_codes"]) == (400, "invalid_grant", [54005])


async def test_a_code_expires_after_ten_minutes(graph: GraphSession, web_app: WebApp) -> None:
    code, verifier = await signed_in_code(graph, web_app)
    advance(graph.sim, 601)
    late = await redeem(graph, web_app, code, verifier)
    assert (late.status, late.body["error"], late.body["error_codes"]) == (400, "invalid_grant", [70008])


async def test_a_code_is_bound_to_its_client(graph: GraphSession, web_app: WebApp) -> None:
    code, verifier = await signed_in_code(graph, web_app)
    other = await register_web_app(graph)
    stolen = await redeem(graph, other, code, verifier)
    assert (stolen.status, stolen.body["error"], stolen.body["error_codes"]) == (400, "invalid_grant", [70000])


# --- a real browser ------------------------------------------------------------------------------
@pytest.mark.browser
async def test_chromium_fills_in_the_sign_in_page(graph: GraphSession, web_app: WebApp) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    verifier, challenge = pkce()
    url = authorize_url(graph, web_app.app_id, code_challenge=challenge, code_challenge_method="S256")
    arrived: list[str] = []

    async def the_web_app(route: Route) -> None:
        arrived.append(route.request.url)
        await route.fulfill(body="signed in")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-background-networking"]
        )
        try:
            # The simulator's certificate comes from the test CA, which Chromium does not know.
            context = await browser.new_context(ignore_https_errors=True)
            page = await context.new_page()
            await page.route(lambda target: target.startswith(REDIRECT_URI), the_web_app)
            await page.goto(url)
            await page.fill("#username", ADMIN_UPN)
            await page.fill("#password", graph.sim.config.user_password)
            await page.click("#signin")
            await page.wait_for_url(lambda target: target.startswith(REDIRECT_URI))
        finally:
            await browser.close()
    code = dict(parse_qsl(urlsplit(arrived[0]).query))["code"]
    assert (await redeem(graph, web_app, code, verifier)).status == 200
