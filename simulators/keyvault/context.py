"""What every route handler of one Key Vault simulator shares, and what it needs from its tenant's
identity provider."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from simulators.clock import Clock
from simulators.keyvault.config import KeyVaultSimConfig
from simulators.keyvault.state import VaultState


class TokenIssuer(Protocol):
    """The vault's tenant: an EntraSimulator fits."""

    @property
    def authority(self) -> str:
        """``{authority host}/{tenant ID}``: where the vault's 401 challenge sends clients for a token."""
        ...

    async def verify_access_token(self, token: str) -> dict[str, Any]:
        """The token's claims once its signature and expiry are checked; raises
        simulators.entra.tokens.TokenInvalid (TokenExpired for an expired token)."""
        ...


@dataclass
class VaultContext:
    config: KeyVaultSimConfig
    state: VaultState
    clock: Clock
    issuer: TokenIssuer
    base_url: str = ""

    @property
    def tenant_id(self) -> str:
        return self.issuer.authority.rstrip("/").rsplit("/", 1)[-1]

    @property
    def recovery_level(self) -> str:
        """``attributes.recoveryLevel`` of every secret: soft delete is always on here; "Purgeable" only
        without purge protection; "Customized" below 90 days of retention."""
        level = "Recoverable" if self.config.soft_delete_retention_days >= 90 else "CustomizedRecoverable"
        return level if self.config.purge_protection else f"{level}+Purgeable"


CTX_KEY = web.AppKey("keyvault_sim_context", VaultContext)
# The simulator time of the request, read once by the middleware.
NOW_KEY = web.RequestKey("keyvault_sim_now", datetime)


def vault_of(request: web.Request) -> VaultContext:
    return request.app[CTX_KEY]
