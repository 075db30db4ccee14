"""The web app over real HTTP on the dev server, as a plain HTTP client sees it: the administrator's
pages (signed links, the reveal, the confirmations), their security, the console and the codec
endpoint. The same flows in a real browser are in test_browser.py."""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from google.protobuf import json_format
from pydantic import SecretStr
from temporalio.api.common.v1 import Payloads

from common.links import LinkSigner
from common.logging import configure_logging
from models.integration import AdminAction, Phase, Step, StepState
from simulators.entra.seed import ADMIN_UPN
from simulators.human import PortalHuman, WebPagesHuman
from tests.conftest import OPERATOR_TOKEN, Harness, RunningWeb, running_web, wait_for_phase, wait_until
from tests.workflows.test_onboarding import portal_redirect_uris

pytestmark = pytest.mark.devserver


@pytest.fixture
async def site(dev: Harness) -> AsyncIterator[RunningWeb]:
    async with running_web(dev) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[WebPagesHuman]:
    async with WebPagesHuman.session_for() as session:
        yield WebPagesHuman(session)


async def test_onboarding_through_the_administrators_pages(
    dev: Harness, site: RunningWeb, browser: WebPagesHuman
) -> None:
    captured = io.StringIO()
    configure_logging("INFO", "json", captured)
    async with dev.worker():
        handle = await dev.start(dev.onboard_input("by-web"))
        waiting = await wait_for_phase(handle, Phase.WAITING_FOR_REDIRECT_URIS)
        link = site.link(waiting)

        # A bad redirect URI: the workflow's reason, next to the field, and nothing taken.
        status, html, _ = await browser.submit(link, f"{link}/redirect-uris", redirect_uri="http://pbx.example.com/cb")
        assert status == 400 and 'id="redirect_uri-error"' in html and "is not an https:// URL" in html
        uris = await portal_redirect_uris(dev)
        assert uris.sso_redirect_uri is not None
        fields = {"redirect_uri": uris.redirect_uri, "sso_redirect_uri": uris.sso_redirect_uri}
        status, html, _ = await browser.submit(link, f"{link}/redirect-uris", **fields)
        # The link has done its job: it shows the progress, and no longer offers the form.
        assert status == 200 and "This step is done" in html and "data-progress" in html
        assert "redirect_uri" not in html

        card = await wait_until(handle, lambda s: s.steps[Step.CONNECT_PBX].state == StepState.WAITING, "card")
        assert card.app is not None and card.secret is not None
        connect = site.link(card)
        status, html, headers = await browser.get(connect)
        assert status == 200 and card.app.client_id in html and headers["Cache-Control"] == "no-store"
        assert "Show the client secret" in html
        status, html, headers = await browser.submit(connect, f"{connect}/reveal")
        shown = re.search(r'id="client-secret" value="([^"]+)"', html)
        assert status == 200 and shown is not None and headers["Cache-Control"] == "no-store"
        secret = shown.group(1)
        status, html, _ = await browser.submit(connect, f"{connect}/reveal")
        assert "already shown" in html and secret not in html, "once only"

        async with PortalHuman(dev.sims.yeastar.url, dev.sims.ca.ca_file) as human:
            await human.save_app_registration(card.app.client_id, card.app.tenant_id, SecretStr(secret))
            await human.sign_in_and_accept(ADMIN_UPN)
        status, html, _ = await browser.submit(connect, f"{connect}/confirm")
        assert status == 200 and "data-progress" in html
        connected = await wait_for_phase(handle, Phase.CONNECTED)
        async with browser.session.get(f"{connect}/progress") as response:
            progress = await response.json()
    assert connected.reveals and connected.reveals[0].key_id == card.secret.key_id
    assert connected.reveals[0].address == "127.0.0.1"
    assert progress["phase"] == "Connected" and progress["done"]
    token = link.rsplit("/", 1)[-1]
    logs = captured.getvalue()
    assert "GET /a/" in logs and token not in logs and secret not in logs, "the access log hides tokens"


