"""In-process directory state of the simulated tenant, indexed for O(1) lookups.

Records are pydantic models so the whole state round-trips through one JSON file. Secret values are
never held: a password credential keeps the SHA-256 of its value and the 3-character hint Entra shows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, Field

from simulators.entra.catalog import GLOBAL_ADMIN_ROLE_TEMPLATE_ID, TENANT_DOMAIN


def iso(value: datetime) -> str:
    """Graph's timestamp format: UTC with a ``Z`` suffix."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def mail_nickname(display_name: str) -> str:
    """A seeded group's mailNickname, also its mailbox's local part: "All Company" → "allcompany"."""
    return display_name.lower().replace(" ", "")


class PasswordCredential(BaseModel):
    key_id: str
    display_name: str | None = None
    hint: str
    secret_sha256: str
    start: datetime
    end: datetime
    created: datetime

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.secret_sha256, sha256_hex(secret))

    def graph_json(self) -> dict[str, Any]:
        return {
            "customKeyIdentifier": None,
            "displayName": self.display_name,
            "endDateTime": iso(self.end),
            "hint": self.hint,
            "keyId": self.key_id,
            "secretText": None,
            "startDateTime": iso(self.start),
        }


class KeyCredential(BaseModel):
    key_id: str
    display_name: str
    certificate_pem: str
    sha1_thumbprint: str  # upper-case hex, as the portal shows it
    sha256_thumbprint: str
    start: datetime
    end: datetime

    @property
    def der_base64(self) -> str:
        """The certificate, DER in base64: the ``key`` Graph takes and returns."""
        return "".join(line for line in self.certificate_pem.splitlines() if not line.startswith("-----"))

    def graph_json(self, *, with_key: bool = False) -> dict[str, Any]:
        return {
            # Edm.Binary, so base64 in JSON; for a certificate it defaults to the SHA-1 thumbprint's bytes.
            "customKeyIdentifier": base64.b64encode(bytes.fromhex(self.sha1_thumbprint)).decode(),
            "displayName": self.display_name,
            "endDateTime": iso(self.end),
            "key": self.der_base64 if with_key else None,
            "keyId": self.key_id,
            "startDateTime": iso(self.start),
            "type": "AsymmetricX509Cert",
            "usage": "Verify",
        }


class Application(BaseModel):
    id: str
    app_id: str
    created: datetime
    # Client-writable Graph properties (displayName, web, requiredResourceAccess, ...), as JSON.
    props: dict[str, Any]
    password_credentials: list[PasswordCredential] = Field(default_factory=list)
    key_credentials: list[KeyCredential] = Field(default_factory=list)
    owners: list[str] = Field(default_factory=list)
    last_password_added: datetime | None = None

    @property
    def display_name(self) -> str:
        return str(self.props.get("displayName") or "")

    @property
    def unique_name(self) -> str | None:
        value = self.props.get("uniqueName")
        return str(value) if value else None


class ServicePrincipal(BaseModel):
    id: str
    app_id: str
    display_name: str
    created: datetime
    app_owner_organization_id: str
    sign_in_audience: str
    # False: the enterprise application is disabled (Entra portal > Enterprise applications > Properties).
    account_enabled: bool = True
    app_roles: list[dict[str, Any]] = Field(default_factory=list)
    oauth2_permission_scopes: list[dict[str, Any]] = Field(default_factory=list)

    def app_role(self, role_id: str) -> dict[str, Any] | None:
        return next((r for r in self.app_roles if r.get("id") == role_id), None)


class AppRoleAssignment(BaseModel):
    id: str
    principal_id: str
    principal_display_name: str
    resource_id: str
    resource_display_name: str
    app_role_id: str
    created: datetime


class PermissionGrant(BaseModel):
    id: str
    client_id: str
    consent_type: str
    principal_id: str | None
    resource_id: str
    scope: str


class DirectoryUser(BaseModel):
    id: str
    display_name: str
    user_principal_name: str
    mail: str
    job_title: str | None = None
    business_phones: list[str] = Field(default_factory=list)
    is_global_admin: bool = False
    # Template IDs of further Microsoft Entra built-in roles (catalog.DIRECTORY_ROLES).
    directory_roles: list[str] = Field(default_factory=list)

    @property
    def role_template_ids(self) -> list[str]:
        """The user's directory roles, as a token's ``wids`` claim lists them."""
        held = [GLOBAL_ADMIN_ROLE_TEMPLATE_ID] if self.is_global_admin else []
        return held + [r for r in self.directory_roles if r not in held]


