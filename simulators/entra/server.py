"""The Entra ID + Microsoft Graph simulator: one HTTPS host serving login, Graph and /_sim.

sim = await start_entra_simulator(EntraSimConfig(), server_ssl_context(ca))
... sim.url is both the MSAL authority host and the Graph base URL ...
await sim.stop()
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from simulators.clock import Clock, OffsetClock
from simulators.entra.admin import add_admin_routes
from simulators.entra.authorize import add_authorize_routes
from simulators.entra.config import EntraSimConfig
from simulators.entra.consent import add_consent_routes
from simulators.entra.context import (
    CORRELATION_ID_KEY,
    CTX_KEY,
    NOW_KEY,
    REQUEST_ID_KEY,
    TENANT_CTX_KEY,
    SimContext,
    new_id,
)
from simulators.entra.errors import AdminError, DropConnection, GraphError, OAuthError
from simulators.entra.faults import drop_after_commit, throttle_write, transport_faults
from simulators.entra.graph import PRINCIPAL_KEY, add_graph_routes
from simulators.entra.oauth import add_oauth_routes
from simulators.entra.persistence import StatePersister, load_state
from simulators.entra.seed import (
    ProvisioningCredentials,
    ensure_operators_group,
    extra_tenant_states,
    new_state,
    provisioning_credentials,
    reconcile_provisioning_app,
)
from simulators.entra.state import EntraState, RequestRecord
from simulators.entra.tokens import authenticate, bearer_token, decode
from simulators.sockets import bind, https_url

__all__ = ["EntraSimulator", "start_entra_simulator"]

log = logging.getLogger("simulators.entra")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
# Let in-flight requests finish on stop, but do not wait for idle keep-alive clients.
_SHUTDOWN_TIMEOUT = 2.0


def _json_error(status: int, body: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


async def _graph(request: web.Request, handler: Handler, ctx: SimContext) -> web.StreamResponse:
    now = request[NOW_KEY]
    # Graph acts in the tenant the token was issued in (its tid).
    authorization = request.headers.get("Authorization") or ""
    ctx = ctx.for_token(authorization.partition(" ")[2].strip())
    request[TENANT_CTX_KEY] = ctx
    request_id = new_id()
    client_request_id = request.headers.get("client-request-id") or request_id
    request[REQUEST_ID_KEY] = request_id
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else request.path
    write = request.method in _WRITE_METHODS
    ctx.state.count_request(request.method, route, write=write)
    response: web.StreamResponse
    try:
        transport_faults(ctx)
        principal = authenticate(ctx, bearer_token(authorization), now)
        request[PRINCIPAL_KEY] = principal
        if write:
            throttle_write(ctx, principal.app_id)
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            segment = request.path.rstrip("/").rsplit("/", 1)[-1]
            raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.") from None
        except web.HTTPMethodNotAllowed:
            raise GraphError(
                405, "Request_BadRequest", "Specified HTTP method is not allowed for the request uri."
            ) from None
        if write:
            drop_after_commit(ctx)
    except DropConnection:
        if request.transport is not None:
            request.transport.abort()
        ctx.state.request_log.append(RequestRecord(request.method, route, 0, request_id))
        log.debug("graph %s %s dropped", request.method, route)
        return web.Response(status=503)  # never reaches the client: the connection is gone
    except GraphError as exc:
        response = _json_error(exc.status, exc.body(request_id, client_request_id, now), exc.headers)
    response.headers["request-id"] = request_id
    response.headers["client-request-id"] = client_request_id
    ctx.state.request_log.append(RequestRecord(request.method, route, response.status, request_id))
    log.debug("graph %s %s -> %s", request.method, route, response.status)
    return response


async def _login(request: web.Request, handler: Handler, ctx: SimContext) -> web.StreamResponse:
    request[CORRELATION_ID_KEY] = request.headers.get("client-request-id") or new_id()
    # The tenant in the path (its ID or domain); an unknown one is reported by the handler (AADSTS90002).
    tenant = ctx.tenant(request.match_info.get("tenant", ""))
    if tenant is not None:
        request[TENANT_CTX_KEY] = ctx.for_tenant(tenant)
    try:
        return await handler(request)
    except OAuthError as exc:
        log.debug("token endpoint error AADSTS%s", exc.aadsts)
        body = exc.body(new_id(), request[CORRELATION_ID_KEY], request[NOW_KEY], ctx.base_url)
        return _json_error(exc.status, body)


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CTX_KEY]
    request[NOW_KEY] = await ctx.now()
    path = request.path
    if path.startswith("/_sim/") or path == "/devicelogin":
        try:
            return await handler(request)
        except AdminError as exc:
            return _json_error(exc.status, {"error": exc.message})
    if ctx.config.latency_ms > 0:
        await asyncio.sleep(ctx.config.latency_ms / 1000)
    if path.startswith(("/v1.0/", "/beta/")):
        return await _graph(request, handler, ctx)
    return await _login(request, handler, ctx)


class EntraSimulator:
    """A running simulator. ``state`` is live: tests may inspect it (and mutate it with care)."""

    def __init__(self, ctx: SimContext, runner: web.AppRunner, persister: StatePersister) -> None:
        self._ctx = ctx
        self._runner = runner
        self._persister = persister

    @property
    def url(self) -> str:
        return self._ctx.base_url

    @property
    def config(self) -> EntraSimConfig:
        return self._ctx.config

    @property
    def state(self) -> EntraState:
        """The home tenant's directory."""
        return self._ctx.state

    def tenant_state(self, tenant: str) -> EntraState:
        """A hosted tenant's directory, by its ID or domain (KeyError if it is not hosted here)."""
        state = self._ctx.tenant(tenant)
        if state is None:
            raise KeyError(f"no tenant {tenant!r} in this simulator")
        return state

    @property
    def clock(self) -> Clock:
        return self._ctx.clock

    @property
    def provisioning_credentials(self) -> ProvisioningCredentials:
        """The provisioning app's credentials carrying ``config.provisioning_secret`` / ``_certificate_pem``."""
        return provisioning_credentials(self._ctx)

    @property
    def authority(self) -> str:
        """The MSAL authority: ``{url}/{tenant}``."""
        return f"{self.url}/{self.config.tenant_id}"

    def authority_for(self, tenant: str) -> str:
        """The MSAL authority of another hosted tenant."""
        return f"{self.url}/{self.tenant_state(tenant).tenant_id}"

    async def verify_access_token(self, token: str) -> dict[str, Any]:
        """The claims of an access token this simulator issued, after checking its signature and expiry
        (by the simulator clock): how another simulator, such as Key Vault, validates its callers.
        Raises TokenInvalid (TokenExpired once its lifetime has passed)."""
        return decode(self._ctx.for_token(token), token, "access", await self._ctx.now())

    async def flush(self) -> None:
        """Write pending state to the state file now (it is otherwise written shortly after changes)."""
        await self._persister.flush()

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self._persister.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def start_entra_simulator(
    config: EntraSimConfig,
    ssl_context: ssl.SSLContext,
    *,
    host: str = "localhost",
    port: int = 0,
    clock: Clock | None = None,
) -> EntraSimulator:
    """Start serving on ``host:port`` (0 = a free port). The state comes from ``config.state_file``
    when it exists, else a freshly seeded tenant; the provisioning app is then aligned with ``config``."""
    clock = clock or OffsetClock()
    now = await clock.now()
    loaded = (load_state(config.state_file) if config.state_file else None) or []
    state = loaded[0] if loaded else new_state(config, now)
    tenants = [state, *extra_tenant_states(config, loaded[1:], now)]
    ctx = SimContext(
        config=config,
        state=state,
        clock=clock,
        rng=random.Random(config.seed),
        tenants={tenant.tenant_id.lower(): tenant for tenant in tenants},
    )
    persister = StatePersister(tenants, config.state_file, config.persist_debounce_seconds)
    reconcile_provisioning_app(ctx, now)
    ensure_operators_group(state)

    app = web.Application(middlewares=[_middleware])
    app[CTX_KEY] = ctx
    add_oauth_routes(app)
    add_authorize_routes(app)
    add_consent_routes(app)
    add_graph_routes(app)
    add_admin_routes(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        sockets = bind(host, port)
        for sock in sockets:
            await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        await persister.close()
        raise
    ctx.base_url = https_url(host, sockets[0].getsockname()[1])
    log.info(
        "Entra simulator listening on %s (tenant %s%s)",
        ctx.base_url,
        config.tenant_id,
        "".join(f", {extra.tenant_id} {extra.domain}" for extra in config.extra_tenants),
    )
    return EntraSimulator(ctx, runner, persister)
