"""Plays the administrator at the (simulated) PBX portal: the demo, the tests and the benchmarks use it
for the two human moments of the vendor's guide (steps 1 and 6)."""

from __future__ import annotations

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
