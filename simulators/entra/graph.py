"""Microsoft Graph v1.0 / beta routes of the simulator.

The Graph middleware (server.py) has already counted the request, injected faults and authenticated
the caller (``PRINCIPAL_KEY``); handlers authorise by the token's permissions and answer in Graph's
shapes. Errors are raised as :class:`GraphError`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

from simulators.entra.catalog import (
    APP_ADMIN_ROLES,
    CONSENT_ANY_ROLES,
    GRAPH_APP_ID,
    POLICY_RESTRICT_FOR_APPS_CREATED_AFTER,
)
from simulators.entra.context import NOW_KEY, SimContext, sim_of
from simulators.entra.directory import (
    application_json,
    apply_app_props,
    assign_app_role,
    assignment_json,
    create_application,
    create_service_principal,
    grant_json,
    group_json,
    member_json,
    new_password_credential,
    new_secret_value,
    service_principal_json,
    sign_in_json,
    user_json,
    user_roles,
)
from simulators.entra.errors import GraphError, bad_request, forbidden, invalid_value, not_found
from simulators.entra.odata import collection, eq_value, odata_context, parse_filter, select
from simulators.entra.state import Application, KeyCredential, PasswordCredential, ServicePrincipal, iso
from simulators.entra.tokens import Principal
from simulators.entra.validation import key_credentials, validate_application

Json = dict[str, Any]

PRINCIPAL_KEY = web.RequestKey("entra_sim_principal", Principal)

OWNED_BY = "Application.ReadWrite.OwnedBy"
APP_READ = frozenset({"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All"})
APP_WRITE = frozenset({"Application.ReadWrite.All"})
ASSIGNMENT_READ = APP_READ | {"AppRoleAssignment.ReadWrite.All"}
ASSIGNMENT_WRITE = frozenset({"AppRoleAssignment.ReadWrite.All"})
USER_READ = frozenset({"User.Read.All", "User.ReadWrite.All", "Directory.Read.All"})
GROUP_READ = frozenset({"Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All"})
GROUP_MEMBER_READ = GROUP_READ | {"GroupMember.Read.All"}
GRANT_READ = frozenset({"Directory.Read.All", "DelegatedPermissionGrant.ReadWrite.All"})
POLICY_READ = frozenset({"Policy.Read.All"})
AUDIT_READ = frozenset({"AuditLog.Read.All"})
REPORT_READ = frozenset({"AuditLog.Read.All", "Directory.Read.All"})

DEFAULT_SECRET_YEARS = 2
# Two credential additions on one object closer than this collide while replication lags.
CONCURRENCY_WINDOW = timedelta(seconds=1)


# --- request helpers ---------------------------------------------------------------------------


def _require(request: web.Request, allowed: frozenset[str]) -> Principal:
    principal = request[PRINCIPAL_KEY]
    if not principal.permissions & allowed:
        raise forbidden()
    return principal


async def _json_body(request: web.Request, *, optional: bool = False) -> Json:
    raw = await request.read()
    if optional and not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise bad_request(
            "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of "
            "valid JSON format.",
            code="BadRequest",
        )
    return body


def _reject_unknown(body: Json, allowed: frozenset[str]) -> None:
    for key in body:
        if key not in allowed:
            raise bad_request(f"Invalid property '{key}'.")


def _required_str(body: Json, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise bad_request(f"Property '{key}' is required and must be a string.")
    return value


def _entity(request: web.Request, context: str, body: Json, status: int = 200) -> web.Response:
    ctx = sim_of(request)
    payload = {"@odata.context": odata_context(request, ctx.base_url, context), **select(request, body)}
    return web.json_response(payload, status=status)


def _parse_time(value: object, prop: str, resource: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise invalid_value(prop, resource, f"{prop} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise invalid_value(prop, resource, f"{prop} needs a time zone (e.g. Z)")
    return parsed


def _add_years(value: datetime, years: int) -> datetime:
    try:
        return value.replace(year=value.year + years)
    except ValueError:  # 29 February
        return value.replace(year=value.year + years, day=28)


# --- applications ------------------------------------------------------------------------------
APP_KEYS = (
    "/v1.0/applications/{id}",
    "/v1.0/applications(appId='{app_id}')",
    "/v1.0/applications(uniqueName='{unique_name}')",
)


def _lookup_app(request: web.Request) -> tuple[Application | None, str]:
    state, info = sim_of(request).state, request.match_info
    if "id" in info:
        return state.application(info["id"]), info["id"]
    if "app_id" in info:
        return state.application_by_app_id(info["app_id"]), info["app_id"]
    return state.application_by_unique_name(info["unique_name"]), info["unique_name"]


def _roles_of(request: web.Request, principal: Principal) -> frozenset[str]:
    """A signed-in user's directory roles (none for an app)."""
    if principal.kind != "user":
        return frozenset()
    return user_roles(sim_of(request).state.user(principal.object_id))


