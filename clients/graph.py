"""Microsoft Graph client (aiohttp): the calls the service makes, typed, with Graph's errors mapped
to :mod:`clients.errors` and every retry delegated to :func:`clients.retry.call_with_retries`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import quote, urlsplit
from uuid import uuid4

import aiohttp
from pydantic import BaseModel

from clients.errors import (
    ApiError,
    Conflict,
    InvalidRequest,
    NotFound,
    NotYetReplicated,
    PermissionDenied,
    Throttled,
    Transient,
)
from clients.graph_models import (
    Application,
    AppManagementPolicy,
    AppRoleAssignment,
    KeyCredential,
    NewPassword,
    OAuth2PermissionGrant,
    PasswordCredential,
    ServicePrincipal,
    SignIn,
    User,
)
from clients.retry import DEFAULT_RETRY, RetryConfig, Sleep, call_with_retries
from common.metrics import GRAPH_REQUESTS, GRAPH_THROTTLED

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

M = TypeVar("M", bound=BaseModel)

# Replication lag (DOMAIN.md §2): (status, lower-case fragment of the message). These succeed later.
_REPLICATION_MESSAGES = (
    (400, "does not reference a valid application object"),  # SP created right after its app
    (403, "backing application"),  # the same under Application.ReadWrite.OwnedBy
    (400, "not a valid reference update"),  # role assignment to a just-created SP
)
# Per public scripts (not docs), a duplicate app role assignment is reported as this 400.
_DUPLICATE_ASSIGNMENT = "permission being assigned already exists on the object"

# The least-privileged Microsoft Graph application permission each call needs (Microsoft's permission
# tables), named in PermissionDenied so a refusal says what to grant.
_APP_READ = "Application.Read.All"
# Application.ReadWrite.OwnedBy also works, for the apps the caller owns.
_APP_WRITE = "Application.ReadWrite.All"
_ASSIGNMENT_WRITE = "AppRoleAssignment.ReadWrite.All"
_GRANTS_READ = "Directory.Read.All"
_POLICY_READ = "Policy.Read.All"
_SIGN_INS_READ = "AuditLog.Read.All (with an Entra ID P1/P2 licence)"
_USERS_READ = "User.Read.All"


class TokenProvider(Protocol):
    async def token(self) -> str: ...


@runtime_checkable
class RefreshableTokenProvider(TokenProvider, Protocol):
    async def invalidate(self, token: str) -> None:
        """Forget ``token`` so the next :meth:`token` fetches a new one."""
        ...


@dataclass(frozen=True)
class _Request:
    method: str
    url: str
    body: Any = None
    params: Mapping[str, str] | None = None
    headers: Mapping[str, str] | None = None


@dataclass(frozen=True)
class _Response:
    status: int
    body: Any  # parsed JSON, None for an empty body


class GraphClient:
    """``base_url`` is the Graph host (``https://graph.microsoft.com``); versions are added per call.

    ``calls`` counts HTTP requests sent, retries included.
    """

    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        ca_bundle: Path | None = None,
        retry: RetryConfig = DEFAULT_RETRY,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = 60.0,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._tokens = token_provider
        self._retry = retry
        self._sleep = sleep
        self._session = session
        self._owns_session = session is None
        self._ssl = ssl.create_default_context(cafile=str(ca_bundle) if ca_bundle else None)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.calls = 0

    async def __aenter__(self) -> GraphClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # --- applications -------------------------------------------------------------------------

    async def upsert_application(self, unique_name: str, body: dict[str, Any]) -> tuple[Application, bool]:
        """Create the app with this uniqueName, or update it; True if it was created.

        ``body`` must contain ``displayName``. Idempotent, so safe to retry after a lost response.
        """
        path = f"applications(uniqueName={_key(unique_name)})"
        response = await self._call(
            "PATCH", path, permission=_APP_WRITE, body=body, headers={"Prefer": "create-if-missing"}
        )
        if response.status == 201:
            return Application.model_validate(response.body), True
        # 204 No Content: it existed and was updated. It exists, so a 404 now is replication lag.
        return await self._get(path, Application, permission=_APP_READ, known_to_exist=True), False

    async def list_applications(self) -> list[Application]:
        """Every app registration of the tenant (paged)."""
        return await self._list("applications", Application, permission=_APP_READ)

    async def get_application(self, object_id: str) -> Application:
        return await self._get(f"applications/{_segment(object_id)}", Application, permission=_APP_READ)

    async def get_application_by_app_id(self, app_id: str) -> Application:
        """Also how the service reads its own (provisioning) app: ``passwordCredentials`` and
        ``keyCredentials`` say when its secret or certificate expires."""
        return await self._get(f"applications(appId={_key(app_id)})", Application, permission=_APP_READ)

    async def get_application_by_unique_name(self, unique_name: str) -> Application:
        return await self._get(f"applications(uniqueName={_key(unique_name)})", Application, permission=_APP_READ)

    async def update_application(self, object_id: str, patch: dict[str, Any]) -> None:
        """PATCH replaces whole collections: send e.g. the full redirectUris list."""
        await self._call("PATCH", f"applications/{_segment(object_id)}", permission=_APP_WRITE, body=patch)

    async def delete_application(self, object_id: str) -> None:
        """Soft delete (restorable for 30 days)."""
        await self._call("DELETE", f"applications/{_segment(object_id)}", permission=_APP_WRITE)

    async def add_password(self, object_id: str, display_name: str, end: datetime | None = None) -> NewPassword:
        """Add a client secret. NOT idempotent: after a dropped connection this raises Transient
        without re-sending; list_passwords and look for ``display_name`` before adding again."""
        credential: dict[str, str] = {"displayName": display_name}
        if end is not None:
            credential["endDateTime"] = _iso(end)
        response = await self._call(
            "POST",
            f"applications/{_segment(object_id)}/addPassword",
            permission=_APP_WRITE,
            body={"passwordCredential": credential},
            idempotent=False,
        )
        return NewPassword.model_validate(response.body)

    async def remove_password(self, object_id: str, key_id: str) -> None:
        """Remove one client secret. Converges: a 404 means the key (or the app) is already gone,
        e.g. a re-sent request whose first attempt was carried out before its answer was lost, so
        it counts as success."""
        with contextlib.suppress(NotFound):
            await self._call(
                "POST",
                f"applications/{_segment(object_id)}/removePassword",
                permission=_APP_WRITE,
                body={"keyId": key_id},
            )

    async def list_passwords(self, object_id: str) -> list[PasswordCredential]:
        response = await self._call(
            "GET",
            f"applications/{_segment(object_id)}",
            permission=_APP_READ,
            params={"$select": "id,passwordCredentials"},
        )
        return [PasswordCredential.model_validate(p) for p in response.body.get("passwordCredentials", [])]

    async def get_key_credentials(self, object_id: str) -> list[KeyCredential]:
        """The app's certificates with their ``key``, which Graph returns only for ``$select=keyCredentials``
        on a single app: what a PATCH must send again to keep them (it replaces the whole collection)."""
        response = await self._call(
            "GET",
            f"applications/{_segment(object_id)}",
            permission=_APP_READ,
            params={"$select": "id,keyCredentials"},
        )
        return [KeyCredential.model_validate(k) for k in response.body.get("keyCredentials", [])]

    # --- service principals and app role assignments ------------------------------------------

    async def create_service_principal(self, app_id: str) -> ServicePrincipal:
        """Retried while the app has not replicated. A second one for the same app is a Conflict,
        so a retry after a lost response cannot create a duplicate."""
        response = await self._call("POST", "servicePrincipals", permission=_APP_WRITE, body={"appId": app_id})
        return ServicePrincipal.model_validate(response.body)

    async def get_service_principal_by_app_id(self, app_id: str) -> ServicePrincipal:
        return await self._get(f"servicePrincipals(appId={_key(app_id)})", ServicePrincipal, permission=_APP_READ)

    async def get_graph_service_principal(self) -> ServicePrincipal:
        """Microsoft Graph's own service principal; its appRoles map permission names to IDs."""
        return await self.get_service_principal_by_app_id(GRAPH_APP_ID)

    async def list_app_role_assignments(self, principal_sp_id: str) -> list[AppRoleAssignment]:
        """The app roles granted to ``principal_sp_id`` (its application permissions)."""
        return await self._list(
            f"servicePrincipals/{_segment(principal_sp_id)}/appRoleAssignments", AppRoleAssignment, permission=_APP_READ
        )

    async def list_app_role_assigned_to(self, resource_sp_id: str) -> list[AppRoleAssignment]:
        """The app roles of ``resource_sp_id`` granted to anyone."""
        return await self._list(
            f"servicePrincipals/{_segment(resource_sp_id)}/appRoleAssignedTo", AppRoleAssignment, permission=_APP_READ
        )

    async def assign_app_role(self, principal_id: str, resource_id: str, app_role_id: str) -> AppRoleAssignment:
        """Admin consent for one application permission. A duplicate raises Conflict (list first)."""
        response = await self._call(
            "POST",
            f"servicePrincipals/{_segment(resource_id)}/appRoleAssignedTo",
            permission=_ASSIGNMENT_WRITE,
            body={"principalId": principal_id, "resourceId": resource_id, "appRoleId": app_role_id},
        )
        return AppRoleAssignment.model_validate(response.body)

    async def delete_app_role_assignment(self, resource_sp_id: str, assignment_id: str) -> None:
        await self._call(
            "DELETE",
            f"servicePrincipals/{_segment(resource_sp_id)}/appRoleAssignedTo/{_segment(assignment_id)}",
            permission=_ASSIGNMENT_WRITE,
        )

    # --- directory reads -----------------------------------------------------------------------

    async def list_users(self, top: int | None = None, max_items: int | None = None) -> list[User]:
        """``top`` is the page size asked of Graph; ``max_items`` stops paging early."""
        params = {"$top": str(top)} if top is not None else None
        return await self._list("users", User, permission=_USERS_READ, params=params, max_items=max_items)

    async def list_oauth2_permission_grants(self, client_sp_id: str) -> list[OAuth2PermissionGrant]:
        """Delegated consents of ``client_sp_id`` (an admin's consent for the organisation shows
        as consentType AllPrincipals)."""
        return await self._list(
            "oauth2PermissionGrants",
            OAuth2PermissionGrant,
            permission=_GRANTS_READ,
            params={"$filter": f"clientId eq {_odata_string(client_sp_id)}"},
        )

    async def get_default_app_management_policy(self) -> AppManagementPolicy:
        return await self._get("policies/defaultAppManagementPolicy", AppManagementPolicy, permission=_POLICY_READ)

    async def list_service_principal_sign_ins(self, app_id: str, since: datetime | None = None) -> list[SignIn]:
        """The app's service-principal sign-ins (beta; needs AuditLog.Read.All and Entra P1/P2, else
        PermissionDenied). Each names the credential used (servicePrincipalCredentialKeyId)."""
        query = f"appId eq {_odata_string(app_id)} and signInEventTypes/any(t: t eq 'servicePrincipal')"
        if since is not None:
            query += f" and createdDateTime ge {_iso(since)}"
        return await self._list(
            "auditLogs/signIns", SignIn, permission=_SIGN_INS_READ, params={"$filter": query}, version="beta"
        )

    # --- plumbing ------------------------------------------------------------------------------

    async def _get(self, path: str, model: type[M], *, permission: str, known_to_exist: bool = False) -> M:
        response = await self._call("GET", path, permission=permission, known_to_exist=known_to_exist)
        return model.model_validate(response.body)

    async def _list(
        self,
        path: str,
        model: type[M],
        *,
        permission: str,
        params: Mapping[str, str] | None = None,
        version: str = "v1.0",
        max_items: int | None = None,
    ) -> list[M]:
        """Follow ``@odata.nextLink`` until the last page (or ``max_items``)."""
        items: list[M] = []
        next_url: str | None = self._url(path, version)
        while next_url is not None:
            response = await self._call("GET", next_url, permission=permission, params=params)
            items.extend(model.model_validate(item) for item in response.body.get("value", []))
            if max_items is not None and len(items) >= max_items:
                return items[:max_items]
            next_url = response.body.get("@odata.nextLink")
            params = None  # the next link carries the query
            if next_url is not None and not next_url.startswith(self._base + "/"):
                # Our bearer token goes wherever the link points: only ever to our Graph host.
                raise InvalidRequest(f"nextLink points outside {self._base}: {urlsplit(next_url).netloc}")
        return items

    def _url(self, path: str, version: str = "v1.0") -> str:
        return path if path.startswith(self._base + "/") else f"{self._base}/{version}/{path}"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        permission: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        known_to_exist: bool = False,
    ) -> _Response:
        """``permission``: the least-privileged Graph application permission the call needs, named by
        PermissionDenied if it is refused."""
        request = _Request(method, self._url(path), body, params, headers)
        return await call_with_retries(
            lambda: self._send(request, permission=permission, known_to_exist=known_to_exist),
            self._retry,
            idempotent=idempotent,
            describe=f"{method} {urlsplit(request.url).path}",
            sleep=self._sleep,
        )

    async def _send(self, request: _Request, *, permission: str, known_to_exist: bool) -> _Response:
        token = await self._tokens.token()
        status, headers, text = await self._exchange(request, token)
        if (
            status == 401
            and isinstance(self._tokens, RefreshableTokenProvider)
            and _error_fields(text)[0] == "InvalidAuthenticationToken"
        ):
            # Graph refused a token the cache still thought valid (revoked, clock skew): the request
            # was not executed, so one re-send with a fresh token is safe even for addPassword.
            await self._tokens.invalidate(token)
            status, headers, text = await self._exchange(request, await self._tokens.token())
        if status >= 400:
            error = _error_from_response(status, headers, text, permission=permission)
            if known_to_exist and isinstance(error, NotFound):
                raise NotYetReplicated.from_error(error) from error
            raise error
        try:
            return _Response(status, json.loads(text) if text else None)
        except ValueError:
            raise Transient(f"unreadable {status} response to {request.method}", status=status) from None

    async def _exchange(self, request: _Request, token: str) -> tuple[int, Mapping[str, str], str]:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self.calls += 1
        headers = {
            "Authorization": f"Bearer {token}",
            "client-request-id": str(uuid4()),
            "Accept": "application/json",
            **(request.headers or {}),
        }
        try:
            async with self._session.request(
                request.method,
                request.url,
                json=request.body,
                params=request.params,
                headers=headers,
                ssl=self._ssl,
                timeout=self._timeout,
            ) as response:
                GRAPH_REQUESTS.labels(request.method, str(response.status)).inc()
                if response.status in (429, 503):
                    GRAPH_THROTTLED.inc()
                return response.status, response.headers, await response.text()
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            GRAPH_REQUESTS.labels(request.method, "error").inc()
            # No (complete) answer: the request may or may not have been executed. (aiohttp itself
            # re-sends GET/PUT/DELETE once if a pooled keep-alive connection was already closed;
            # never POST/PATCH, so addPassword is never re-sent behind our back.)
            raise Transient(
                f"no response to {request.method} {urlsplit(request.url).path}: {type(exc).__name__}"
            ) from exc


