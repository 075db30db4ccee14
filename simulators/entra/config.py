"""Configuration of one Entra simulator instance; the fault knobs can change at run time."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from simulators.entra.catalog import (
    CUSTOMER_DOMAIN,
    CUSTOMER_TENANT_ID,
    DEFAULT_PROVISIONING_ROLES,
    PROVISIONING_APP_ID,
    SIM_TENANT_ID,
)


@dataclass(frozen=True)
class ExtraTenant:
    """Another tenant the simulator hosts next to the home one (an MSP's customer): its own directory
    (apps, service principals, assignments, users, groups, sign-ins, policy) with Microsoft Graph's
    service principal, a Global Administrator ``admin@{domain}`` and ``users`` more users. Chosen by the
    tenant in a login path (its ID or ``domain``) and by a Graph token's ``tid``."""

    tenant_id: str = CUSTOMER_TENANT_ID
    domain: str = CUSTOMER_DOMAIN
    users: int = 3

    @property
    def admin_upn(self) -> str:
        return f"admin@{self.domain}"


@dataclass
class EntraSimConfig:
    tenant_id: str = SIM_TENANT_ID
    provisioning_client_id: str = PROVISIONING_APP_ID
    provisioning_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32), repr=False)
    # Entra caps a secret at two years; a simulated decade needs the provisioning app to outlive that.
    provisioning_secret_lifetime_days: int = 730
    # If set, client assertions signed by this certificate's key are also accepted.
    provisioning_certificate_pem: bytes | None = field(default=None, repr=False)
    provisioning_roles: list[str] = field(default_factory=lambda: list(DEFAULT_PROVISIONING_ROLES))
    # More tenants (customers of an MSP); the provisioning app lives in the home tenant only.
    extra_tenants: list[ExtraTenant] = field(default_factory=list)
    # Faults (also settable through POST /_sim/faults).
    replication_delay_seconds: float = 0.0
    throttle_every_n_writes: int = 0  # 0 = never; every Nth Graph write answers 429
    retry_after_seconds: float = 1.0
    error_rate: float = 0.0  # fraction of Graph requests answering 503
    drop_rate: float = 0.0  # fraction of Graph requests whose connection is dropped
    # Fraction of Graph writes (POST/PATCH/PUT/DELETE) that are carried out and committed, and whose
    # connection is then dropped without an answer: the lost response a re-sent write must survive.
    drop_after_commit_rate: float = 0.0
    latency_ms: float = 0.0  # added to every Graph and token request
    seed: int = 0
    # Sign-in logs become visible this long after the sign-in (Entra: minutes).
    sign_in_delay_seconds: float = 0.0
    p1_license: bool = True  # beta sign-in endpoints answer 403 without it
    state_file: Path | None = None
    users: int = 5
    device_code_interval_seconds: int = 5
    # Every user's password on the simulated sign-in page (/authorize); a test value, guarding nothing real.
    user_password: str = "sim-password-123"
    # True: token lifetimes follow the simulator clock, so /_sim/clock/advance expires tokens that
    # MSAL (which caches by wall-clock time) still thinks valid; Graph then answers 401. False: tokens
    # expire by wall-clock time, for long clock jumps in workflow tests.
    tokens_follow_clock: bool = True
    # State-file writes are coalesced over this window so bursts of writes cost one rewrite.
    persist_debounce_seconds: float = 0.2


# Fields that POST /_sim/faults may change, with their types.
FAULT_FIELDS: dict[str, type] = {
    "replication_delay_seconds": float,
    "throttle_every_n_writes": int,
    "retry_after_seconds": float,
    "error_rate": float,
    "drop_rate": float,
    "drop_after_commit_rate": float,
    "latency_ms": float,
    "seed": int,
    "sign_in_delay_seconds": float,
}