def _user_may_manage(request: web.Request, principal: Principal, app: Application) -> bool:
    """An app's owner or an application administrator; always true for an app's own token."""
    if principal.kind != "user" or principal.object_id in app.owners:
        return True
    return bool(_roles_of(request, principal) & APP_ADMIN_ROLES)


def _check_app_access(request: web.Request, principal: Principal, app: Application, *, write: bool) -> None:
    """Full access by permission, or, with ...OwnedBy, to the apps the caller owns. A user's delegated
    permission goes no further than the user may: writes to an app they own, or to any as an
    application administrator (Global, Privileged Role, Cloud Application or Application Administrator)."""
    if principal.permissions & (APP_WRITE if write else APP_READ):
        if write and not _user_may_manage(request, principal, app):
            raise forbidden()
        return
    if OWNED_BY in principal.permissions and principal.object_id in app.owners:
        return
    raise forbidden()


def _app(request: web.Request, *, write: bool) -> Application:
    principal = _require(request, (APP_WRITE if write else APP_READ) | {OWNED_BY})
    app, key = _lookup_app(request)
    if app is None:
        raise not_found(key)
    _check_app_access(request, principal, app, write=write)
    return app


def _app_json(ctx: SimContext) -> Callable[[Application], Json]:
    return lambda app: application_json(app, ctx.domain)


async def list_applications(request: web.Request) -> web.Response:
    _require(request, APP_READ)
    ctx = sim_of(request)
    clauses = parse_filter(request.query.get("$filter"), {"appId", "displayName", "uniqueName"}, "Application")
    app_id = eq_value(clauses, "appId")
    if app_id is None:
        records = ctx.state.applications()
    else:
        found = ctx.state.application_by_app_id(app_id)
        records = [found] if found else []
    return collection(request, ctx.base_url, "applications", records, _app_json(ctx), clauses=clauses)


def _key_credentials(body: Json, existing: list[KeyCredential]) -> list[KeyCredential] | None:
    """The certificates a create/update body sets (removed from ``body``), or None if it sets none."""
    if "keyCredentials" not in body:
        return None
    return key_credentials(body.pop("keyCredentials"), existing)


async def _create_app(request: web.Request, body: Json, principal: Principal) -> web.Response:
    ctx = sim_of(request)
    certificates = _key_credentials(body, [])
    validate_application(ctx, body, existing=None)
    app = create_application(ctx, body, request[NOW_KEY], owners=[principal.object_id])
    if certificates is not None:
        app.key_credentials = certificates
        ctx.state.touch()
    return _entity(request, "applications/$entity", application_json(app, ctx.domain), status=201)


async def post_application(request: web.Request) -> web.Response:
    principal = _require(request, APP_WRITE | {OWNED_BY})
    return await _create_app(request, await _json_body(request), principal)


async def get_application(request: web.Request) -> web.Response:
    """With ``$select`` naming keyCredentials, each certificate's ``key`` too (only for a single app)."""
    ctx = sim_of(request)
    selected = {f.strip() for f in request.query.get("$select", "").split(",")}
    app_json = application_json(_app(request, write=False), ctx.domain, with_keys="keyCredentials" in selected)
    return _entity(request, "applications/$entity", app_json)


async def patch_application(request: web.Request) -> web.Response:
    principal = _require(request, APP_WRITE | {OWNED_BY})
    body = await _json_body(request)
    app, key = _lookup_app(request)
    if app is None:
        prefer = request.headers.get("Prefer", "").lower()
        if "unique_name" not in request.match_info or "create-if-missing" not in prefer:
            raise not_found(key)
        if body.get("uniqueName", key) != key:
            raise bad_request("The uniqueName in the body does not match the one in the URL.")
        return await _create_app(request, {**body, "uniqueName": key}, principal)
    _check_app_access(request, principal, app, write=True)
    certificates = _key_credentials(body, app.key_credentials)
    validate_application(sim_of(request), body, existing=app)
    apply_app_props(app.props, body)
    if certificates is not None:
        app.key_credentials = certificates
    state = sim_of(request).state
    state.index_unique_name(app)
    state.touch()
    return web.Response(status=204)


