"""Directory operations shared by the Graph routes, the token endpoint, the admin API and seeding,
and the JSON shapes Graph gives each object."""

from __future__ import annotations

import copy
import hashlib
import secrets
import string
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from simulators.entra.catalog import GRAPH_APP_ID, TENANT_DOMAIN
from simulators.entra.context import SimContext, new_id
from simulators.entra.state import (
    Application,
    AppRoleAssignment,
    DirectoryGroup,
    DirectoryUser,
    KeyCredential,
    PasswordCredential,
    PermissionGrant,
    ServicePrincipal,
    SignIn,
    iso,
    sha256_hex,
)

Json = dict[str, Any]

DEFAULT_SIGN_IN_AUDIENCE = "AzureADandPersonalMicrosoftAccount"
_DEFAULT_APP_PROPS: Json = {
    "displayName": None,
    "uniqueName": None,
    "description": None,
    "notes": None,
    "signInAudience": DEFAULT_SIGN_IN_AUDIENCE,
    "isFallbackPublicClient": None,
    "tags": [],
    "identifierUris": [],
    "requiredResourceAccess": [],
    "web": {
        "homePageUrl": None,
        "logoutUrl": None,
        "redirectUris": [],
        "redirectUriSettings": [],
        "implicitGrantSettings": {"enableAccessTokenIssuance": False, "enableIdTokenIssuance": False},
    },
    "spa": {"redirectUris": []},
    "publicClient": {"redirectUris": []},
    "appRoles": [],
    "optionalClaims": None,
    "groupMembershipClaims": None,
}
# Properties a client may send in POST/PATCH /applications.
WRITABLE_APP_PROPERTIES = frozenset(_DEFAULT_APP_PROPS)

_SECRET_ALPHABET = string.ascii_letters + string.digits + "-._~"

# Values of an application's groupMembershipClaims (Graph accepts a comma-separated combination).
GROUP_MEMBERSHIP_CLAIMS = frozenset({"None", "SecurityGroup", "DirectoryRole", "ApplicationGroup", "All"})
# The values under which Entra lists the user's groups in the ``groups`` claim. Every simulated group is
# security-enabled, so both list all of the user's groups; "DirectoryRole" and "ApplicationGroup" (groups
# assigned to the app) are not simulated and add no groups claim.
_GROUPS_IN_TOKENS = frozenset({"SecurityGroup", "All"})


def new_secret_value() -> str:
    """40 characters shaped like Entra's (``xxx8Q~...``): the ``8Q~`` marks a v2 secret."""
    pick = secrets.choice
    return (
        "".join(pick(_SECRET_ALPHABET) for _ in range(3)) + "8Q~" + "".join(pick(_SECRET_ALPHABET) for _ in range(34))
    )


def new_password_credential(
    secret: str, display_name: str | None, start: datetime, end: datetime, now: datetime
) -> PasswordCredential:
    return PasswordCredential(
        key_id=new_id(),
        display_name=display_name,
        hint=secret[:3],
        secret_sha256=sha256_hex(secret),
        start=start,
        end=end,
        created=now,
    )


