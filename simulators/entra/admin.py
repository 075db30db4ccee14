"""``/_sim`` admin API (no auth, never under /v1.0): inspect state, move the clock, set faults, age the
provisioning identity's credential, register a web app for user sign-in, add users with directory roles,
and play the human steps (interactive admin consent, device code approval; tenant-wide admin consent is
in consent.py)."""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

from aiohttp import web

from simulators.clock import OffsetClock
from simulators.entra.authorize import html_page
from simulators.entra.catalog import DIRECTORY_ROLES, GLOBAL_ADMIN_ROLE_TEMPLATE_ID
from simulators.entra.config import FAULT_FIELDS
from simulators.entra.context import NOW_KEY, SimContext, new_id, sim_of
from simulators.entra.directory import (
    add_delegated_grant,
    application_json,
    assignment_json,
    create_application,
    create_service_principal,
    grant_json,
    group_json,
    new_key_credential,
    new_password_credential,
    new_secret_value,
    record_sign_in,
    service_principal_json,
    sign_in_json,
    user_json,
)
from simulators.entra.errors import AdminError, GraphError
from simulators.entra.oauth import device_consent_problem
from simulators.entra.seed import ADMIN_UPN, provisioning_credentials
from simulators.entra.state import Application, DirectoryUser, iso
from simulators.entra.validation import validate_application

Json = dict[str, Any]
# /_sim/state lists only the newest sign-ins; the full log is in the state file.
STATE_SIGN_IN_LIMIT = 500
WEB_APP_SECRET_LIFETIME = timedelta(days=730)  # the longest the portal offers
_DEVICE_PAGE_TITLE = "Entra simulator sign-in"


async def _body(request: web.Request) -> Json:
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise AdminError(400, "the body must be a JSON object")
    return body


def _app_or_404(ctx: SimContext, app_id: object) -> Application:
    app = ctx.state.application_by_app_id(str(app_id)) if isinstance(app_id, str) else None
    if app is None:
        raise AdminError(404, f"no application with appId {app_id!r}")
    return app


def _user_or_404(ctx: SimContext, upn: object) -> DirectoryUser:
    user = ctx.state.user(upn if isinstance(upn, str) else ADMIN_UPN)
    if user is None:
        raise AdminError(404, f"no user {upn!r}")
    return user


def _policy_json(ctx: SimContext) -> Json:
    policy = ctx.state.policy
    return {
        "passwordAdditionBlocked": policy.password_addition_blocked,
        "maxLifetimeDays": policy.max_password_lifetime_days,
    }


def _faults_json(ctx: SimContext) -> Json:
    return {name: getattr(ctx.config, name) for name in FAULT_FIELDS}


async def get_state(request: web.Request) -> web.Response:
    """The home tenant's state, or with ``?tenant=`` (ID or domain) another hosted tenant's."""
    ctx = _tenant_or_404(sim_of(request), request.query.get("tenant"))
    state = ctx.state
    applications = []
    for app in state.applications():
        item = application_json(app, ctx.domain)
        # Hashes only: secret values are never kept.
        item["passwordCredentials"] = [
            {**c.graph_json(), "secretSha256": c.secret_sha256, "createdDateTime": iso(c.created)}
            for c in app.password_credentials
        ]
        item["owners"] = list(app.owners)
        applications.append(item)
    return web.json_response(
        {
            "tenantId": state.tenant_id,
            "domain": state.domain,
            "tenants": [{"tenantId": t.tenant_id, "domain": t.domain} for t in ctx.tenants.values()],
            "now": iso(request[NOW_KEY]),
            "faults": _faults_json(ctx),
            "license": {"p1": ctx.config.p1_license},
            "policy": _policy_json(ctx),
            "counters": {
                "graphRequests": state.graph_request_count,
                "writes": state.write_count,
                "byRoute": dict(state.request_counts),
            },
            "applications": applications,
            "servicePrincipals": [service_principal_json(sp) for sp in state.service_principals()],
            "appRoleAssignments": [
                assignment_json(a) for sp in state.service_principals() for a in state.app_role_assignments(sp.id)
            ],
            "oauth2PermissionGrants": [grant_json(g) for g in state.permission_grants()],
            "users": [user_json(u) for u in state.users()],
            "groups": [group_json(g) for g in state.groups()],
            "signIns": [sign_in_json(s) for s in state.sign_ins()[:STATE_SIGN_IN_LIMIT]],
            "pendingDeviceCodes": [
                {
                    "userCode": f.user_code,
                    "clientId": f.client_id,
                    "expires": iso(f.expires),
                    "approved": f.approved_user_id is not None,
                    "declined": f.declined is not None,
                }
                for f in ctx.devices.values()
            ],
        }
    )


