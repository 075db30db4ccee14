"""Tenant-wide admin consent: what an administrator of a tenant does to let an app (typically a
multi-tenant app registered in another tenant) act there.

- ``GET /{tenant}/adminconsent?client_id=…`` is the URL the Entra admin center builds for "Grant admin
  consent" (grant-admin-consent: ``{tenant}`` is the tenant's ID, a verified domain, or ``organizations``
  for the signed-in administrator's home tenant).
- ``GET /{tenant}/v2.0/adminconsent?client_id=…&scope=…&redirect_uri=…&state=…`` is the v2.0 admin consent
  endpoint (v2-admin-consent): ``redirect_uri`` must be registered on the app and gets
  ``admin_consent=True&tenant=…&scope=…&state=…`` back; ``{resource}/.default`` asks for every permission
  in the app's ``requiredResourceAccess``, other scopes for those delegated permissions only.

Both show a sign-in page (``#username``, ``#password``, ``#accept``); posting it as an administrator of
that tenant carries the consent out: the app's service principal in the tenant (created if missing), an
app role assignment for each application permission and an organisation-wide (AllPrincipals) delegated
grant for the delegated ones, for every resource with a service principal in the tenant (Microsoft Graph
always). Who may (grant-admin-consent): a Global or Privileged Role Administrator for anything; a Cloud
Application or Application Administrator except Microsoft Graph's application permissions.

``POST /_sim/admin-consent {"tenant", "clientId", "userPrincipalName"?}`` does the same for tests (JSON).
Not simulated: what the v1.0 page shows after consenting when the app has no reply URL (here: a page saying
the permissions were granted), and partial consent.
"""

from __future__ import annotations

import hmac
import html
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from simulators.entra.authorize import html_page
from simulators.entra.catalog import APP_ADMIN_ROLES, CONSENT_ANY_ROLES, GRAPH_APP_ID
from simulators.entra.context import CORRELATION_ID_KEY, MULTI_TENANT_SEGMENTS, NOW_KEY, SimContext, new_id, sim_of
from simulators.entra.directory import (
    add_delegated_grant,
    assign_app_role,
    create_service_principal,
    grant_json,
    user_roles,
)
from simulators.entra.errors import AdminError, OAuthError
from simulators.entra.state import Application, DirectoryUser, EntraState, ServicePrincipal

_PAGE_TITLE = "Permissions requested"
# Audiences under which an app may be used in tenants other than its own.
_MULTI_TENANT_AUDIENCES = frozenset({"AzureADMultipleOrgs", "AzureADandPersonalMicrosoftAccount"})
_FIELDS = ("client_id", "scope", "redirect_uri", "state")


@dataclass(frozen=True)
class Permission:
    resource: ServicePrincipal
    kind: str  # "Role" (application permission) or "Scope" (delegated)
    id: str
    name: str


@dataclass(frozen=True)
class ConsentRequest:
    app: Application
    owner_tenant_id: str  # the tenant whose app registration it is
    permissions: list[Permission]


class ConsentRefused(Exception):
    """The request can't be consented to (as AADSTS number and text)."""

    def __init__(self, aadsts: int, message: str) -> None:
        super().__init__(message)
        self.aadsts = aadsts
        self.message = message


def _find_app(ctx: SimContext, client_id: str) -> tuple[EntraState, Application] | None:
    for state in ctx.tenants.values():
        app = state.application_by_app_id(client_id)
        if app is not None:
            return state, app
    return None


def _app_for_tenant(ctx: SimContext, client_id: str) -> tuple[str, Application]:
    """The app and its home tenant, if it may be used in ``ctx``'s tenant (its own, or multi-tenant)."""
    found = _find_app(ctx, client_id) if client_id else None
    if found is None or (
        found[0] is not ctx.state and found[1].props.get("signInAudience") not in _MULTI_TENANT_AUDIENCES
    ):
        raise ConsentRefused(
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{ctx.tenant_id}'. This can "
            "happen if the application has not been installed by the administrator of the tenant or consented to "
            "by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
        )
    return found[0].tenant_id, found[1]


