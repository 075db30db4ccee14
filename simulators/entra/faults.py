"""Fault injection for Graph requests, driven by the config knobs and one seeded random.Random so a
run with the same seed and the same request sequence fails the same way."""

from __future__ import annotations

from simulators.entra.context import SimContext
from simulators.entra.errors import DropConnection, GraphError


def _seconds(value: float) -> str:
    # Graph sends whole seconds; fractions are kept so fast tests need not wait a full second.
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def transport_faults(ctx: SimContext) -> None:
    """Dropped connections and 503s, drawn per request."""
    config = ctx.config
    if config.drop_rate > 0 and ctx.rng.random() < config.drop_rate:
        raise DropConnection()
    if config.error_rate > 0 and ctx.rng.random() < config.error_rate:
        raise GraphError(503, "ServiceUnavailable", "The service is temporarily unavailable. Please retry later.")


def drop_after_commit(ctx: SimContext) -> None:
    """Called after a write's handler succeeded: drop the connection so the answer is lost."""
    rate = ctx.config.drop_after_commit_rate
    if rate > 0 and ctx.rng.random() < rate:
        raise DropConnection()


def throttle_write(ctx: SimContext, caller_app_id: str) -> None:
    """Every Nth Graph write (counted by ``state.write_count``) answers 429, like the identity write limits."""
    every = ctx.config.throttle_every_n_writes
    if every > 0 and ctx.state.write_count % every == 0:
        raise GraphError(
            429,
            "TooManyRequests",
            "Too many requests.",
            headers={
                "Retry-After": _seconds(ctx.config.retry_after_seconds),
                "x-ms-throttle-scope": f"Tenant_Application/ReadWrite/{ctx.tenant_id}/{caller_app_id}",
                "x-ms-throttle-information": "Throttled by the identity write limit of the app and tenant",
            },
        )
