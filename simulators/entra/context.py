"""What every route handler of one simulator instance shares."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiohttp import web

from simulators.clock import Clock
from simulators.entra.catalog import GRAPH_APP_ID, TENANT_DOMAIN
from simulators.entra.config import EntraSimConfig
from simulators.entra.state import EntraState, ServicePrincipal

DEVICE_CODE_LIFETIME_SECONDS = 900
# Entra's authorization codes live about 10 minutes (v2-oauth2-auth-code-flow).
AUTHORIZATION_CODE_LIFETIME = timedelta(minutes=10)


@dataclass
class DeviceAuthorization:
    device_code: str
    user_code: str
    client_id: str
    scopes: list[str]
    expires: datetime
    approved_user_id: str | None = None


@dataclass
class AuthorizationCode:
    """An issued authorization code and what its redemption must match."""

    client_id: str
    redirect_uri: str
    scopes: list[str]
    user_id: str
    nonce: str | None
    code_challenge: str | None  # None: the authorization request used no PKCE
    code_challenge_method: str  # "S256" or "plain"
    expires: datetime
    redeemed: bool = False


@dataclass
class SimContext:
    config: EntraSimConfig
    state: EntraState
    clock: Clock
    rng: random.Random
    base_url: str = ""
    # Pending device-code sign-ins by device_code and by user_code (short-lived, not persisted).
    devices: dict[str, DeviceAuthorization] = field(default_factory=dict)
    devices_by_user_code: dict[str, DeviceAuthorization] = field(default_factory=dict)
    # Authorization codes by value (short-lived, not persisted); redeemed ones stay until they expire.
    authorization_codes: dict[str, AuthorizationCode] = field(default_factory=dict)

    async def now(self) -> datetime:
        return await self.clock.now()

    def replicated(self, created: datetime, now: datetime) -> bool:
        """Whether an object created at ``created`` is visible everywhere by ``now``."""
        return now >= created + timedelta(seconds=self.config.replication_delay_seconds)

    def token_time(self, now: datetime) -> datetime:
        """The time token lifetimes are measured in (see ``EntraSimConfig.tokens_follow_clock``)."""
        return now if self.config.tokens_follow_clock else datetime.now(UTC)

    def is_tenant(self, segment: str) -> bool:
        return segment.lower() in (self.config.tenant_id.lower(), TENANT_DOMAIN)

    @property
    def issuer(self) -> str:
        """The v2.0 issuer: in the discovery document and every ID token's ``iss``."""
        return f"{self.base_url}/{self.config.tenant_id}/v2.0"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/{self.config.tenant_id}/oauth2/v2.0/token"

    @property
    def graph_sp(self) -> ServicePrincipal:
        sp = self.state.service_principal_by_app_id(GRAPH_APP_ID)
        if sp is None:  # seeded at start and never deletable through the API
            raise RuntimeError("Microsoft Graph service principal missing from state")
        return sp


def new_id() -> str:
    return str(uuid.uuid4())


CTX_KEY = web.AppKey("entra_sim_context", SimContext)
# Set by the Graph middleware: the simulator time of the request (read once) and its IDs.
NOW_KEY = web.RequestKey("entra_sim_now", datetime)
REQUEST_ID_KEY = web.RequestKey("entra_sim_request_id", str)
# Set by the login middleware: the client's ``client-request-id`` (MSAL sends a fresh one per token
# request), else a random one. Entra records it as the sign-in's correlationId and echoes it in errors.
CORRELATION_ID_KEY = web.RequestKey("entra_sim_correlation_id", str)


def sim_of(request: web.Request) -> SimContext:
    return request.app[CTX_KEY]