def _required_permissions(ctx: SimContext, app: Application) -> list[Permission]:
    """The app's requiredResourceAccess, for the resources that have a service principal in this tenant."""
    permissions = []
    for entry in app.props.get("requiredResourceAccess") or []:
        resource = ctx.state.service_principal_by_app_id(str(entry.get("resourceAppId", "")))
        if resource is None:
            continue
        for access in entry.get("resourceAccess") or []:
            kind, permission_id = access.get("type"), access.get("id")
            defined = resource.app_roles if kind == "Role" else resource.oauth2_permission_scopes
            match = next((item for item in defined if item.get("id") == permission_id), None)
            if match is not None:
                permissions.append(Permission(resource, str(kind), str(permission_id), str(match.get("value"))))
    return permissions


def _dynamic_scopes(ctx: SimContext, scopes: list[str]) -> list[Permission]:
    """Delegated Microsoft Graph permissions named in a v2.0 request's ``scope`` (no ``/.default``)."""
    graph = ctx.graph_sp
    by_name = {str(s.get("value")): str(s.get("id")) for s in graph.oauth2_permission_scopes}
    names = [scope.rsplit("/", 1)[-1] for scope in scopes]
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ConsentRefused(
            70011, f"The provided value for the input parameter 'scope' is not valid: {' '.join(unknown)}."
        )
    return [Permission(graph, "Scope", by_name[name], name) for name in names]


def consent_request(ctx: SimContext, client_id: str, scopes: list[str] | None) -> ConsentRequest:
    """What consenting to ``client_id`` in ``ctx``'s tenant would grant (``scopes`` None: the v1.0 endpoint,
    every required permission)."""
    owner, app = _app_for_tenant(ctx, client_id)
    if scopes is None or any(scope.endswith("/.default") for scope in scopes):
        permissions = _required_permissions(ctx, app)
    else:
        permissions = _dynamic_scopes(ctx, scopes)
    return ConsentRequest(app, owner, permissions)


def check_consenter(user: DirectoryUser, request: ConsentRequest) -> None:
    """Only an administrator who may grant everything asked for consents (grant-admin-consent)."""
    graph_app_roles = any(p.kind == "Role" and p.resource.app_id == GRAPH_APP_ID for p in request.permissions)
    allowed = CONSENT_ANY_ROLES if graph_app_roles else APP_ADMIN_ROLES
    if not user_roles(user) & allowed:
        needs = (
            "a Global Administrator or Privileged Role Administrator"
            if graph_app_roles
            else "an administrator who can consent for the organization"
        )
        raise ConsentRefused(
            90094,
            f"The grant requires admin permission: {user.user_principal_name} can't grant '{request.app.display_name}' "
            f"these permissions on behalf of the organization; it needs {needs}.",
        )


def grant_consent(ctx: SimContext, request: ConsentRequest, now: datetime) -> tuple[ServicePrincipal, list[str]]:
    """Carry the consent out in ``ctx``'s tenant; returns the service principal and the permissions granted."""
    state = ctx.state
    owner = request.owner_tenant_id if request.owner_tenant_id.lower() != ctx.tenant_id.lower() else None
    sp = state.service_principal_by_app_id(request.app.app_id) or create_service_principal(
        ctx, request.app, now, owner_tenant_id=owner
    )
    delegated: dict[str, tuple[ServicePrincipal, list[str]]] = {}
    for permission in request.permissions:
        if permission.kind == "Role":
            held = {a.app_role_id for a in state.app_role_assignments(sp.id) if a.resource_id == permission.resource.id}
            if permission.id not in held:
                assign_app_role(ctx, sp, permission.resource, permission.id, now)
        else:
            delegated.setdefault(permission.resource.id, (permission.resource, []))[1].append(permission.name)
    for resource, names in delegated.values():
        add_delegated_grant(ctx, sp, resource, names)
    return sp, [p.name for p in request.permissions]


# --- the pages -------------------------------------------------------------------------------