async def delete_application(request: web.Request) -> web.Response:
    app = _app(request, write=True)
    sim_of(request).state.delete_application(app)
    return web.Response(status=204)


def _check_password_policy(ctx: SimContext, app: Application, start: datetime, end: datetime) -> None:
    policy = ctx.state.policy
    if app.created < datetime.fromisoformat(POLICY_RESTRICT_FOR_APPS_CREATED_AFTER):
        return
    if policy.password_addition_blocked:
        raise bad_request(
            "Credential type not allowed as per assigned policy.", code="CredentialTypeNotAllowedAsPerAppPolicy"
        )
    limit = policy.max_password_lifetime_days
    if limit is not None and end - start > timedelta(days=limit):
        raise bad_request(
            f"Credential lifetime exceeds the max value allowed as per assigned policy (P{limit}D).",
            code="CredentialInvalidLifetimeAsPerAppPolicy",
        )


async def add_password(request: web.Request) -> web.Response:
    ctx, now = sim_of(request), request[NOW_KEY]
    app = _app(request, write=True)
    body = await _json_body(request, optional=True)
    _reject_unknown(body, frozenset({"passwordCredential"}))
    spec = body.get("passwordCredential") or {}
    if not isinstance(spec, dict):
        raise invalid_value("passwordCredential", "Application", "passwordCredential must be an object")
    _reject_unknown(spec, frozenset({"displayName", "startDateTime", "endDateTime"}))
    display_name = spec.get("displayName")
    if display_name is not None and not isinstance(display_name, str):
        raise invalid_value("displayName", "PasswordCredential", "displayName must be a string")
    start = _parse_time(spec.get("startDateTime"), "startDateTime", "PasswordCredential") or now
    end = _parse_time(spec.get("endDateTime"), "endDateTime", "PasswordCredential") or _add_years(
        start, DEFAULT_SECRET_YEARS
    )
    if end <= start:
        raise invalid_value("endDateTime", "PasswordCredential", "endDateTime must be after startDateTime")
    last = app.last_password_added
    if ctx.config.replication_delay_seconds > 0 and last is not None and now - last < CONCURRENCY_WINDOW:
        raise GraphError(
            409,
            "Directory_ConcurrencyViolation",
            f"Another update to the object '{app.id}' is in progress. Please retry the request.",
        )
    _check_password_policy(ctx, app, start, end)
    secret = new_secret_value()
    credential = new_password_credential(secret, display_name, start, end, now)
    app.password_credentials.append(credential)
    app.last_password_added = now
    ctx.state.touch()
    return _entity(request, "microsoft.graph.passwordCredential", {**credential.graph_json(), "secretText": secret})


async def remove_password(request: web.Request) -> web.Response:
    app = _app(request, write=True)
    key_id = _required_str(await _json_body(request), "keyId")
    match: PasswordCredential | None = next((c for c in app.password_credentials if c.key_id == key_id), None)
    if match is None:
        raise GraphError(404, "Request_ResourceNotFound", f"No password credential found with keyId '{key_id}'.")
    app.password_credentials.remove(match)
    sim_of(request).state.touch()
    return web.Response(status=204)


# --- service principals ------------------------------------------------------------------------
SP_KEYS = ("/v1.0/servicePrincipals/{id}", "/v1.0/servicePrincipals(appId='{app_id}')")


def _sp(request: web.Request) -> ServicePrincipal:
    state, info = sim_of(request).state, request.match_info
    key = info.get("id") or info["app_id"]
    sp = state.service_principal(key) if "id" in info else state.service_principal_by_app_id(key)
    if sp is None:
        raise not_found(key)
    return sp


async def list_service_principals(request: web.Request) -> web.Response:
    _require(request, APP_READ)
    ctx = sim_of(request)
    clauses = parse_filter(request.query.get("$filter"), {"appId", "displayName"}, "ServicePrincipal")
    app_id = eq_value(clauses, "appId")
    if app_id is None:
        records = ctx.state.service_principals()
    else:
        found = ctx.state.service_principal_by_app_id(app_id)
        records = [found] if found else []
    return collection(request, ctx.base_url, "servicePrincipals", records, service_principal_json, clauses=clauses)