async def get_clock(request: web.Request) -> web.Response:
    ctx = sim_of(request)
    offset = ctx.clock.offset_seconds if isinstance(ctx.clock, OffsetClock) else None
    return web.json_response({"now": iso(await ctx.now()), "offsetSeconds": offset})


async def advance_clock(request: web.Request) -> web.Response:
    ctx = sim_of(request)
    seconds = (await _body(request)).get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise AdminError(400, "seconds must be a number")
    if not isinstance(ctx.clock, OffsetClock):
        raise AdminError(409, "this simulator's clock cannot be advanced through the API")
    ctx.clock.advance(float(seconds))
    return await get_clock(request)


def _coerce(name: str, kind: type, value: object) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
        raise AdminError(400, f"{name} must be {'an integer' if kind is int else 'a number'}")
    if value < 0 or (name.endswith("_rate") and value > 1):
        raise AdminError(400, f"{name} out of range")
    return int(value) if kind is int else float(value)


async def set_faults(request: web.Request) -> web.Response:
    ctx = sim_of(request)
    body = await _body(request)
    unknown = sorted(set(body) - set(FAULT_FIELDS))
    if unknown:
        raise AdminError(400, f"unknown fault settings: {unknown}; known: {sorted(FAULT_FIELDS)}")
    updates = {name: _coerce(name, FAULT_FIELDS[name], value) for name, value in body.items()}
    for name, value in updates.items():
        setattr(ctx.config, name, value)
    if "seed" in updates:
        ctx.rng.seed(updates["seed"])
    return web.json_response(_faults_json(ctx))


async def interactive_consent(request: web.Request) -> web.Response:
    """What an admin's interactive sign-in with "consent on behalf of your organization" leaves behind:
    the app's service principal (created if missing), an AllPrincipals delegated grant on Graph, and an
    interactive sign-in."""
    ctx, now = sim_of(request), request[NOW_KEY]
    body = await _body(request)
    app = _app_or_404(ctx, body.get("appId"))
    scope = body.get("scope")
    if not isinstance(scope, str) or not scope.split():
        raise AdminError(400, "scope must be a space-separated list of permissions")
    user = _user_or_404(ctx, body.get("userPrincipalName"))
    if not user.is_global_admin:
        raise AdminError(403, f"{user.user_principal_name} cannot consent on behalf of the organization")
    sp = ctx.state.service_principal_by_app_id(app.app_id) or create_service_principal(ctx, app, now)
    grant = add_delegated_grant(ctx, sp, ctx.graph_sp, scope.split())
    sign_in = record_sign_in(
        ctx,
        now,
        app_id=app.app_id,
        app_display_name=app.display_name,
        event_type="interactiveUser",
        ip_address=request.remote,
        correlation_id=new_id(),
        user_id=user.id,
        user_principal_name=user.user_principal_name,
        user_display_name=user.display_name,
    )
    return web.json_response({"grant": grant_json(grant), "servicePrincipalId": sp.id, "signInId": sign_in.id})


async def set_policy(request: web.Request) -> web.Response:
    ctx = sim_of(request)
    body = await _body(request)
    policy = ctx.state.policy
    if "passwordAddition" in body:
        if not isinstance(body["passwordAddition"], bool):
            raise AdminError(400, "passwordAddition must be a boolean (true blocks new secrets)")
        policy.password_addition_blocked = body["passwordAddition"]
    if "maxLifetimeDays" in body:
        days = body["maxLifetimeDays"]
        if days is not None and (isinstance(days, bool) or not isinstance(days, int) or days < 1):
            raise AdminError(400, "maxLifetimeDays must be a positive integer or null")
        policy.max_password_lifetime_days = days
    ctx.state.touch()
    return web.json_response(_policy_json(ctx))


async def set_license(request: web.Request) -> web.Response:
    ctx = sim_of(request)
    p1 = (await _body(request)).get("p1")
    if not isinstance(p1, bool):
        raise AdminError(400, "p1 must be a boolean")
    ctx.config.p1_license = p1
    return web.json_response({"p1": p1})