def _tenant_ctx(request: web.Request) -> SimContext | None:
    """The tenant of the path; None for organizations/common (the administrator's home tenant)."""
    ctx, segment = sim_of(request), request.match_info["tenant"]
    if segment.lower() in MULTI_TENANT_SEGMENTS:
        return None
    state = ctx.tenant(segment)
    if state is None:
        raise ConsentRefused(
            90002,
            f"Tenant '{segment}' not found. Check to make sure you have the correct tenant ID and are signing into "
            "the correct cloud.",
        )
    return ctx.for_tenant(state)


def _is_v2(request: web.Request) -> bool:
    return request.path.rstrip("/").endswith("/v2.0/adminconsent")


def _scopes(request: web.Request, fields: dict[str, str]) -> list[str] | None:
    if not _is_v2(request):
        return None
    scopes = fields.get("scope", "").split()
    if not scopes:
        raise ConsentRefused(900144, "The request body must contain the following parameter: 'scope'.")
    return scopes


def _redirect_uri(request: web.Request, fields: dict[str, str], app: Application) -> str | None:
    """The v2.0 endpoint's redirect URI, which must be registered on the app; the v1.0 page answers itself."""
    if not _is_v2(request):
        return None
    uri = fields.get("redirect_uri")
    if not uri:
        raise ConsentRefused(900144, "The request body must contain the following parameter: 'redirect_uri'.")
    platforms = (app.props.get(name) or {} for name in ("web", "publicClient", "spa"))
    if uri not in {str(u) for platform in platforms for u in platform.get("redirectUris", [])}:
        raise ConsentRefused(
            50011,
            f"The redirect URI '{uri}' specified in the request does not match the redirect URIs configured for "
            f"the application '{app.app_id}'.",
        )
    return uri


def _error_page(request: web.Request, exc: ConsentRefused, status: int = 400) -> web.Response:
    error = OAuthError(status, "invalid_request", exc.aadsts, exc.message)
    ctx = sim_of(request)
    described = error.body(new_id(), request[CORRELATION_ID_KEY], request[NOW_KEY], ctx.base_url)["error_description"]
    body = f'<h1>{_PAGE_TITLE}</h1><p id="error" role="alert">{html.escape(str(described))}</p>'
    return html_page(_PAGE_TITLE, body, status=status)


def _consent_page(request: web.Request, fields: dict[str, str], consent: ConsentRequest, error: str = "") -> str:
    rows = "".join(
        f"<li>{html.escape(p.name)} ({'Application' if p.kind == 'Role' else 'Delegated'}, "
        f"{html.escape(p.resource.display_name)})</li>"
        for p in consent.permissions
    )
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in fields.items()
        if name in _FIELDS
    )
    alert = f'<p id="error" role="alert">{html.escape(error)}</p>' if error else ""
    return (
        f"<h1>{_PAGE_TITLE}</h1><p>{html.escape(consent.app.display_name)} (app ID "
        f"{html.escape(consent.app.app_id)}) asks for these permissions on behalf of your organization:</p>"
        f'<ul id="permissions">{rows}</ul>{alert}'
        f'<form method="post" action="{html.escape(request.rel_url.path)}">{hidden}'
        '<p><label for="username">Username</label><br><input id="username" name="username" type="text" '
        'autocomplete="username" required autofocus></p>'
        '<p><label for="password">Password</label><br><input id="password" name="password" type="password" '
        'autocomplete="current-password" required></p>'
        '<p><button id="accept" type="submit">Accept</button></p></form>'
    )


async def consent_page(request: web.Request) -> web.Response:
    fields = {name: str(request.query[name]) for name in _FIELDS if request.query.get(name)}
    try:
        # For organizations the page lists what the home tenant of the app would grant; the POST decides.
        ctx = _tenant_ctx(request) or sim_of(request)
        consent = consent_request(ctx, fields.get("client_id", ""), _scopes(request, fields))
        _redirect_uri(request, fields, consent.app)
    except ConsentRefused as exc:
        return _error_page(request, exc)
    return html_page(_PAGE_TITLE, _consent_page(request, fields, consent))


