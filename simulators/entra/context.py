"""What every route handler of one simulator instance shares."""

from __future__ import annotations

import dataclasses
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import jwt
from aiohttp import web

from simulators.clock import Clock
from simulators.entra.catalog import GRAPH_APP_ID
from simulators.entra.config import EntraSimConfig
from simulators.entra.state import Application, DirectoryUser, EntraState, ServicePrincipal

# Login path segments that name no tenant: the signed-in user's home tenant is meant.
MULTI_TENANT_SEGMENTS = frozenset({"organizations", "common"})

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
    # The tenant of the devicecode request; None for /organizations (the user's home tenant).
    tenant_id: str | None = None
    approved_user_id: str | None = None
    approved_tenant_id: str | None = None
    # Why the sign-in ended without a token (the user could not consent), as AADSTS number + text.
    declined: tuple[int, str] | None = None


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
    """Shared by every request; ``state`` is one tenant's directory. The application's context is the
    home tenant's; a request about another tenant gets a copy bound to that tenant (:meth:`for_tenant`)
    sharing everything else (clock, faults, pending sign-ins, the tenant registry)."""

    config: EntraSimConfig
    state: EntraState
    clock: Clock
    rng: random.Random
    base_url: str = ""
    # Every tenant's directory by lower-case tenant ID, the home tenant included.
    tenants: dict[str, EntraState] = field(default_factory=dict)
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

    @property
    def tenant_id(self) -> str:
        """The tenant this context acts in."""
        return self.state.tenant_id

    @property
    def domain(self) -> str:
        return self.state.domain

    def tenant(self, segment: str) -> EntraState | None:
        """The tenant a login path segment or a tenant claim names (its ID or its domain)."""
        key = segment.lower()
        found = self.tenants.get(key)
        return found or next((t for t in self.tenants.values() if t.domain.lower() == key), None)

    def is_tenant(self, segment: str) -> bool:
        return self.tenant(segment) is not None

    def for_tenant(self, state: EntraState) -> SimContext:
        """This context acting in ``state``'s tenant."""
        return self if state is self.state else dataclasses.replace(self, state=state)

    def for_token(self, token: str) -> SimContext:
        """The context of the tenant an access token was issued in (its ``tid``, read unverified: the
        signature is then checked with that tenant's key). Unknown or unreadable: this context."""
        try:
            tid = jwt.decode(token, options={"verify_signature": False}).get("tid")
        except jwt.PyJWTError:
            return self
        state = self.tenants.get(str(tid).lower()) if tid else None
        return self.for_tenant(state) if state is not None else self

    def find_user(self, upn: str) -> tuple[EntraState, DirectoryUser] | None:
        """A user by UPN in whichever tenant holds it."""
        for state in self.tenants.values():
            user = state.user(upn)
            if user is not None:
                return state, user
        return None

    def client_application(self, app_id: str) -> Application | None:
        """The app registration a client ID names in this tenant: its own, or a multi-tenant app of another
        tenant that has a service principal here (provisioned by consent). None: Entra's AADSTS700016."""
        app = self.state.application_by_app_id(app_id)
        if app is not None:
            return app
        sp = self.state.service_principal_by_app_id(app_id)
        home = self.tenants.get(sp.app_owner_organization_id.lower()) if sp is not None else None
        return home.application_by_app_id(app_id) if home is not None else None

    @property
    def issuer(self) -> str:
        """The v2.0 issuer: in the discovery document and every ID token's ``iss``."""
        return f"{self.base_url}/{self.tenant_id}/v2.0"

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/token"

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
# Set by the middleware when the request is about another tenant than the home one.
TENANT_CTX_KEY = web.RequestKey("entra_sim_tenant_context", SimContext)


def sim_of(request: web.Request) -> SimContext:
    """The context of the tenant the request is about (the home tenant unless the path or token says
    otherwise)."""
    tenant_ctx: SimContext | None = request.get(TENANT_CTX_KEY)
    return tenant_ctx if tenant_ctx is not None else request.app[CTX_KEY]