async def post_service_principal(request: web.Request) -> web.Response:
    principal = _require(request, APP_WRITE | {OWNED_BY})
    ctx, now = sim_of(request), request[NOW_KEY]
    body = await _json_body(request)
    _reject_unknown(body, frozenset({"appId", "accountEnabled", "tags"}))
    app_id = _required_str(body, "appId")
    app = ctx.state.application_by_app_id(app_id)
    # Right after the app's creation Entra answers exactly as for an unknown appId.
    if app is None or not ctx.replicated(app.created, now):
        raise bad_request(
            f"The appId '{app_id}' of the service principal does not reference a valid application object."
        )
    if not principal.permissions & APP_WRITE and principal.object_id not in app.owners:
        raise GraphError(
            403,
            "Authorization_RequestDenied",
            "When using this permission, the backing application of the service principal being created must "
            "in the local tenant",
        )
    if not _user_may_manage(request, principal, app):
        raise forbidden()
    if ctx.state.service_principal_by_app_id(app_id) is not None:
        raise GraphError(
            409,
            "Request_MultipleObjectsWithSameKeyValue",
            "Another object with the same value for property servicePrincipalNames already exists.",
        )
    sp = create_service_principal(ctx, app, now)
    return _entity(request, "servicePrincipals/$entity", service_principal_json(sp), status=201)


async def get_service_principal(request: web.Request) -> web.Response:
    _require(request, APP_READ)
    return _entity(request, "servicePrincipals/$entity", service_principal_json(_sp(request)))


# --- app role assignments (admin consent for application permissions) --------------------------
def _is_assigned_to(request: web.Request) -> bool:
    """True for .../appRoleAssignedTo (the path SP is the resource), False for .../appRoleAssignments."""
    return "/appRoleAssignedTo" in request.path


async def list_assignments(request: web.Request) -> web.Response:
    _require(request, ASSIGNMENT_READ)
    ctx, sp = sim_of(request), _sp(request)
    if _is_assigned_to(request):
        records, relation = ctx.state.app_role_assigned_to(sp.id), "appRoleAssignedTo"
    else:
        records, relation = ctx.state.app_role_assignments(sp.id), "appRoleAssignments"
    return collection(request, ctx.base_url, f"servicePrincipals('{sp.id}')/{relation}", records, assignment_json)


def _check_assignment_rights(request: web.Request, principal: Principal, resource: ServicePrincipal) -> None:
    """A signed-in user grants app roles only as far as they could consent: Microsoft Graph's app roles
    (application permissions) need a Global or Privileged Role Administrator (grant-admin-consent)."""
    if principal.kind != "user":
        return
    needed = CONSENT_ANY_ROLES if resource.app_id == GRAPH_APP_ID else APP_ADMIN_ROLES
    if not _roles_of(request, principal) & needed:
        raise forbidden()


async def post_assignment(request: web.Request) -> web.Response:
    caller = _require(request, ASSIGNMENT_WRITE)
    ctx, now = sim_of(request), request[NOW_KEY]
    path_sp = _sp(request)
    body = await _json_body(request)
    _reject_unknown(body, frozenset({"principalId", "resourceId", "appRoleId"}))
    principal_id, resource_id = _required_str(body, "principalId"), _required_str(body, "resourceId")
    app_role_id = _required_str(body, "appRoleId")
    if path_sp.id != (resource_id if _is_assigned_to(request) else principal_id):
        raise bad_request("The service principal in the URL does not match the one in the body.")
    resource = ctx.state.service_principal(resource_id)
    if resource is None:
        raise not_found(resource_id)
    _check_assignment_rights(request, caller, resource)
    principal = ctx.state.service_principal(principal_id)
    if principal is None:
        raise not_found(principal_id)
    if not ctx.replicated(principal.created, now):
        # Entra answers either way while the new service principal replicates.
        if ctx.rng.random() < 0.5:
            raise not_found(principal_id)
        raise bad_request("Not a valid reference update.")
    role = resource.app_role(app_role_id)
    if role is None or "Application" not in role.get("allowedMemberTypes", []):
        raise bad_request(f"Permission being assigned was not found on application '{resource.app_id}'.")
    if any(
        a.resource_id == resource.id and a.app_role_id == app_role_id
        for a in ctx.state.app_role_assignments(principal.id)
    ):
        raise bad_request("Permission being assigned already exists on the object.")
    assignment = assign_app_role(ctx, principal, resource, app_role_id, now)
    relation = "appRoleAssignedTo" if _is_assigned_to(request) else "appRoleAssignments"
    return _entity(
        request, f"servicePrincipals('{path_sp.id}')/{relation}/$entity", assignment_json(assignment), status=201
    )