def _signed_in(
    request: web.Request, tenant_ctx: SimContext | None, username: str, password: str
) -> tuple[SimContext, DirectoryUser] | None:
    ctx = sim_of(request)
    found = ctx.find_user(username) if username else None
    password_ok = hmac.compare_digest(password.encode(), ctx.config.user_password.encode())
    if found is None or not password_ok:
        return None
    state, user = found
    if tenant_ctx is not None and state is not tenant_ctx.state:
        raise ConsentRefused(
            50020,
            f"User account '{user.user_principal_name}' from identity provider 'https://sts.windows.net/"
            f"{state.tenant_id}/' does not exist in tenant '{tenant_ctx.tenant_id}' and cannot access the "
            "application in that tenant.",
        )
    return (tenant_ctx or ctx.for_tenant(state)), user


async def consent_accept(request: web.Request) -> web.Response:
    form = await request.post()
    fields = {name: str(form[name]) for name in _FIELDS if form.get(name)}
    username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    try:
        tenant_ctx = _tenant_ctx(request)
        signed_in = _signed_in(request, tenant_ctx, username, password)
        if signed_in is None:
            ctx = tenant_ctx or sim_of(request)
            consent = consent_request(ctx, fields.get("client_id", ""), _scopes(request, fields))
            page = _consent_page(request, fields, consent, "Your account or password is incorrect.")
            return html_page(_PAGE_TITLE, page, status=401)
        ctx, user = signed_in
        consent = consent_request(ctx, fields.get("client_id", ""), _scopes(request, fields))
        redirect_uri = _redirect_uri(request, fields, consent.app)
        check_consenter(user, consent)
    except ConsentRefused as exc:
        return _error_page(request, exc, status=403 if exc.aadsts == 90094 else 400)
    _, granted = grant_consent(ctx, consent, request[NOW_KEY])
    if redirect_uri is not None:
        reply: dict[str, str] = {"admin_consent": "True", "tenant": ctx.tenant_id, "scope": fields.get("scope", "")}
        if "state" in fields:
            reply["state"] = fields["state"]
        return web.Response(status=302, headers={"Location": f"{redirect_uri}?{urlencode(reply)}"})
    body = (
        f'<h1>{_PAGE_TITLE}</h1><p id="granted">{html.escape(consent.app.display_name)} was granted '
        f"{html.escape(', '.join(granted) or 'no permissions')} in tenant {html.escape(ctx.tenant_id)} "
        f"by {html.escape(user.user_principal_name)}. You can close this window.</p>"
    )
    return html_page(_PAGE_TITLE, body)


async def admin_consent_shortcut(request: web.Request) -> web.Response:
    """``{"tenant": ID or domain, "clientId", "userPrincipalName"?}`` (default: that tenant's admin@domain):
    the v1.0 consent as that user, as JSON ``{"tenantId", "servicePrincipalId", "granted", "grants"}``."""
    ctx = sim_of(request)
    try:
        body: Any = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("clientId"), str):
        raise AdminError(400, "clientId (the app's client ID) and tenant are required")
    state = ctx.tenant(str(body.get("tenant", ctx.tenant_id)))
    if state is None:
        raise AdminError(404, f"no tenant {body.get('tenant')!r} in this simulator")
    tenant_ctx = ctx.for_tenant(state)
    upn = str(body.get("userPrincipalName") or f"admin@{state.domain}")
    user = state.user(upn)
    if user is None:
        raise AdminError(404, f"no user {upn!r} in tenant {state.tenant_id}")
    try:
        consent = consent_request(tenant_ctx, body["clientId"], None)
        check_consenter(user, consent)
    except ConsentRefused as exc:
        raise AdminError(403 if exc.aadsts == 90094 else 400, f"AADSTS{exc.aadsts}: {exc.message}") from None
    sp, granted = grant_consent(tenant_ctx, consent, request[NOW_KEY])
    return web.json_response(
        {
            "tenantId": state.tenant_id,
            "servicePrincipalId": sp.id,
            "granted": granted,
            "grants": [grant_json(g) for g in state.permission_grants(sp.id)],
        }
    )


def add_consent_routes(app: web.Application) -> None:
    r = app.router
    for path in ("/{tenant}/adminconsent", "/{tenant}/v2.0/adminconsent"):
        r.add_get(path, consent_page)
        r.add_post(path, consent_accept)
    r.add_post("/_sim/admin-consent", admin_consent_shortcut)
