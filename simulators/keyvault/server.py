"""The Azure Key Vault simulator: one vault's secrets data plane over HTTPS, plus /_sim.

sim = await start_keyvault_simulator(KeyVaultSimConfig(), server_ssl_context(ca), issuer=entra_sim)
... sim.url is the vault URL (SecretClient's vault_url); its tokens come from entra_sim ...
await sim.stop()

Every data-plane request goes through, in order: authentication (401 with the challenge), the
api-version check (400), injected throttling (429), then the handler, which checks the vault's access
(403) for its operation.
"""

from __future__ import annotations

import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from aiohttp import web

from simulators.clock import Clock, OffsetClock
from simulators.entra.errors import AdminError
from simulators.keyvault.admin import add_admin_routes
from simulators.keyvault.auth import PRINCIPAL_KEY, authenticate
from simulators.keyvault.config import API_VERSIONS, LATEST_API_VERSION, KeyVaultSimConfig
from simulators.keyvault.context import CTX_KEY, NOW_KEY, TokenIssuer, VaultContext
from simulators.keyvault.errors import VaultError, bad_parameter
from simulators.keyvault.faults import throttle
from simulators.keyvault.secrets import add_secret_routes
from simulators.keyvault.state import VaultState
from simulators.sockets import bind, https_url

__all__ = ["KeyVaultSimulator", "start_keyvault_simulator"]

log = logging.getLogger("simulators.keyvault")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Let in-flight requests finish on stop, but do not wait for idle keep-alive clients.
_SHUTDOWN_TIMEOUT = 2.0


def _check_api_version(version: str | None) -> None:
    if not version:
        raise bad_parameter("The api-version query parameter is required.")
    if version not in API_VERSIONS:
        raise bad_parameter(
            f"The specified version ({version}) is not recognized. Consider using the latest supported version "
            f"({LATEST_API_VERSION})."
        )


async def _data_plane(request: web.Request, handler: Handler, ctx: VaultContext) -> web.StreamResponse:
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    ctx.state.count_request(request.method, route)
    now = await ctx.clock.now()
    request[NOW_KEY] = now
    ctx.state.purge_due(int(now.timestamp()))
    response: web.StreamResponse
    try:
        request[PRINCIPAL_KEY] = await authenticate(ctx, request.headers.get("Authorization"))
        _check_api_version(request.query.get("api-version"))
        throttle(ctx)
        response = await handler(request)
    except VaultError as exc:
        response = web.json_response(exc.body(), status=exc.status, headers=exc.headers)
    response.headers["x-ms-request-id"] = str(uuid.uuid4())
    response.headers["x-ms-keyvault-region"] = ctx.config.location
    if client_request_id := request.headers.get("x-ms-client-request-id"):
        response.headers["x-ms-client-request-id"] = client_request_id
    log.debug("keyvault %s %s -> %s", request.method, route, response.status)
    return response


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX_KEY]
    if request.path.startswith("/_sim/"):
        try:
            return await handler(request)
        except AdminError as exc:
            return web.json_response({"error": exc.message}, status=exc.status)
    return await _data_plane(request, handler, ctx)


class KeyVaultSimulator:
    """A running simulator. ``state`` and ``config`` are live: tests may inspect and change them."""

    def __init__(self, ctx: VaultContext, runner: web.AppRunner) -> None:
        self._ctx = ctx
        self._runner = runner

    @property
    def url(self) -> str:
        """The vault URL, as ``https://{name}.vault.azure.net`` would be."""
        return self._ctx.base_url

    @property
    def config(self) -> KeyVaultSimConfig:
        return self._ctx.config

    @property
    def state(self) -> VaultState:
        return self._ctx.state

    @property
    def clock(self) -> Clock:
        return self._ctx.clock

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def start_keyvault_simulator(
    config: KeyVaultSimConfig,
    ssl_context: ssl.SSLContext,
    *,
    issuer: TokenIssuer,
    host: str = "localhost",
    port: int = 0,
    clock: Clock | None = None,
) -> KeyVaultSimulator:
    """Start serving an empty vault on ``host:port`` (0 = a free port) that accepts the access tokens
    ``issuer`` signs for Key Vault. Secrets live in memory only: a restart empties the vault."""
    ctx = VaultContext(config=config, state=VaultState(), clock=clock or OffsetClock(), issuer=issuer)
    app = web.Application(middlewares=[_middleware])
    app[CTX_KEY] = ctx
    add_secret_routes(app)
    add_admin_routes(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        sockets = bind(host, port)
        for sock in sockets:
            await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        raise
    ctx.base_url = https_url(host, sockets[0].getsockname()[1])
    log.info("Key Vault simulator listening on %s (tenant %s)", ctx.base_url, ctx.tenant_id)
    return KeyVaultSimulator(ctx, runner)
