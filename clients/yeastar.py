"""Typed client for the Yeastar P-Series (Cloud Edition) OpenAPI v1.0.

Token handling is internal: one access token per client is reused, refreshed shortly before it
expires and revoked with ``del_token`` on close. A PBX allows only 8 valid access tokens per API
client, so every user of this class must close it (``async with YeastarClient(...)``).

Wrong credentials are never retried, not even by a later call on the same client: 5 failed logins
from one IP make the PBX block that IP for every API client.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import structlog
from pydantic import BaseModel, ConfigDict, SecretStr

from clients.errors import (
    ApiError,
    InvalidRequest,
    Throttled,
    Transient,
    YeastarAuthFailed,
    YeastarError,
    YeastarTokenExpired,
    YeastarTokenLimit,
)
from clients.retry import RetryConfig, call_with_retries
from common.logging import register_secret

API_PATH = "/openapi/v1.0"
# Microsoft 365 integration needs PBX firmware 84.8.0.25 or later (vendor guide, "Requirements").
MIN_FIRMWARE = (84, 8, 0, 25)
# From 84.10.0.30 the sign-in page offers "consent on behalf of your organization".
ORG_CONSENT_MIN_FIRMWARE = (84, 10, 0, 30)
# Refresh this long before the access token (30 min) expires, so no call races the expiry.
REFRESH_MARGIN_SECONDS = 300.0
USER_AGENT = "OpenAPI"

log = structlog.get_logger(__name__)


def parse_firmware(version: str) -> tuple[int, ...]:
    """``"84.12.0.30"`` → ``(84, 12, 0, 30)``; raises ``ValueError`` for anything else."""
    parts = version.strip().split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts):
        raise ValueError(f"not a Yeastar firmware version: {version!r}")
    return tuple(int(part) for part in parts)


class SystemInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    firmware_version: str
    model_name: str = ""
    device_name: str = ""

    @property
    def firmware(self) -> tuple[int, ...]:
        return parse_firmware(self.firmware_version)

    @property
    def supports_microsoft365(self) -> bool:
        return self.firmware >= MIN_FIRMWARE

    @property
    def supports_org_consent(self) -> bool:
        return self.firmware >= ORG_CONSENT_MIN_FIRMWARE


class Extension(BaseModel):
    """One row of ``extension/list`` (``Ext_Basicinfo``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: int
    number: str
    caller_id_name: str = ""
    email_addr: str = ""
    mobile_number: str = ""
    role_name: str = ""
    presence_status: str = ""
    online_status: dict[str, Any] = {}


@dataclass
class _Tokens:
    access: str = field(repr=False)
    refresh: str = field(repr=False)
    # time.monotonic()-style deadlines
    access_deadline: float
    refresh_deadline: float


class YeastarClient:
    """``async with YeastarClient(...) as pbx: await pbx.system_info()``; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: SecretStr,
        ca_bundle: Path | None = None,
        session: aiohttp.ClientSession | None = None,
        *,
        retry: RetryConfig | None = None,
        timeout_seconds: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``monotonic`` is injectable so tests can move the client's notion of time with the
        simulator clock."""
        self._base = base_url.rstrip("/") + API_PATH
        self._client_id = client_id
        self._secret = client_secret
        register_secret(client_secret.get_secret_value())
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle is not None else True
        )
        self._session = session
        self._own_session = session is None
        self._closed = False
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._retry = retry or RetryConfig()
        self._monotonic = monotonic
        self._tokens: _Tokens | None = None
        self._auth_failure: YeastarAuthFailed | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> YeastarClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Revoke the access token (frees one of the 8 slots) and close our own HTTP session."""
        async with self._lock:
            tokens, self._tokens = self._tokens, None
        try:
            if tokens is not None and self._monotonic() < tokens.access_deadline:
                await self._del_token(tokens.access)
        finally:
            self._closed = True
            if self._own_session and self._session is not None:
                await self._session.close()

    @property
    def refused(self) -> bool:
        """The PBX rejected these credentials: this client will not log in again (IP-block guard)."""
        return self._auth_failure is not None

    # --- public API ---------------------------------------------------------------------------

    async def system_info(self) -> SystemInfo:
        payload = await self._get("system/information", {})
        return SystemInfo.model_validate(payload.get("data") or {})

    async def list_extensions(self, page_size: int = 100) -> list[Extension]:
        """Every extension, page by page."""
        extensions: list[Extension] = []
        page = 1
        while True:
            payload = await self._get(
                "extension/list",
                {"page": str(page), "page_size": str(page_size), "sort_by": "id", "order_by": "asc"},
            )
            rows = payload.get("data") or []
            extensions.extend(Extension.model_validate(row) for row in rows)
            if not rows or len(extensions) >= int(payload.get("total_number", 0)):
                return extensions
            page += 1

    async def extension_count(self) -> int:
        payload = await self._get("extension/list", {"page": "1", "page_size": "1"})
        return int(payload.get("total_number", 0))

    # --- tokens -------------------------------------------------------------------------------

    async def _access_token(self) -> str:
        async with self._lock:
            if self._auth_failure is not None:
                failure = self._auth_failure
                raise YeastarAuthFailed(failure.message, errcode=failure.errcode, status=failure.status)
            now = self._monotonic()
            tokens = self._tokens
            if tokens is not None and now < tokens.access_deadline - REFRESH_MARGIN_SECONDS:
                return tokens.access
            if tokens is not None and now < tokens.refresh_deadline - REFRESH_MARGIN_SECONDS:
                try:
                    self._tokens = await self._token_request("refresh_token", {"refresh_token": tokens.refresh})
                    return self._tokens.access
                except YeastarError as error:
                    # A rejected refresh token (expired, revoked) only means: log in again.
                    log.info("yeastar.refresh_rejected", errcode=error.errcode)
            self._tokens = None
            try:
                self._tokens = await self._token_request(
                    "get_token", {"username": self._client_id, "password": self._secret.get_secret_value()}
                )
            except YeastarAuthFailed as error:
                self._auth_failure = error
                raise
            return self._tokens.access

    async def _token_request(self, endpoint: str, body: dict[str, str]) -> _Tokens:
        started = self._monotonic()

        async def attempt() -> dict[str, Any]:
            return self._check(endpoint, await self._exchange("POST", endpoint, body=body))

        # Not idempotent: a lost answer may still have issued a token (one of the 8), so only a
        # request the PBX provably refused is sent again.
        payload = await call_with_retries(attempt, self._retry, idempotent=False, describe=f"yeastar {endpoint}")
        try:
            tokens = _Tokens(
                access=str(payload["access_token"]),
                refresh=str(payload["refresh_token"]),
                access_deadline=started + float(payload["access_token_expire_time"]),
                refresh_deadline=started + float(payload["refresh_token_expire_time"]),
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidRequest(f"Yeastar {endpoint} answer lacks the token fields") from None
        log.info("yeastar.token", action=endpoint, expires_in=payload["access_token_expire_time"])
        return tokens

    async def _expire(self, access: str) -> None:
        """The PBX says this token expired: make the next call refresh it (unless another call did)."""
        async with self._lock:
            if self._tokens is not None and self._tokens.access == access:
                self._tokens.access_deadline = float("-inf")

    async def _del_token(self, access: str) -> None:
        async def attempt() -> dict[str, Any]:
            payload = await self._exchange("GET", "del_token", query={"access_token": access})
            return self._check("del_token", payload)

        try:
            await call_with_retries(attempt, self._retry, idempotent=True, describe="yeastar del_token")
        except YeastarTokenExpired:
            pass  # already gone: nothing to free
        except ApiError as error:
            # Not fatal, but the token keeps one of the 8 slots until it expires (30 min).
            log.warning("yeastar.del_token_failed", error=str(error))

    # --- HTTP ---------------------------------------------------------------------------------

    async def _get(self, endpoint: str, query: dict[str, str]) -> dict[str, Any]:
        """An authorised GET; on TOKEN EXPIRED refresh the token and try once more."""
        access = await self._access_token()
        try:
            return await self._get_with(access, endpoint, query)
        except YeastarTokenExpired:
            await self._expire(access)
        return await self._get_with(await self._access_token(), endpoint, query)

    async def _get_with(self, access: str, endpoint: str, query: dict[str, str]) -> dict[str, Any]:
        async def attempt() -> dict[str, Any]:
            payload = await self._exchange("GET", endpoint, query={**query, "access_token": access})
            return self._check(endpoint, payload)

        return await call_with_retries(attempt, self._retry, idempotent=True, describe=f"yeastar {endpoint}")

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("YeastarClient used after close()")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    async def _exchange(
        self,
        method: str,
        endpoint: str,
        *,
        query: dict[str, str] | None = None,
        body: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One HTTP request. Errors never include the URL: its query string holds the token."""
        try:
            async with self._http().request(
                method,
                f"{self._base}/{endpoint}",
                params=query,
                json=body,
                headers={"User-Agent": USER_AGENT},
                ssl=self._ssl,
                timeout=self._timeout,
            ) as response:
                status, text = response.status, await response.text()
                retry_after = response.headers.get("Retry-After")
        except aiohttp.ClientSSLError as exc:
            raise ApiError(
                f"TLS with the Yeastar PBX failed ({type(exc).__name__}): check the CA bundle", code="TLS"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Transient(f"Yeastar {endpoint}: {type(exc).__name__}") from None
        payload = _json_object(text)
        errcode = "" if payload is None else str(payload.get("errcode", ""))
        if status == 429:
            raise Throttled(f"Yeastar {endpoint} throttled", retry_after=_seconds(retry_after), code=errcode)
        if status >= 500:
            raise Transient(f"Yeastar {endpoint}: HTTP {status}", status=status, code=errcode)
        if status != 200 or payload is None:
            raise InvalidRequest(
                f"Yeastar {endpoint}: HTTP {status} without an OpenAPI answer (check the base URL)",
                status=status,
            )
        return payload

    @staticmethod
    def _check(endpoint: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Map ``errcode`` to our exceptions (messages carry ``errmsg`` only, never a request)."""
        errcode = payload.get("errcode")
        if errcode == 0:
            return payload
        errmsg = str(payload.get("errmsg", ""))
        if not isinstance(errcode, int):
            raise InvalidRequest(f"Yeastar {endpoint}: answer without errcode")
        if errcode == -2:
            raise Transient(f"Yeastar {endpoint}: {errmsg}", status=200, code=str(errcode))
        if errcode == 10004:
            raise YeastarTokenExpired(f"Yeastar {endpoint}: {errmsg}", errcode=errcode)
        if errcode == 70004:
            raise YeastarAuthFailed(
                f"{errmsg}: the PBX blocked this IP after 5 failed API logins; remove it under "
                "Security > Security Rules > Blocked IP in the PBX portal after fixing the credentials",
                errcode=errcode,
            )
        if endpoint == "get_token" and "MAX LIMITATION" in errmsg.upper():
            raise YeastarTokenLimit(
                f"{errmsg}: this API client already holds 8 valid access tokens; they free up when "
                "revoked (del_token) or after 30 minutes",
                errcode=errcode,
            )
        if endpoint == "get_token" and errcode == -1:
            raise YeastarAuthFailed(
                f"{errmsg}: the PBX rejected the API client ID or secret (Integrations > API). "
                "Not retried: 5 failed logins from one IP get that IP blocked",
                errcode=errcode,
            )
        raise YeastarError(f"Yeastar {endpoint}: {errmsg}", errcode=errcode)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _seconds(header: str | None) -> float:
    try:
        return max(0.0, float(header)) if header else 1.0
    except ValueError:
        return 1.0