async def delete_assignment(request: web.Request) -> web.Response:
    caller = _require(request, ASSIGNMENT_WRITE)
    ctx, sp = sim_of(request), _sp(request)
    assignment_id = request.match_info["assignment_id"]
    assignment = ctx.state.app_role_assignment(assignment_id)
    owner = (
        None
        if assignment is None
        else (assignment.resource_id if _is_assigned_to(request) else assignment.principal_id)
    )
    if assignment is None or owner != sp.id:
        raise not_found(assignment_id)
    resource = ctx.state.service_principal(assignment.resource_id)
    if resource is not None:
        _check_assignment_rights(request, caller, resource)
    ctx.state.remove_app_role_assignment(assignment)
    return web.Response(status=204)


# --- users, groups, grants, policy -------------------------------------------------------------
async def list_users(request: web.Request) -> web.Response:
    _require(request, USER_READ)
    ctx = sim_of(request)
    clauses = parse_filter(request.query.get("$filter"), {"mail", "userPrincipalName", "displayName"}, "User")
    return collection(request, ctx.base_url, "users", ctx.state.users(), user_json, clauses=clauses)


async def get_user(request: web.Request) -> web.Response:
    _require(request, USER_READ)
    key = request.match_info["id"]
    user = sim_of(request).state.user(key)
    if user is None:
        raise not_found(key)
    return _entity(request, "users/$entity", user_json(user))


async def list_groups(request: web.Request) -> web.Response:
    _require(request, GROUP_READ)
    ctx = sim_of(request)
    clauses = parse_filter(request.query.get("$filter"), {"mail", "displayName"}, "Group")
    return collection(request, ctx.base_url, "groups", ctx.state.groups(), group_json, clauses=clauses)


async def list_group_members(request: web.Request) -> web.Response:
    _require(request, GROUP_MEMBER_READ)
    ctx = sim_of(request)
    key = request.match_info["id"]
    group = ctx.state.group(key)
    if group is None:
        raise not_found(key)
    members = [u for u in map(ctx.state.user, group.member_ids) if u is not None]
    return collection(request, ctx.base_url, "directoryObjects", members, member_json)


async def list_permission_grants(request: web.Request) -> web.Response:
    _require(request, GRANT_READ)
    ctx = sim_of(request)
    clauses = parse_filter(
        request.query.get("$filter"), {"clientId", "resourceId", "consentType"}, "OAuth2PermissionGrant"
    )
    records = ctx.state.permission_grants(eq_value(clauses, "clientId"))
    return collection(request, ctx.base_url, "oauth2PermissionGrants", records, grant_json, clauses=clauses)


async def get_app_management_policy(request: web.Request) -> web.Response:
    _require(request, POLICY_READ)
    policy = sim_of(request).state.policy
    restrictions: list[Json] = []
    if policy.password_addition_blocked:
        restrictions.append({"restrictionType": "passwordAddition", "maxLifetime": None})
    if policy.max_password_lifetime_days is not None:
        restrictions.append(
            {"restrictionType": "passwordLifetime", "maxLifetime": f"P{policy.max_password_lifetime_days}D"}
        )
    for item in restrictions:
        item.update(state="enabled", restrictForAppsCreatedAfterDateTime=POLICY_RESTRICT_FOR_APPS_CREATED_AFTER)
    empty: Json = {"passwordCredentials": [], "keyCredentials": []}
    body = {
        "id": "00000000-0000-0000-0000-000000000000",
        "displayName": "Default app management tenant policy",
        "description": "Default tenant policy that enforces app management restrictions on applications and "
        "service principals.",
        "isEnabled": bool(restrictions),
        "applicationRestrictions": {"passwordCredentials": restrictions, "keyCredentials": []},
        "servicePrincipalRestrictions": empty,
    }
    return _entity(request, "policies/defaultAppManagementPolicy/$entity", body)


