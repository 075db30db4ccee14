"""Fixtures for the simulator tests: simulators over real HTTPS (tests/conftest.py starts them), and a small
raw Graph client (aiohttp) so tests see exact status codes, headers and bodies."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from simulators.entra import EntraSimulator
from simulators.tls import LocalCA
from tests.conftest import StartEntra

GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"


@pytest.fixture
async def https(ca: LocalCA) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=ca.ca_file))
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


@pytest.fixture
async def entra(start_entra: StartEntra) -> EntraSimulator:
    return await start_entra()


@dataclass
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any

    @property
    def error_code(self) -> str:
        return str(self.body["error"]["code"])


class GraphSession:
    """Raw HTTPS calls against one simulator, with the provisioning app's token by default."""

    def __init__(self, http: aiohttp.ClientSession, sim: EntraSimulator) -> None:
        self.http = http
        self.sim = sim
        self._token: str | None = None

    async def token_response(
        self,
        client_id: str | None = None,
        secret: str | None = None,
        scope: str = GRAPH_DEFAULT_SCOPE,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id or self.sim.config.provisioning_client_id,
            "client_secret": secret or self.sim.config.provisioning_secret,
            "scope": scope,
        }
        url = f"{self.sim.authority}/oauth2/v2.0/token"
        async with self.http.post(url, data=form, headers=headers) as response:
            return Reply(response.status, response.headers, await response.json())

    async def token(self, client_id: str | None = None, secret: str | None = None) -> str:
        reply = await self.token_response(client_id, secret)
        assert reply.status == 200, reply.body
        return str(reply.body["access_token"])

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        if token is None:
            self._token = self._token or await self.token()
            token = self._token
        url = path if path.startswith("https://") else f"{self.sim.url}{path}"
        all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        async with self.http.request(method, url, json=json, headers=all_headers) as response:
            body = await response.json() if response.content_type == "application/json" else None
            return Reply(response.status, response.headers, body)

    async def admin(self, method: str, path: str, json: Any = None) -> Reply:
        async with self.http.request(method, f"{self.sim.url}{path}", json=json) as response:
            return Reply(response.status, response.headers, await response.json())


@pytest.fixture
def graph(https: aiohttp.ClientSession, entra: EntraSimulator) -> GraphSession:
    return GraphSession(https, entra)