async def approve_device(request: web.Request) -> web.Response:
    """Sign a pending device code sign-in in as ``userPrincipalName`` (default: the home tenant's Global
    Administrator), in that user's tenant (JSON for tests, a form post from /devicelogin). As in Entra, a
    user who may not consent to what the client asks for is stopped ("Need admin approval": 403 here) and
    the polling client hears ``authorization_declined``."""
    ctx, now = sim_of(request), request[NOW_KEY]
    from_form = request.content_type == "application/x-www-form-urlencoded"
    body: Json = dict(await request.post()) if from_form else await _body(request)
    code = str(body.get("user_code", "")).strip().upper()
    flow = ctx.devices_by_user_code.get(code)
    if flow is None or now > flow.expires:
        raise AdminError(404, "unknown or expired user code")
    upn = body.get("userPrincipalName") or ADMIN_UPN
    found = ctx.find_user(str(upn))
    if found is None:
        raise AdminError(404, f"no user {upn!r}")
    tenant, user = found
    if flow.tenant_id is not None and flow.tenant_id.lower() != tenant.tenant_id.lower():
        raise AdminError(
            400,
            f"AADSTS50020: User account '{user.user_principal_name}' from identity provider "
            f"'https://sts.windows.net/{tenant.tenant_id}/' does not exist in tenant '{flow.tenant_id}' and "
            "cannot access the application in that tenant.",
        )
    declined = device_consent_problem(ctx.for_tenant(tenant), flow, user)
    if declined is not None:
        flow.declined = declined
        message = f"Need admin approval. AADSTS{declined[0]}: {declined[1]}"
        if from_form:
            return html_page(_DEVICE_PAGE_TITLE, f'<p id="error" role="alert">{html.escape(message)}</p>', status=403)
        raise AdminError(403, message)
    flow.approved_user_id, flow.approved_tenant_id = user.id, tenant.tenant_id
    if from_form:
        signed_in = f"Signed in as {user.user_principal_name}. You can close this window."
        return html_page(_DEVICE_PAGE_TITLE, f"<p>{html.escape(signed_in)}</p>")
    return web.json_response(
        {"approved": True, "userPrincipalName": user.user_principal_name, "tenantId": tenant.tenant_id}
    )


async def device_login_page(request: web.Request) -> web.Response:
    form = (
        '<h1>Enter code</h1><form method="post" action="/_sim/device/approve"><input name="user_code" autofocus>'
        '<p><label for="userPrincipalName">Sign in as</label><br>'
        f'<input id="userPrincipalName" name="userPrincipalName" value="{html.escape(ADMIN_UPN)}"></p>'
        "<button>Sign in as Global Administrator</button></form>"
    )
    return html_page(_DEVICE_PAGE_TITLE, form)


def _tenant_or_404(ctx: SimContext, tenant: object) -> SimContext:
    """``ctx`` acting in the tenant ``tenant`` names (its ID or domain); None: the home tenant."""
    if tenant is None:
        return ctx
    state = ctx.tenant(str(tenant))
    if state is None:
        raise AdminError(404, f"no tenant {tenant!r} in this simulator")
    return ctx.for_tenant(state)


async def create_user(request: web.Request) -> web.Response:
    """Add a user to a tenant: ``{"userPrincipalName", "displayName"?, "directoryRoles"?: [role names or
    template IDs], "tenant"?: ID or domain}`` → 201 the user (Graph's shape) plus ``directoryRoles`` (IDs)."""
    body = await _body(request)
    ctx = _tenant_or_404(sim_of(request), body.get("tenant"))
    upn, name, roles = body.get("userPrincipalName"), body.get("displayName"), body.get("directoryRoles", [])
    if not isinstance(upn, str) or "@" not in upn or (name is not None and not isinstance(name, str)):
        raise AdminError(400, "userPrincipalName (user@domain) is required; displayName must be a string")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise AdminError(400, "directoryRoles must be a list of role names or template IDs")
    known = set(DIRECTORY_ROLES.values())
    template_ids = [DIRECTORY_ROLES.get(r, r) for r in roles]
    unknown = [r for r, t in zip(roles, template_ids, strict=True) if t not in known]
    if unknown:
        raise AdminError(400, f"unknown directory roles {unknown}; known: {sorted(DIRECTORY_ROLES)}")
    if ctx.find_user(upn) is not None:
        raise AdminError(409, f"a user {upn} already exists")
    user = DirectoryUser(
        id=new_id(),
        display_name=name or upn.split("@")[0],
        user_principal_name=upn,
        mail=upn,
        is_global_admin=GLOBAL_ADMIN_ROLE_TEMPLATE_ID in template_ids,
        directory_roles=[t for t in template_ids if t != GLOBAL_ADMIN_ROLE_TEMPLATE_ID],
    )
    ctx.state.add_user(user)
    return web.json_response({**user_json(user), "directoryRoles": user.role_template_ids}, status=201)


