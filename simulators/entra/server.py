"""The Entra ID + Microsoft Graph simulator: one HTTPS host serving login, Graph and /_sim.

sim = await start_entra_simulator(EntraSimConfig(), server_ssl_context(ca))
... sim.url is both the MSAL authority host and the Graph base URL ...
await sim.stop()
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Self

from aiohttp import web

from simulators.clock import Clock, OffsetClock
from simulators.entra.admin import add_admin_routes
from simulators.entra.authorize import add_authorize_routes
from simulators.entra.config import EntraSimConfig
from simulators.entra.context import CORRELATION_ID_KEY, CTX_KEY, NOW_KEY, REQUEST_ID_KEY, SimContext, new_id
from simulators.entra.errors import AdminError, DropConnection, GraphError, OAuthError
from simulators.entra.faults import drop_after_commit, throttle_write, transport_faults
from simulators.entra.graph import PRINCIPAL_KEY, add_graph_routes
from simulators.entra.oauth import add_oauth_routes
from simulators.entra.persistence import StatePersister, load_state
from simulators.entra.seed import (
    ProvisioningCredentials,
    ensure_operators_group,
    new_state,
    provisioning_credentials,
    reconcile_provisioning_app,
)
from simulators.entra.state import EntraState, RequestRecord
from simulators.entra.tokens import authenticate

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
        principal = authenticate(ctx, request.headers.get("Authorization"), now)
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


def _listening_socket(family: socket.AddressFamily, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
    except OSError:
        sock.close()
        raise
    return sock


def _bind(host: str, port: int) -> list[socket.socket]:
    """Sockets for ``host``. For "localhost" both loopbacks on one port, so a client reaches this
    server whichever address ``localhost`` resolves to first."""
    if host != "localhost":
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        return [_listening_socket(family, str(address[0]), port)]
    for _ in range(20):
        v4 = _listening_socket(socket.AF_INET, "127.0.0.1", port)
        try:
            v6 = _listening_socket(socket.AF_INET6, "::1", v4.getsockname()[1])
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and port == 0:
                v4.close()
                continue
            return [v4]  # no IPv6 loopback on this machine
        return [v4, v6]
    raise OSError(errno.EADDRINUSE, "no port free on both 127.0.0.1 and ::1")


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
        return self._ctx.state

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
    state = (load_state(config.state_file) if config.state_file else None) or new_state(config, now)
    ctx = SimContext(config=config, state=state, clock=clock, rng=random.Random(config.seed))
    persister = StatePersister(state, config.state_file, config.persist_debounce_seconds)
    reconcile_provisioning_app(ctx, now)
    ensure_operators_group(state)

    app = web.Application(middlewares=[_middleware])
    app[CTX_KEY] = ctx
    add_oauth_routes(app)
    add_authorize_routes(app)
    add_graph_routes(app)
    add_admin_routes(app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        sockets = _bind(host, port)
        for sock in sockets:
            await web.SockSite(runner, sock, ssl_context=ssl_context).start()
    except BaseException:
        await runner.cleanup()
        await persister.close()
        raise
    bound_port = sockets[0].getsockname()[1]
    url_host = "localhost" if host in ("localhost", "0.0.0.0", "::", "") else host
    if ":" in url_host:
        url_host = f"[{url_host}]"
    ctx.base_url = f"https://{url_host}:{bound_port}"
    log.info("Entra simulator listening on %s (tenant %s)", ctx.base_url, config.tenant_id)
    return EntraSimulator(ctx, runner, persister)