class DirectoryGroup(BaseModel):
    id: str
    display_name: str
    mail: str | None  # None for a security group: it has no mailbox
    description: str
    # True: a Microsoft 365 group (mail-enabled, groupTypes ["Unified"]); False: a plain security group.
    unified: bool = True
    member_ids: list[str] = Field(default_factory=list)  # users' object IDs (direct members)

    @property
    def mail_nickname(self) -> str:
        return mail_nickname(self.display_name)


class SignIn(BaseModel):
    id: str
    created: datetime
    app_id: str
    app_display_name: str
    event_type: str  # "servicePrincipal", "interactiveUser" or "nonInteractiveUser"
    ip_address: str | None
    error_code: int = 0
    failure_reason: str | None = None
    service_principal_id: str | None = None
    credential_key_id: str | None = None
    credential_type: str | None = None  # "clientSecret" or "certificate"
    credential_thumbprint: str | None = None
    user_id: str | None = None
    user_principal_name: str | None = None
    user_display_name: str | None = None
    correlation_id: str


class CredentialActivity(BaseModel):
    last_sign_in: datetime
    request_id: str


class AppManagementPolicy(BaseModel):
    password_addition_blocked: bool = False
    max_password_lifetime_days: int | None = None


class Snapshot(BaseModel):
    """What the state file holds."""

    version: int = 1
    tenant_id: str
    domain: str = TENANT_DOMAIN
    signing_key: str
    applications: list[Application]
    deleted_applications: list[Application]
    service_principals: list[ServicePrincipal]
    app_role_assignments: list[AppRoleAssignment]
    permission_grants: list[PermissionGrant]
    users: list[DirectoryUser]
    groups: list[DirectoryGroup]
    sign_ins: list[SignIn]
    credential_activity: dict[str, CredentialActivity]
    policy: AppManagementPolicy
    # The home tenant's snapshot carries the other tenants' (EntraSimConfig.extra_tenants).
    other_tenants: list[Snapshot] = Field(default_factory=list)


class RequestRecord(NamedTuple):
    method: str
    route: str
    status: int
    request_id: str