async def create_web_app(request: web.Request) -> web.Response:
    """Register a web app that signs users in with the authorization code flow, as an admin would in the
    portal. Body ``{"displayName": str, "redirectUris": [str, ...]}`` (https, or http on a loopback host);
    answers 201 ``{"appId", "id", "secret"}`` (``id``: the application's object ID; ``secret``: a client
    secret's value, shown only here, valid two years).

    The app is single-tenant, its Web redirect URIs are ``redirectUris``, it has a service principal, and
    its ``groupMembershipClaims`` is "SecurityGroup", so ID tokens list the user's groups (Entra adds no
    groups claim without it). Everything is dated back by the replication delay: usable at once."""
    ctx, now = sim_of(request), request[NOW_KEY]
    body = await _body(request)
    name, uris = body.get("displayName"), body.get("redirectUris")
    if not isinstance(name, str) or not isinstance(uris, list) or not uris:
        raise AdminError(400, "displayName (a string) and redirectUris (a non-empty list) are required")
    props: Json = {
        "displayName": name,
        "signInAudience": "AzureADMyOrg",
        "web": {"redirectUris": uris},
        "groupMembershipClaims": "SecurityGroup",
    }
    try:
        validate_application(ctx, props, existing=None)
    except GraphError as exc:
        reasons = [detail["target"] for detail in exc.details or ()]
        raise AdminError(400, " ".join([exc.message, *reasons])) from None
    ready = now - timedelta(seconds=ctx.config.replication_delay_seconds)
    app = create_application(ctx, props, ready, owners=[])
    create_service_principal(ctx, app, ready)
    secret = new_secret_value()
    app.password_credentials.append(
        new_password_credential(secret, "simulator web app secret", ready, now + WEB_APP_SECRET_LIFETIME, ready)
    )
    ctx.state.touch()
    return web.json_response({"appId": app.app_id, "id": app.id, "secret": secret}, status=201)


async def add_certificate(request: web.Request) -> web.Response:
    ctx = sim_of(request)
    app = _app_or_404(ctx, request.match_info["app_id"])
    body = await _body(request)
    pem, display_name = body.get("pem"), body.get("displayName")
    if not isinstance(pem, str) or (display_name is not None and not isinstance(display_name, str)):
        raise AdminError(400, "pem (certificate PEM text) is required; displayName must be a string")
    try:
        key = new_key_credential(pem.encode(), display_name)
    except ValueError:
        raise AdminError(400, "pem is not a PEM certificate") from None
    existing = next((k for k in app.key_credentials if k.sha1_thumbprint == key.sha1_thumbprint), None)
    if existing is None:
        app.key_credentials.append(key)
        ctx.state.touch()
    registered = existing or key
    return web.json_response(
        {
            **registered.graph_json(),
            "sha1Thumbprint": registered.sha1_thumbprint,
            "sha256Thumbprint": registered.sha256_thumbprint,
        },
        status=200 if existing else 201,
    )


async def set_provisioning_credential(request: web.Request) -> web.Response:
    """Move the end date of the provisioning app's configured secret (and certificate) to now (the
    simulator clock) + ``expires_in_days``: negative expires it, so sign-ins with it fail as in Entra."""
    ctx, now = sim_of(request), request[NOW_KEY]
    days = (await _body(request)).get("expires_in_days")
    if not isinstance(days, int | float) or isinstance(days, bool):
        raise AdminError(400, "expires_in_days must be a number")
    try:
        end = now + timedelta(days=days)
    except (OverflowError, ValueError):  # beyond datetime's range, or NaN
        raise AdminError(400, "expires_in_days out of range") from None
    secret, certificate = provisioning_credentials(ctx)
    if secret is None and certificate is None:
        raise AdminError(404, "the provisioning app has no configured secret or certificate")
    for credential in (secret, certificate):
        if credential is not None:
            credential.end = end
    ctx.state.touch()
    return web.json_response(
        {
            "passwordCredential": secret.graph_json() if secret else None,
            "keyCredential": certificate.graph_json() if certificate else None,
        }
    )


def add_admin_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/_sim/state", get_state)
    r.add_get("/_sim/clock", get_clock)
    r.add_post("/_sim/clock/advance", advance_clock)
    r.add_post("/_sim/faults", set_faults)
    r.add_post("/_sim/interactive-consent", interactive_consent)
    r.add_post("/_sim/policy", set_policy)
    r.add_post("/_sim/license", set_license)
    r.add_post("/_sim/device/approve", approve_device)
    r.add_post("/_sim/users", create_user)
    r.add_post("/_sim/apps", create_web_app)
    r.add_post("/_sim/apps/{app_id}/certificates", add_certificate)
    r.add_post("/_sim/provisioning-credential", set_provisioning_credential)
    r.add_get("/devicelogin", device_login_page)
