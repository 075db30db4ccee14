"""Maps client errors to Temporal application errors: retryable ones are left to the retry policy,
the others become non-retryable with the fix in plain words (the workflow parks them in Blocked)."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from clients.errors import (
    ApiError,
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Throttled,
    YeastarAuthFailed,
    YeastarError,
)

# The workflow's heartbeat timeout for these activities is a few times this.
HEARTBEAT_EVERY = timedelta(seconds=3)

P = ParamSpec("P")
R = TypeVar("R")

_FIXES: list[tuple[type[ApiError], str]] = [
    (
        PermissionDenied,
        "Give the provisioning app the Microsoft Graph application permissions listed in the README "
        "(Entra admin center > App registrations > your provisioning app > API permissions > "
        "Grant admin consent), wait a minute, then retry.",
    ),
    (
        AuthenticationFailed,
        "Entra rejected the credentials. For the provisioning identity check YEC_ENTRA__TENANT_ID, "
        "YEC_ENTRA__CLIENT_ID and its secret/certificate (not expired?), restart the worker, then retry.",
    ),
    (
        NotFound,
        "An object this integration created is gone from Entra (deleted outside this service?). Restore it "
        "from Entra admin center > App registrations > Deleted applications within 30 days, or retry to "
        "recreate it.",
    ),
    (InvalidRequest, "Entra rejected the request as invalid; check the inputs shown, then retry."),
    (
        YeastarAuthFailed,
        "Check YEC_YEASTAR__CLIENT_ID / YEC_YEASTAR__CLIENT_SECRET against PBX portal > Integrations > API. "
        "Careful: 5 failed logins block this IP on the PBX.",
    ),
    (YeastarError, "Check the PBX's OpenAPI settings (Integrations > API), then retry."),
]


def blocking(error_type: str, message: str, fix: str) -> ApplicationError:
    """A failure retrying cannot fix: the workflow shows ``message`` and ``fix`` and waits for `retry`."""
    return ApplicationError(message, fix, type=error_type, non_retryable=True)


def to_application_error(error: ApiError) -> ApplicationError:
    if error.retryable:
        delay = timedelta(seconds=error.retry_after) if isinstance(error, Throttled) else None
        return ApplicationError(str(error), type=type(error).__name__, next_retry_delay=delay)
    return blocking(type(error).__name__, str(error), _fix_for(error))


def _fix_for(error: ApiError) -> str:
    if isinstance(error, PermissionDenied) and error.permission:
        return (
            f"Give the provisioning app the Microsoft Graph application permission {error.permission} (Entra "
            "admin center > App registrations > your provisioning app > API permissions > Add a permission > "
            "Microsoft Graph > Application permissions, then Grant admin consent), wait a minute, then retry."
        )
    return next((text for kind, text in _FIXES if isinstance(error, kind)), "See the worker log, then retry.")


def graph_activity(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Wrap an activity: heartbeat while it runs (so a killed worker is noticed within the heartbeat
    timeout, not the 3-minute start-to-close) and hand client errors to the workflow classified."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        heartbeat = asyncio.create_task(_heartbeat_every(HEARTBEAT_EVERY.total_seconds()))
        try:
            return await fn(*args, **kwargs)
        except ApiError as error:
            raise to_application_error(error) from None
        finally:
            heartbeat.cancel()

    return wrapper


async def _heartbeat_every(seconds: float) -> None:
    # The heartbeat timeout runs from the start, so most steps (done in well under `seconds`) never
    # need to send one; each heartbeat is a round trip through the worker to the server.
    while True:
        await asyncio.sleep(seconds)
        activity.heartbeat()
