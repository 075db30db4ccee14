"""The web pages in a real browser (Debian's chromium, driven by Playwright): an onboarding and a
rotation done by the PBX administrator through the pages, and an operator signing in to the console
through the (simulated) Microsoft sign-in to retry a Blocked integration.

With YEC_SCREENSHOTS=1 the README's screenshots are written to docs/screenshots/."""

from __future__ import annotations

import os
import shutil
import ssl
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from pydantic import SecretStr

from models.integration import LifecycleOptions, Phase, RotationStage, Step, StepState
from simulators.entra.catalog import OPERATORS_GROUP_ID, SIM_TENANT_ID
from simulators.entra.seed import ADMIN_UPN
from simulators.human import PortalHuman
from tests.conftest import Harness, running_web, wait_for_phase, wait_until
from tests.workflows.test_onboarding import connect_pbx_as_human, portal_redirect_uris

pytestmark = [pytest.mark.devserver, pytest.mark.browser]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Without the background-networking switches Chromium keeps dialling Google, which this machine refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def page(chromium: Browser) -> AsyncIterator[Page]:
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    yield await context.new_page()
    await context.close()


async def screenshot(page: Page, name: str, tmp_path: Path) -> None:
    path = tmp_path / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    if os.environ.get("YEC_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / f"{name}.png")


async def test_an_administrator_onboards_through_the_pages(dev: Harness, page: Page, tmp_path: Path) -> None:
    async with running_web(dev) as site, dev.worker():
        handle = await dev.start(dev.onboard_input("browser-pbx"))
        waiting = await wait_for_phase(handle, Phase.WAITING_FOR_REDIRECT_URIS)
        await page.goto(site.link(waiting))
        await page.fill("#redirect_uri", "http://pbx.example.com/api/microsoft365/oauth2/callback")
        await page.click("#submit-uris")
        await expect(page.locator("#redirect_uri-error")).to_contain_text("is not an https:// URL")

        uris = await portal_redirect_uris(dev)
        await page.fill("#redirect_uri", uris.redirect_uri)
        await page.fill("#sso_redirect_uri", uris.sso_redirect_uri or "")
        await page.click("#submit-uris")
        await expect(page.locator(".notice")).to_contain_text("This step is done")

        card = await wait_until(handle, lambda s: s.steps[Step.CONNECT_PBX].state == StepState.WAITING, "card")
        assert card.app is not None
        await page.goto(site.link(card))
        await expect(page.locator("#client-id")).to_have_value(card.app.client_id)
        await screenshot(page, "administrator-page", tmp_path)
        await page.click("#reveal")
        secret = await page.locator("#client-secret").input_value()
        assert len(secret) > 30
        async with PortalHuman(dev.sims.yeastar.url, dev.sims.ca.ca_file) as human:
            await human.save_app_registration(card.app.client_id, card.app.tenant_id, SecretStr(secret))
            await human.sign_in_and_accept(ADMIN_UPN)
        await page.click("#confirm")
        await expect(page.locator("#progress")).to_contain_text("Now: Connected.", timeout=30_000)
        connected = await wait_for_phase(handle, Phase.CONNECTED)
    assert connected.verification is not None and connected.reveals[0].address == "127.0.0.1"


async def test_an_administrator_pastes_a_rotated_secret_through_the_page(
    dev: Harness, page: Page, tmp_path: Path
) -> None:
    quick = LifecycleOptions(sign_in_poll_interval=timedelta(seconds=1), sign_in_settle_time=timedelta(seconds=2))
    async with running_web(dev) as site, dev.worker():
        uris = await portal_redirect_uris(dev)
        handle = await dev.start(dev.onboard_input("browser-rotation", redirect_uris=uris, options=quick))
        connected = await connect_pbx_as_human(dev, handle)
        assert connected.app is not None and connected.secret is not None
        await dev.rotate("browser-rotation")
        waiting = await wait_until(
            handle,
            lambda s: s.rotation is not None and s.rotation.stage == RotationStage.WAITING_FOR_PBX,
            "the rotation's card",
        )
        await page.goto(site.link(waiting))
        await page.click("#reveal")
        secret = await page.locator("#client-secret").input_value()
        async with PortalHuman(dev.sims.yeastar.url, dev.sims.ca.ca_file) as human:
            await human.save_app_registration(connected.app.client_id, connected.app.tenant_id, SecretStr(secret))
            await human.sign_in_and_accept(ADMIN_UPN)
        await page.click("#confirm")
        await expect(page.locator("#progress")).to_contain_text(
            "Last rotation: the PBX signs in with key", timeout=30_000
        )
        done = await wait_until(handle, lambda s: s.rotation is None and s.rotations_completed == 1, "rotated")
    assert done.secret is not None and done.secret.key_id != connected.secret.key_id


async def register_console_app(dev: Harness) -> tuple[str, str]:
    """The console's app registration in the (simulated) operators' tenant: its client ID and secret.
    A loopback redirect URI matches any port, as in Entra ID."""
    ssl_context = ssl.create_default_context(cafile=str(dev.sims.ca.ca_file))
    body = {"displayName": "PBX connector console", "redirectUris": ["http://127.0.0.1/console/signin/callback"]}
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context)) as session,
        session.post(f"{dev.sims.entra.url}/_sim/apps", json=body) as response,
    ):
        assert response.status == 201, await response.text()
        created = await response.json()
    return created["appId"], created["secret"]


async def sign_in_at_microsoft(page: Page, site_url: str, username: str, password: str) -> None:
    await page.goto(f"{site_url}/console")
    await page.click("#signin-microsoft")
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#signin")


async def test_an_operator_signs_in_with_microsoft_and_retries_a_blocked_integration(
    dev: Harness, chromium: Browser, tmp_path: Path
) -> None:
    client_id, client_secret = await register_console_app(dev)
    entra = dev.sims.entra
    password = entra.config.user_password
    not_operator = next(user for user in entra.state.users() if user.user_principal_name != ADMIN_UPN)
    entra.state.policy.password_addition_blocked = True
    oidc = {
        "oidc_tenant_id": SIM_TENANT_ID,
        "oidc_client_id": client_id,
        "oidc_client_secret": SecretStr(client_secret),
        "oidc_allowed_group": OPERATORS_GROUP_ID,
    }
    # The simulator's certificate is from the test's own CA, which Chromium does not know.
    context = await chromium.new_context(viewport={"width": 1280, "height": 900}, ignore_https_errors=True)
    page = await context.new_page()
    async with running_web(dev, **oidc) as site, dev.worker():
        handle = await dev.start(dev.onboard_input("console-pbx", redirect_uris=await portal_redirect_uris(dev)))
        await wait_for_phase(handle, Phase.BLOCKED)

        await sign_in_at_microsoft(page, site.url, not_operator.user_principal_name, password)
        await expect(page.locator(".notice")).to_contain_text("is not a member of the operators' group")
        await page.goto(f"{site.url}/console")
        await expect(page.locator("#signin-microsoft")).to_be_visible()

        await sign_in_at_microsoft(page, site.url, ADMIN_UPN, password)
        row = page.locator("#row-console-pbx")
        await expect(row).to_contain_text("Blocked")
        await screenshot(page, "console", tmp_path)
        entra.state.policy.password_addition_blocked = False
        await page.click("#retry-console-pbx")
        await expect(page.locator(".notice")).to_contain_text("retrying from step preflight")
        await wait_for_phase(handle, Phase.WAITING_FOR_CONSENT)
    await context.close()
