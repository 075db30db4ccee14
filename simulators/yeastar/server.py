"""HTTPS Yeastar P-Series Cloud Edition simulator: OpenAPI subset, portal stand-in, admin API.

Admin API (simulator only, no auth):
- ``GET /_sim/state``: tokens (counts only), counters, blocked IPs, extensions, portal page
- ``POST /_sim/faults {"fail_next": N}``: answer the next N OpenAPI requests with HTTP 503
- ``DELETE /_sim/blocked-ips``: what the admin does under Security > Blocked IPs
"""

from __future__ import annotations

import json
import secrets
import ssl
from dataclasses import asdict, dataclass, field
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from simulators.clock import Clock, OffsetClock
from simulators.yeastar.openapi import OpenApi
from simulators.yeastar.portal import Portal
from simulators.yeastar.state import YeastarState, load_cipher, save_state

log = structlog.get_logger(__name__)


@dataclass
class YeastarSimConfig:
    api_client_id: str = "yeastar-api-client"
    api_client_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    firmware_version: str = "84.12.0.30"
    pbx_domain: str = "contoso.ras.yeastarcloud.com"
    sync_interval_seconds: float = 5.0
    extensions: int = 5
    state_file: Path | None = None
    # The Entra simulator the portal stand-in syncs from, and the CA file to trust it.
    entra_url: str | None = None
    entra_ca_file: Path | None = None


class _AccessLogger(AbstractAccessLogger):
    """Path only: the query string carries the access token."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        log.debug(
            "yeastar_sim.http",
            method=request.method,
            path=request.path,
            status=response.status,
            ms=round(time * 1000, 1),
        )


class YeastarSimulator:
    def __init__(
        self,
        url: str,
        config: YeastarSimConfig,
        state: YeastarState,
        *,
        clock: Clock,
        runner: web.AppRunner,
        portal: Portal,
    ) -> None:
        self.url = url
        self.config = config
        self.state = state
        self.clock = clock
        self._runner = runner
        self._portal = portal

    async def stop(self) -> None:
        await self._portal.stop()
        await self._runner.cleanup()


async def start_yeastar_simulator(
    config: YeastarSimConfig,
    ssl_context: ssl.SSLContext,
    *,
    host: str = "localhost",
    port: int = 0,
    clock: Clock | None = None,
) -> YeastarSimulator:
    clock = clock or OffsetClock()
    state = YeastarState(config.api_client_id, config.api_client_secret)
    state_file = config.state_file
    cipher = load_cipher(state_file.with_name(state_file.name + ".key")) if state_file else None
    if state_file is not None and state_file.is_file():
        state.load_json(json.loads(state_file.read_text()), cipher)
    else:
        state.seed_extensions(config.extensions)

    def persist() -> None:
        if state_file is not None and cipher is not None:
            save_state(state, state_file, cipher)

    openapi = OpenApi(config, state, clock, persist)
    portal = Portal(config, state, clock, persist)
    app = web.Application()
    openapi.add_routes(app)
    portal.add_routes(app)

    async def sim_state(request: web.Request) -> web.Response:
        now = await clock.now()
        return web.json_response(
            {
                "now": now.isoformat(),
                "firmware_version": config.firmware_version,
                "tokens": {"valid_access_tokens": state.valid_access_tokens(now), **asdict(state.counters)},
                "failed_logins": state.failed_logins,
                "blocked_ips": sorted(state.blocked_ips),
                "fail_next": state.fail_next,
                "extensions": [asdict(e) for e in state.extensions],
                "portal": portal.view(),
            }
        )

    async def faults(request: web.Request) -> web.Response:
        body = await request.json()
        fail_next = body.get("fail_next") if isinstance(body, dict) else None
        if not isinstance(fail_next, int) or fail_next < 0:
            return web.json_response({"error": "fail_next: non-negative integer required"}, status=400)
        state.fail_next = fail_next
        return web.json_response({"fail_next": state.fail_next})

    async def unblock(request: web.Request) -> web.Response:
        state.blocked_ips.clear()
        state.failed_logins.clear()
        persist()
        return web.json_response({"blocked_ips": []})

    app.router.add_get("/_sim/state", sim_state)
    app.router.add_post("/_sim/faults", faults)
    app.router.add_delete("/_sim/blocked-ips", unblock)

    runner = web.AppRunner(app, access_log_class=_AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    bound_port = runner.addresses[0][1]
    await portal.start()
    persist()
    url = f"https://{host}:{bound_port}"
    log.info("yeastar_sim.started", url=url, firmware=config.firmware_version, extensions=len(state.extensions))
    return YeastarSimulator(url, config, state, clock=clock, runner=runner, portal=portal)