class EntraState:
    """The tenant's objects plus request counters. Mutate through the methods so indexes stay right;
    after editing a record in place, call :meth:`touch` so the change is persisted."""

    # Sign-in logs are bounded so a long demo or a benchmark cannot grow memory without limit.
    MAX_SIGN_INS = 20_000
    REQUEST_LOG_SIZE = 2_000

    def __init__(self, tenant_id: str, signing_key: str, domain: str = TENANT_DOMAIN) -> None:
        self.tenant_id = tenant_id
        # The tenant's verified (initial) domain: OIDC discovery and the login paths accept it too.
        self.domain = domain
        # Base64 HS256 key for access tokens; persisted so tokens survive a restart.
        self.signing_key = signing_key
        self.policy = AppManagementPolicy()
        self.deleted_applications: dict[str, Application] = {}
        self.credential_activity: dict[str, CredentialActivity] = {}
        self._apps: dict[str, Application] = {}
        self._app_by_app_id: dict[str, Application] = {}
        self._app_by_unique_name: dict[str, Application] = {}
        self._sps: dict[str, ServicePrincipal] = {}
        self._sp_by_app_id: dict[str, ServicePrincipal] = {}
        self._assignments: dict[str, AppRoleAssignment] = {}
        self._assignments_by_principal: dict[str, dict[str, AppRoleAssignment]] = {}
        self._assignments_by_resource: dict[str, dict[str, AppRoleAssignment]] = {}
        self._grants: dict[str, PermissionGrant] = {}
        self._grants_by_client: dict[str, dict[str, PermissionGrant]] = {}
        self._users: dict[str, DirectoryUser] = {}
        self._user_by_upn: dict[str, DirectoryUser] = {}
        self._groups: dict[str, DirectoryGroup] = {}
        self._groups_by_member: dict[str, dict[str, DirectoryGroup]] = {}
        self._sign_ins: deque[SignIn] = deque()
        self._sign_ins_by_app: dict[str, deque[SignIn]] = {}
        # Run-time counters (not persisted).
        self.graph_request_count = 0
        self.write_count = 0
        self.request_counts: Counter[str] = Counter()
        self.request_log: deque[RequestRecord] = deque(maxlen=self.REQUEST_LOG_SIZE)
        self.revision = 0
        self.on_change: Callable[[], None] | None = None

    def touch(self) -> None:
        self.revision += 1
        if self.on_change is not None:
            self.on_change()

    def count_request(self, method: str, route: str, *, write: bool) -> None:
        self.graph_request_count += 1
        self.request_counts[f"{method} {route}"] += 1
        if write:
            self.write_count += 1

    # --- applications -------------------------------------------------------------------------
    def applications(self) -> list[Application]:
        return list(self._apps.values())

    def application(self, object_id: str) -> Application | None:
        return self._apps.get(object_id)

    def application_by_app_id(self, app_id: str) -> Application | None:
        return self._app_by_app_id.get(app_id.lower())

    def application_by_unique_name(self, unique_name: str) -> Application | None:
        return self._app_by_unique_name.get(unique_name.casefold())

    def password_credentials(self, app_object_id: str) -> list[PasswordCredential]:
        app = self._apps.get(app_object_id)
        return list(app.password_credentials) if app else []

    def key_credentials(self, app_object_id: str) -> list[KeyCredential]:
        app = self._apps.get(app_object_id)
        return list(app.key_credentials) if app else []

    def add_application(self, app: Application) -> None:
        self._apps[app.id] = app
        self._app_by_app_id[app.app_id.lower()] = app
        self.index_unique_name(app)
        self.touch()

    def index_unique_name(self, app: Application) -> None:
        if app.unique_name:
            self._app_by_unique_name[app.unique_name.casefold()] = app

    def delete_application(self, app: Application) -> None:
        """Soft delete (Entra keeps it restorable); its service principal goes with it."""
        self._apps.pop(app.id, None)
        self._app_by_app_id.pop(app.app_id.lower(), None)
        if app.unique_name:
            self._app_by_unique_name.pop(app.unique_name.casefold(), None)
        self.deleted_applications[app.id] = app
        sp = self._sp_by_app_id.get(app.app_id.lower())
        if sp is not None:
            self._delete_service_principal(sp)
        self.touch()

    # --- service principals -------------------------------------------------------------------
    def service_principals(self) -> list[ServicePrincipal]:
        return list(self._sps.values())

    def service_principal(self, object_id: str) -> ServicePrincipal | None:
        return self._sps.get(object_id)

    def service_principal_by_app_id(self, app_id: str) -> ServicePrincipal | None:
        return self._sp_by_app_id.get(app_id.lower())

    def add_service_principal(self, sp: ServicePrincipal) -> None:
        self._sps[sp.id] = sp
        self._sp_by_app_id[sp.app_id.lower()] = sp
        self.touch()

    def _delete_service_principal(self, sp: ServicePrincipal) -> None:
        self._sps.pop(sp.id, None)
        self._sp_by_app_id.pop(sp.app_id.lower(), None)
        for index in (self._assignments_by_principal, self._assignments_by_resource):
            for assignment in list(index.get(sp.id, {}).values()):
                self.remove_app_role_assignment(assignment)
        for grant in list(self._grants_by_client.pop(sp.id, {}).values()):
            self._grants.pop(grant.id, None)

    # --- app role assignments -----------------------------------------------------------------
    def app_role_assignment(self, assignment_id: str) -> AppRoleAssignment | None:
        return self._assignments.get(assignment_id)

    def app_role_assignments(self, principal_id: str) -> list[AppRoleAssignment]:
        """Assignments granted to ``principal_id`` (``/servicePrincipals/{id}/appRoleAssignments``)."""
        return list(self._assignments_by_principal.get(principal_id, {}).values())

    def app_role_assigned_to(self, resource_id: str) -> list[AppRoleAssignment]:
        """Assignments on resource ``resource_id`` (``/servicePrincipals/{id}/appRoleAssignedTo``)."""
        return list(self._assignments_by_resource.get(resource_id, {}).values())

    def add_app_role_assignment(self, assignment: AppRoleAssignment) -> None:
        self._assignments[assignment.id] = assignment
        self._assignments_by_principal.setdefault(assignment.principal_id, {})[assignment.id] = assignment
        self._assignments_by_resource.setdefault(assignment.resource_id, {})[assignment.id] = assignment
        self.touch()

    def remove_app_role_assignment(self, assignment: AppRoleAssignment) -> None:
        self._assignments.pop(assignment.id, None)
        self._assignments_by_principal.get(assignment.principal_id, {}).pop(assignment.id, None)
        self._assignments_by_resource.get(assignment.resource_id, {}).pop(assignment.id, None)
        self.touch()

    # --- delegated permission grants ----------------------------------------------------------
    def permission_grants(self, client_id: str | None = None) -> list[PermissionGrant]:
        if client_id is None:
            return list(self._grants.values())
        return list(self._grants_by_client.get(client_id, {}).values())

    def add_permission_grant(self, grant: PermissionGrant) -> None:
        self._grants[grant.id] = grant
        self._grants_by_client.setdefault(grant.client_id, {})[grant.id] = grant
        self.touch()

    # --- users and groups ---------------------------------------------------------------------
    def users(self) -> list[DirectoryUser]:
        return list(self._users.values())

    def user(self, id_or_upn: str) -> DirectoryUser | None:
        return self._users.get(id_or_upn) or self._user_by_upn.get(id_or_upn.casefold())

    def add_user(self, user: DirectoryUser) -> None:
        self._users[user.id] = user
        self._user_by_upn[user.user_principal_name.casefold()] = user
        self.touch()

    def groups(self) -> list[DirectoryGroup]:
        return list(self._groups.values())

    def group(self, object_id: str) -> DirectoryGroup | None:
        return self._groups.get(object_id)

    def member_of(self, member_id: str) -> list[DirectoryGroup]:
        """The groups ``member_id`` is a direct member of."""
        return list(self._groups_by_member.get(member_id, {}).values())

    def add_group(self, group: DirectoryGroup) -> None:
        self._groups[group.id] = group
        for member_id in group.member_ids:
            self._groups_by_member.setdefault(member_id, {})[group.id] = group
        self.touch()

    # --- sign-ins -----------------------------------------------------------------------------
    def sign_ins(self, app_id: str | None = None) -> list[SignIn]:
        """Sign-ins, newest first, optionally of one app."""
        source = self._sign_ins if app_id is None else self._sign_ins_by_app.get(app_id.lower(), ())
        return list(reversed(source))

    def record_sign_in(self, sign_in: SignIn) -> None:
        self._sign_ins.append(sign_in)
        self._sign_ins_by_app.setdefault(sign_in.app_id.lower(), deque()).append(sign_in)
        if len(self._sign_ins) > self.MAX_SIGN_INS:
            # The globally oldest record is also the oldest of its app.
            oldest = self._sign_ins.popleft()
            self._sign_ins_by_app[oldest.app_id.lower()].popleft()
        if sign_in.error_code == 0 and sign_in.credential_key_id:
            self.credential_activity[sign_in.credential_key_id] = CredentialActivity(
                last_sign_in=sign_in.created, request_id=sign_in.correlation_id
            )
        self.touch()

    # --- persistence --------------------------------------------------------------------------
    def to_snapshot(self) -> Snapshot:
        return Snapshot(
            tenant_id=self.tenant_id,
            domain=self.domain,
            signing_key=self.signing_key,
            applications=self.applications(),
            deleted_applications=list(self.deleted_applications.values()),
            service_principals=self.service_principals(),
            app_role_assignments=list(self._assignments.values()),
            permission_grants=self.permission_grants(),
            users=self.users(),
            groups=self.groups(),
            sign_ins=list(self._sign_ins),
            credential_activity=self.credential_activity,
            policy=self.policy,
        )

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot) -> EntraState:
        state = cls(snapshot.tenant_id, snapshot.signing_key, snapshot.domain)
        state.policy = snapshot.policy
        state.credential_activity = dict(snapshot.credential_activity)
        state.deleted_applications = {a.id: a for a in snapshot.deleted_applications}
        for app in snapshot.applications:
            state.add_application(app)
        for sp in snapshot.service_principals:
            state.add_service_principal(sp)
        for assignment in snapshot.app_role_assignments:
            state.add_app_role_assignment(assignment)
        for grant in snapshot.permission_grants:
            state.add_permission_grant(grant)
        for user in snapshot.users:
            state.add_user(user)
        for group in snapshot.groups:
            state.add_group(group)
        for sign_in in snapshot.sign_ins:
            state.record_sign_in(sign_in)
        state.revision = 0
        return state