async def test_a_link_works_only_for_its_integration_step_and_time(
    dev: Harness, site: RunningWeb, browser: WebPagesHuman
) -> None:
    async with dev.worker():
        handle = await dev.start(dev.onboard_input("links"))
        waiting = await wait_for_phase(handle, Phase.WAITING_FOR_REDIRECT_URIS)
        signer = LinkSigner.from_settings(site.settings)
        wrong_step = signer.url("links", AdminAction(kind="connect", ref="some-key"))
        tampered = site.link(waiting)[:-3] + "abc"
        expired = f"{site.url}/a/" + signer.token(
            "links", AdminAction(kind="redirect-uris"), now=datetime.now(UTC) - timedelta(days=30)
        )
        other = signer.url("nobody-here", AdminAction(kind="redirect-uris"))
        results = {
            name: await browser.get(url)
            for name, url in (("wrong", wrong_step), ("tampered", tampered), ("expired", expired), ("other", other))
        }
        # A form posted without the page's CSRF token is refused.
        async with browser.session.post(
            f"{site.link(waiting)}/redirect-uris", data={"redirect_uri": "https://x.example/cb"}
        ) as response:
            forged = response.status
    assert results["wrong"][0] == 200 and "This step is done" in results["wrong"][1]
    assert "reveal" not in results["wrong"][1]
    assert results["tampered"][0] == 410 and "not valid" in results["tampered"][1]
    assert results["expired"][0] == 410 and "expired" in results["expired"][1]
    assert results["other"][0] == 410 and "no integration" in results["other"][1]
    assert forged == 403


async def test_console_signs_in_with_the_token_lists_and_retries(
    dev: Harness, site: RunningWeb, browser: WebPagesHuman
) -> None:
    dev.sims.entra.state.policy.password_addition_blocked = True
    async with dev.worker():
        handle = await dev.start(dev.onboard_input("console-blocked", redirect_uris=await portal_redirect_uris(dev)))
        await wait_for_phase(handle, Phase.BLOCKED)
        _, html, _ = await browser.get(f"{site.url}/console")
        assert "Operator token" in html, "not signed in: the sign-in page"
        signin = f"{site.url}/console/signin"
        _, html, _ = await browser.submit(signin, signin, token="wrong")
        assert "not the operator token" in html
        await browser.submit(f"{site.url}/console/signin", f"{site.url}/console/signin", token=OPERATOR_TOKEN)
        table = await _eventually_in_table(browser, site, "console-blocked")
        assert "Blocked: needs a fix, then retry" in table and 'id="retry-console-blocked"' in table
        dev.sims.entra.state.policy.password_addition_blocked = False
        _, html, _ = await browser.submit(
            f"{site.url}/console", f"{site.url}/console/integration/console-blocked/retry"
        )
        assert "retrying from step preflight" in html
        await wait_for_phase(handle, Phase.WAITING_FOR_CONSENT)


async def _eventually_in_table(browser: WebPagesHuman, site: RunningWeb, integration_id: str) -> str:
    for _ in range(50):
        _, html, _ = await browser.get(f"{site.url}/console?phase=Blocked")
        if f"row-{integration_id}" in html:
            return html
        await asyncio.sleep(0.2)
    raise AssertionError(f"{integration_id} never listed: {html}")


async def test_codec_endpoint_decodes_for_operators_only(dev: Harness, site: RunningWeb) -> None:
    async with dev.worker():
        handle = await dev.start(dev.onboard_input("codec"))
        await wait_for_phase(handle, Phase.WAITING_FOR_REDIRECT_URIS)
        history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes.input.payloads[0]
    body = json_format.MessageToJson(Payloads(payloads=[started]))
    origin = site.settings.web.temporal_ui_origin
    async with aiohttp.ClientSession() as session:
        async with session.options(f"{site.url}/codec/decode", headers={"Origin": origin}) as preflight:
            allowed = preflight.headers.get("Access-Control-Allow-Origin")
        async with session.post(f"{site.url}/codec/decode", data=body) as anonymous:
            refused = anonymous.status
        headers = {
            "Authorization": f"Bearer {OPERATOR_TOKEN}",
            "Content-Type": "application/json",
            "X-Namespace": "default",
        }
        async with session.post(f"{site.url}/codec/decode", data=body, headers=headers) as decoded:
            answer = await decoded.json()
    assert allowed == origin and refused == 401
    data = json_format.ParseDict(answer, Payloads()).payloads[0]
    assert data.metadata["encoding"] == b"json/plain" and b'"integration_id":"codec"' in data.data


async def test_a_sign_in_answer_not_started_here_is_refused(site: RunningWeb) -> None:
    """Microsoft answers by form_post (a cross-site POST, so no CSRF token): only the state of a sign-in
    this app started is accepted, and nothing but a message comes back."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{site.url}/console/signin/callback",
            data={"state": "not-ours", "code": "stolen-code"},
            headers={"Origin": "https://login.microsoftonline.com"},
            allow_redirects=False,
        ) as response,
    ):
        location = response.headers["Location"]
        cookies = response.headers.getall("Set-Cookie", [])
    assert response.status == 303 and location.startswith("/console/signin?error=That+sign-in+took+too+long")
    assert not any(cookie.startswith("yec_session=") for cookie in cookies)
