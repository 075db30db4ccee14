"""Configuration of one Key Vault simulator instance; the vault's access and fault knobs can change at
run time (through /_sim)."""

from __future__ import annotations

from dataclasses import dataclass

# The data-plane versions azure-keyvault-secrets 4.12 offers (ApiVersion); its default is the newest.
API_VERSIONS = ("7.0", "7.1", "7.2", "7.3", "7.4", "7.5", "7.6", "2025-07-01", "2026-04-01")
LATEST_API_VERSION = API_VERSIONS[-1]


@dataclass
class KeyVaultSimConfig:
    # Where a real vault's name and region show: in 403 messages and the x-ms-keyvault-region header.
    vault_name: str = "yec-sim-vault"
    location: str = "westeurope"
    # App IDs (the token's appid / azp) allowed to use the vault; None lets in any app of the tenant.
    allowed_app_ids: frozenset[str] | None = None
    # Purge protection: soft-deleted secrets can then only wait out the retention period.
    purge_protection: bool = False
    soft_delete_retention_days: int = 90  # 7 to 90, as a vault allows
    # How long a deletion takes, in wall-clock seconds: until then the name is neither a secret nor a
    # deleted secret (the SDK's delete poller waits this out). Wall clock rather than the simulator
    # clock: a frozen or time-skipped simulator clock would never let a deletion finish.
    delete_delay_seconds: float = 0.2
    # Retry-After of an injected 429 (POST /_sim/faults). Key Vault sends whole seconds; fractions are
    # kept so fast tests need not wait a full second.
    retry_after_seconds: float = 1.0

    def __post_init__(self) -> None:
        if not 7 <= self.soft_delete_retention_days <= 90:
            raise ValueError("soft_delete_retention_days must be between 7 and 90, as a vault's retention is")
