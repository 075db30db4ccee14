"""Plays the administrator at the (simulated) PBX portal, and at this service's own web pages: the
demo, the tests and the benchmarks use them for the two human moments of the vendor's guide (steps 1
and 6) and for a rotation's paste."""

from __future__ import annotations

import re
import ssl
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from pydantic import SecretStr

from models.integration import RedirectUris
from simulators.yeastar.portal import PORTAL_PATH


class PortalError(Exception):
    pass


_CSRF = re.compile(r'name=csrf value="([^"]+)"')
_SECRET = re.compile(r'id="client-secret" value="([^"]+)"')
_NOTICE = re.compile(r'<p class="?(?:notice|error)[^>]*>([^<]+)')


class WebPagesHuman:
    """The PBX administrator at the links the service sends, as a browser would: cookies kept, forms
    posted with the page's CSRF token."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    @classmethod
    def session_for(cls) -> aiohttp.ClientSession:
        # unsafe=True: keep cookies from an IP-address host (127.0.0.1), as browsers do.
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def get(self, url: str) -> tuple[int, str, Any]:
        async with self.session.get(url) as response:
            return response.status, await response.text(), response.headers

    async def submit(self, page_url: str, action: str, **fields: str) -> tuple[int, str, Any]:
        """GET the page, then POST the form at ``action`` with its CSRF token and ``fields``."""
        status, html, _ = await self.get(page_url)
        token = _CSRF.search(html)
        if token is None:
            raise PortalError(f"no form on the page ({status}): {_said(html)}")
        async with self.session.post(action, data={"csrf": token.group(1), **fields}) as response:
            return response.status, await response.text(), response.headers

    async def submit_redirect_uris(self, link: str, uris: RedirectUris) -> None:
        """Step 1 on the service's page: the two URIs read in the PBX portal."""
        fields = {"redirect_uri": uris.redirect_uri, "sso_redirect_uri": uris.sso_redirect_uri or ""}
        status, html, _ = await self.submit(link, f"{link}/redirect-uris", **fields)
        if status != 200:
            raise PortalError(f"the page refused the redirect URIs ({status}): {_said(html)}")

    async def reveal_secret(self, link: str) -> SecretStr:
        """Click "Show the client secret" and copy it."""
        status, html, _ = await self.submit(link, f"{link}/reveal")
        shown = _SECRET.search(html)
        if shown is None:
            raise PortalError(f"the page showed no secret ({status}): {_said(html)}")
        return SecretStr(shown.group(1))

    async def confirm(self, link: str) -> None:
        """The page's confirmation button: signed in and Connected, or the new secret pasted."""
        status, html, _ = await self.submit(link, f"{link}/confirm")
        if status != 200:
            raise PortalError(f"the confirmation was refused ({status}): {_said(html)}")


def _said(html: str) -> str:
    notice = _NOTICE.search(html)
    return notice.group(1).strip() if notice else html[:200]


class PortalHuman:
    def __init__(self, yeastar_url: str, ca_file: Path) -> None:
        self._url = yeastar_url.rstrip("/") + PORTAL_PATH
        self._ssl = ssl.create_default_context(cafile=str(ca_file))
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PortalHuman:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._ssl))
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def _call(self, method: str, path: str = "", body: dict[str, Any] | None = None) -> dict[str, Any]:
        assert self._session is not None, "use `async with PortalHuman(...)`"
        async with self._session.request(method, self._url + path, json=body) as response:
            data: dict[str, Any] = await response.json()
            if response.status >= 400:
                raise PortalError(f"portal answered {response.status}: {data.get('error', data)}")
            return data

    async def page(self) -> dict[str, Any]:
        """What the Microsoft 365 integration page shows (status, sync counters, last error)."""
        return await self._call("GET")

    async def read_redirect_uris(self) -> RedirectUris:
        """Step 1: note the Redirect URI and the Client SSO Redirect URI."""
        page = await self.page()
        return RedirectUris(redirect_uri=page["redirect_uri"], sso_redirect_uri=page["sso_redirect_uri"])

    async def save_app_registration(self, client_id: str, tenant_id: str, secret: SecretStr) -> dict[str, Any]:
        """Step 6.3-6.5: paste client ID, tenant ID and client secret, click Save."""
        return await self._call(
            "POST",
            body={"client_id": client_id, "tenant_id": tenant_id, "client_secret": secret.get_secret_value()},
        )

    async def sign_in_and_accept(self, admin: str, *, for_organization: bool = True) -> dict[str, Any]:
        """Step 6.6-6.9: sign in as Global Administrator, Accept, OK. Returns the page afterwards."""
        page = await self._call(
            "POST", "/sign-in", {"user_principal_name": admin, "consent_for_organization": for_organization}
        )
        if page.get("status") != "Connected":
            raise PortalError(f"the PBX shows {page.get('status')}: {page.get('last_error')}")
        return page

    async def sync_now(self) -> dict[str, Any]:
        return await self._call("POST", "/sync")