def _error_fields(text: str) -> tuple[str, str, str | None]:
    """(code, message, request-id) from a Graph error body; empty if it is not one."""
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return "", "", None
    if not isinstance(error, dict):
        return "", "", None
    inner = error.get("innerError") or {}
    return str(error.get("code", "")), str(error.get("message", "")), inner.get("request-id")


def _error_from_response(
    status: int, headers: Mapping[str, str], text: str, *, permission: str | None = None
) -> ApiError:
    code, message, request_id = _error_fields(text)
    request_id = request_id or headers.get("request-id")
    message = message or f"HTTP {status}"
    if status == 429:
        return Throttled(
            message, retry_after=_retry_after(headers.get("Retry-After")), code=code, request_id=request_id
        )
    kind = _error_class(status, code, message.lower())
    if kind is PermissionDenied:
        return PermissionDenied(message, permission=permission, status=status, code=code, request_id=request_id)
    return kind(message, status=status, code=code, request_id=request_id)


def _error_class(status: int, code: str, message: str) -> type[ApiError]:
    if status >= 500:
        return Transient
    if code == "Directory_ConcurrencyViolation" or any(
        status == lag_status and fragment in message for lag_status, fragment in _REPLICATION_MESSAGES
    ):
        return NotYetReplicated
    if status == 409 or (status == 400 and _DUPLICATE_ASSIGNMENT in message):
        return Conflict
    if status in (401, 403):
        return PermissionDenied
    if status == 404:
        return NotFound
    return InvalidRequest


def _retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); 0 when absent (back off)."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return 0.0


def _odata_string(value: str) -> str:
    """An OData string literal (for $filter): quoted, with ' doubled."""
    return "'" + value.replace("'", "''") + "'"


def _key(value: str) -> str:
    """An OData string literal for an alternate key in the URL path."""
    return quote(_odata_string(value), safe="'")


def _segment(value: str) -> str:
    return quote(value, safe="")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