# --- beta: sign-in evidence --------------------------------------------------------------------
def _require_premium(request: web.Request, allowed: frozenset[str]) -> None:
    _require(request, allowed)
    if not sim_of(request).config.p1_license:
        raise GraphError(
            403,
            "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
            "Neither tenant is B2C or tenant doesn't have premium license",
        )


async def list_sign_ins(request: web.Request) -> web.Response:
    _require_premium(request, AUDIT_READ)
    ctx, now = sim_of(request), request[NOW_KEY]
    clauses = parse_filter(
        request.query.get("$filter"),
        {"appId", "signInEventTypes", "createdDateTime", "userPrincipalName", "servicePrincipalId"},
        "SignIn",
    )
    records = ctx.state.sign_ins(eq_value(clauses, "appId"))
    delay = ctx.config.sign_in_delay_seconds
    if delay > 0:  # logs lag behind real sign-ins
        visible_before = now - timedelta(seconds=delay)
        records = [s for s in records if s.created <= visible_before]
    return collection(request, ctx.base_url, "auditLogs/signIns", records, sign_in_json, clauses=clauses)


async def list_credential_activities(request: web.Request) -> web.Response:
    _require_premium(request, REPORT_READ)
    ctx = sim_of(request)
    clauses = parse_filter(request.query.get("$filter"), {"appId", "keyId"}, "AppCredentialSignInActivity")
    app_id = eq_value(clauses, "appId")
    if app_id is None:
        apps = ctx.state.applications()
    else:
        found = ctx.state.application_by_app_id(app_id)
        apps = [found] if found else []
    rows: list[Json] = []
    for app in apps:
        sp = ctx.state.service_principal_by_app_id(app.app_id)
        credentials = [(c.key_id, "clientSecret", "sign", c.created, c.end) for c in app.password_credentials]
        credentials += [(k.key_id, "certificate", "verify", k.start, k.end) for k in app.key_credentials]
        for key_id, key_type, usage, created, end in credentials:
            activity = ctx.state.credential_activity.get(key_id)
            if activity is None:  # only credentials that were used appear in the report
                continue
            rows.append(
                {
                    "id": base64.urlsafe_b64encode(f"{app.app_id}:{key_id}".encode()).decode().rstrip("="),
                    "keyId": key_id,
                    "appId": app.app_id,
                    "appObjectId": app.id,
                    "servicePrincipalObjectId": sp.id if sp else None,
                    "resourceId": ctx.graph_sp.id,
                    "credentialOrigin": "application",
                    "keyType": key_type,
                    "keyUsage": usage,
                    "createdDateTime": iso(created),
                    "expirationDateTime": iso(end),
                    "signInActivity": {
                        "lastSignInDateTime": iso(activity.last_sign_in),
                        "lastSignInRequestId": activity.request_id,
                    },
                }
            )
    return collection(request, ctx.base_url, "reports/appCredentialSignInActivities", rows, dict, clauses=clauses)


def add_graph_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v1.0/applications", list_applications)
    r.add_post("/v1.0/applications", post_application)
    for key in APP_KEYS:
        r.add_get(key, get_application)
        r.add_patch(key, patch_application)
        r.add_delete(key, delete_application)
        r.add_post(key + "/addPassword", add_password)
        r.add_post(key + "/removePassword", remove_password)
    r.add_get("/v1.0/servicePrincipals", list_service_principals)
    r.add_post("/v1.0/servicePrincipals", post_service_principal)
    for key in SP_KEYS:
        r.add_get(key, get_service_principal)
        for relation in ("appRoleAssignedTo", "appRoleAssignments"):
            r.add_get(f"{key}/{relation}", list_assignments)
            r.add_post(f"{key}/{relation}", post_assignment)
            r.add_delete(f"{key}/{relation}/{{assignment_id}}", delete_assignment)
    r.add_get("/v1.0/users", list_users)
    r.add_get("/v1.0/users/{id}", get_user)
    r.add_get("/v1.0/groups", list_groups)
    r.add_get("/v1.0/groups/{id}/members", list_group_members)
    r.add_get("/v1.0/oauth2PermissionGrants", list_permission_grants)
    r.add_get("/v1.0/policies/defaultAppManagementPolicy", get_app_management_policy)
    r.add_get("/beta/auditLogs/signIns", list_sign_ins)
    r.add_get("/beta/reports/appCredentialSignInActivities", list_credential_activities)
