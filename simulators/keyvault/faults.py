"""Injected faults: Key Vault's throttling (429 with Retry-After), for the next N requests that get
past authentication (set through POST /_sim/faults)."""

from __future__ import annotations

from simulators.keyvault.context import VaultContext
from simulators.keyvault.errors import throttled


def throttle(ctx: VaultContext) -> None:
    if ctx.state.throttle_next > 0:
        ctx.state.throttle_next -= 1
        raise throttled(ctx.config.retry_after_seconds)