def new_key_credential(
    pem: bytes,
    display_name: str | None = None,
    *,
    key_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> KeyCredential:
    """A certificate credential; its validity is the certificate's unless ``start``/``end`` narrow it."""
    certificate = x509.load_pem_x509_certificate(pem)
    return certificate_credential(certificate, display_name, key_id=key_id, start=start, end=end)


def certificate_credential(
    cert: x509.Certificate,
    display_name: str | None = None,
    *,
    key_id: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> KeyCredential:
    der = cert.public_bytes(serialization.Encoding.DER)
    return KeyCredential(
        key_id=key_id or new_id(),
        display_name=display_name or cert.subject.rfc4514_string(),
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
        sha1_thumbprint=hashlib.sha1(der).hexdigest().upper(),
        sha256_thumbprint=hashlib.sha256(der).hexdigest().upper(),
        start=start or cert.not_valid_before_utc,
        end=end or cert.not_valid_after_utc,
    )


def create_application(
    ctx: SimContext, props: Json, now: datetime, *, owners: list[str], app_id: str | None = None
) -> Application:
    merged = copy.deepcopy(_DEFAULT_APP_PROPS)
    apply_app_props(merged, props)
    app = Application(id=new_id(), app_id=app_id or new_id(), created=now, props=merged, owners=owners)
    ctx.state.add_application(app)
    return app


def apply_app_props(target: Json, changes: Json) -> None:
    """PATCH semantics: collections are replaced whole; the platform objects merge one level deep."""
    for key, value in changes.items():
        if key in ("web", "spa", "publicClient") and isinstance(value, dict):
            target[key] = {**target.get(key, {}), **copy.deepcopy(value)}
            if key == "web" and "redirectUris" in value:
                target["web"]["redirectUriSettings"] = [{"uri": u, "index": None} for u in value["redirectUris"]]
        else:
            target[key] = copy.deepcopy(value)


def create_service_principal(
    ctx: SimContext, app: Application, now: datetime, *, owner_tenant_id: str | None = None
) -> ServicePrincipal:
    """The app's service principal in ``ctx``'s tenant; ``owner_tenant_id``: the tenant whose app
    registration it is, when that is another tenant (a multi-tenant app consented here)."""
    sp = ServicePrincipal(
        id=new_id(),
        app_id=app.app_id,
        display_name=app.display_name,
        created=now,
        app_owner_organization_id=owner_tenant_id or ctx.tenant_id,
        sign_in_audience=str(app.props.get("signInAudience") or DEFAULT_SIGN_IN_AUDIENCE),
        app_roles=copy.deepcopy(app.props.get("appRoles") or []),
    )
    ctx.state.add_service_principal(sp)
    return sp


def assign_app_role(
    ctx: SimContext, principal: ServicePrincipal, resource: ServicePrincipal, app_role_id: str, now: datetime
) -> AppRoleAssignment:
    assignment = AppRoleAssignment(
        id=secrets.token_urlsafe(32)[:43],  # Entra's assignment IDs are base64url strings, not GUIDs
        principal_id=principal.id,
        principal_display_name=principal.display_name,
        resource_id=resource.id,
        resource_display_name=resource.display_name,
        app_role_id=app_role_id,
        created=now,
    )
    ctx.state.add_app_role_assignment(assignment)
    return assignment


def add_delegated_grant(
    ctx: SimContext, client: ServicePrincipal, resource: ServicePrincipal, scopes: list[str]
) -> PermissionGrant:
    """Consent for the whole organisation (consentType AllPrincipals) to ``scopes`` of ``resource``:
    a new oauth2PermissionGrant, or the existing one extended."""
    grant = next(
        (
            g
            for g in ctx.state.permission_grants(client.id)
            if g.resource_id == resource.id and g.consent_type == "AllPrincipals"
        ),
        None,
    )
    if grant is None:
        grant = PermissionGrant(
            id=secrets.token_urlsafe(32)[:43],
            client_id=client.id,
            consent_type="AllPrincipals",
            principal_id=None,
            resource_id=resource.id,
            scope=" ".join(dict.fromkeys(scopes)),
        )
        ctx.state.add_permission_grant(grant)
    else:
        grant.scope = " ".join(dict.fromkeys([*grant.scope.split(), *scopes]))
        ctx.state.touch()
    return grant


def user_roles(user: DirectoryUser | None) -> frozenset[str]:
    """The directory role template IDs a user holds (none for an unknown user)."""
    return frozenset(user.role_template_ids) if user is not None else frozenset()


def graph_roles_of(ctx: SimContext, sp: ServicePrincipal) -> list[str]:
    """The Graph permission names granted to ``sp``: what Entra puts in a token's ``roles``."""
    graph = ctx.graph_sp
    values = []
    for assignment in ctx.state.app_role_assignments(sp.id):
        role = graph.app_role(assignment.app_role_id) if assignment.resource_id == graph.id else None
        if role is not None:
            values.append(str(role["value"]))
    return sorted(values)


def group_membership_claims(value: object) -> frozenset[str]:
    """The parts of a groupMembershipClaims value ("SecurityGroup", "SecurityGroup, DirectoryRole", None)."""
    return frozenset(part.strip() for part in str(value or "").split(",") if part.strip())


def groups_claim(ctx: SimContext, client_id: str, user: DirectoryUser) -> list[str] | None:
    """The ``groups`` claim of ``user``'s tokens for ``client_id``: the object IDs of the user's groups,
    or None (no claim) unless the app's groupMembershipClaims asks for them, as in Entra."""
    app = ctx.state.application_by_app_id(client_id)
    if app is None or not group_membership_claims(app.props.get("groupMembershipClaims")) & _GROUPS_IN_TOKENS:
        return None
    return sorted(g.id for g in ctx.state.member_of(user.id))


def record_sign_in(ctx: SimContext, now: datetime, *, correlation_id: str, **fields: Any) -> SignIn:
    """``correlation_id``: the token request's ``client-request-id`` (how a client finds its own sign-ins)."""
    sign_in = SignIn(id=new_id(), created=now, correlation_id=correlation_id, **fields)
    ctx.state.record_sign_in(sign_in)
    return sign_in


# --- JSON shapes -------------------------------------------------------------------------------
def application_json(app: Application, domain: str = TENANT_DOMAIN, *, with_keys: bool = False) -> Json:
    """``domain``: the verified domain of the app's tenant; ``with_keys``: include each certificate's
    ``key`` (Graph returns it only on ``$select=keyCredentials`` for a single app)."""
    return {
        "id": app.id,
        "appId": app.app_id,
        "createdDateTime": iso(app.created),
        "deletedDateTime": None,
        "publisherDomain": domain,
        **copy.deepcopy(app.props),
        "passwordCredentials": [c.graph_json() for c in app.password_credentials],
        "keyCredentials": [c.graph_json(with_key=with_keys) for c in app.key_credentials],
    }


def service_principal_json(sp: ServicePrincipal) -> Json:
    return {
        "id": sp.id,
        "accountEnabled": sp.account_enabled,
        "appId": sp.app_id,
        "appDisplayName": sp.display_name,
        "appOwnerOrganizationId": sp.app_owner_organization_id,
        "displayName": sp.display_name,
        "servicePrincipalNames": [sp.app_id],
        "servicePrincipalType": "Application",
        "signInAudience": sp.sign_in_audience,
        "tags": [],
        "appRoles": copy.deepcopy(sp.app_roles),
        "oauth2PermissionScopes": copy.deepcopy(sp.oauth2_permission_scopes),
        "keyCredentials": [],
        "passwordCredentials": [],
    }


def assignment_json(a: AppRoleAssignment) -> Json:
    return {
        "id": a.id,
        "appRoleId": a.app_role_id,
        "createdDateTime": iso(a.created),
        "deletedDateTime": None,
        "principalDisplayName": a.principal_display_name,
        "principalId": a.principal_id,
        "principalType": "ServicePrincipal",
        "resourceDisplayName": a.resource_display_name,
        "resourceId": a.resource_id,
    }


def grant_json(g: PermissionGrant) -> Json:
    return {
        "id": g.id,
        "clientId": g.client_id,
        "consentType": g.consent_type,
        "principalId": g.principal_id,
        "resourceId": g.resource_id,
        "scope": g.scope,
    }


def user_json(u: DirectoryUser) -> Json:
    return {
        "id": u.id,
        "businessPhones": list(u.business_phones),
        "displayName": u.display_name,
        "givenName": u.display_name.split(" ")[0],
        "surname": u.display_name.split(" ")[-1],
        "jobTitle": u.job_title,
        "mail": u.mail,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": "en-US",
        "userPrincipalName": u.user_principal_name,
    }


def group_json(g: DirectoryGroup) -> Json:
    return {
        "id": g.id,
        "displayName": g.display_name,
        "description": g.description,
        "mail": g.mail,
        "mailEnabled": g.unified,
        "mailNickname": g.mail_nickname,
        "securityEnabled": True,
        "groupTypes": ["Unified"] if g.unified else [],
    }


def member_json(u: DirectoryUser) -> Json:
    """A user in a directoryObject collection (``/groups/{id}/members``)."""
    return {"@odata.type": "#microsoft.graph.user", **user_json(u)}


def sign_in_json(s: SignIn) -> Json:
    return {
        "id": s.id,
        "createdDateTime": iso(s.created),
        "appId": s.app_id,
        "appDisplayName": s.app_display_name,
        "correlationId": s.correlation_id,
        "ipAddress": s.ip_address,
        "isInteractive": s.event_type == "interactiveUser",
        "resourceDisplayName": "Microsoft Graph",
        "resourceId": GRAPH_APP_ID,
        "servicePrincipalId": s.service_principal_id,
        "servicePrincipalName": s.app_display_name if s.event_type == "servicePrincipal" else None,
        "servicePrincipalCredentialKeyId": s.credential_key_id,
        "servicePrincipalCredentialThumbprint": s.credential_thumbprint,
        "clientCredentialType": s.credential_type or "none",
        "signInEventTypes": [s.event_type],
        "userId": s.user_id,
        "userPrincipalName": s.user_principal_name,
        "userDisplayName": s.user_display_name,
        "conditionalAccessStatus": "notApplied",
        "status": {
            "errorCode": s.error_code,
            "failureReason": s.failure_reason,
            "additionalDetails": None,
        },
    }
