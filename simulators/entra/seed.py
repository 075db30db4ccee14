"""The tenant a fresh simulator starts with, and the provisioning app kept in line with the config."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

from simulators.entra.catalog import (
    GRAPH_APP_ID,
    MICROSOFT_TENANT_ID,
    OPERATORS_GROUP_ID,
    OPERATORS_GROUP_NAME,
    ROLE_BY_VALUE,
    TENANT_DOMAIN,
    graph_app_roles_json,
    graph_scopes_json,
)
from simulators.entra.config import EntraSimConfig
from simulators.entra.context import SimContext
from simulators.entra.directory import (
    assign_app_role,
    create_application,
    create_service_principal,
    new_key_credential,
    new_password_credential,
)
from simulators.entra.state import (
    DirectoryGroup,
    DirectoryUser,
    EntraState,
    KeyCredential,
    PasswordCredential,
    ServicePrincipal,
    mail_nickname,
)
from simulators.entra.tokens import new_signing_key

ADMIN_UPN = f"admin@{TENANT_DOMAIN}"
PROVISIONING_DISPLAY_NAME = "Yeastar-Entra provisioning (simulator)"
# Marks the password credential that carries config.provisioning_secret, replaced at each start.
PROVISIONING_SECRET_NAME = "simulator provisioning secret"

_FIRST = ["Adele", "Alex", "Diego", "Grady", "Isaiah", "Johanna", "Lee", "Lidia", "Megan", "Nestor"]
_LAST = ["Vance", "Wilber", "Siciliani", "Archie", "Langer", "Lorenz", "Gu", "Holloway", "Bowen", "Wilke"]
_JOBS = ["Sales Manager", "Support Engineer", "Marketing Assistant", "Developer", "Office Manager"]
# Seeded Microsoft 365 groups: name, description, the job titles of its members (None: everyone).
_GROUPS: list[tuple[str, str, frozenset[str] | None]] = [
    ("Sales", "Sales team", frozenset({"Sales Manager", "Marketing Assistant"})),
    ("Support", "Customer support", frozenset({"Support Engineer"})),
    ("All Company", "Everyone", None),
]


class ProvisioningCredentials(NamedTuple):
    """The provisioning app's credentials that carry the configured secret and certificate (None if
    absent, e.g. removed through Graph, or no certificate configured)."""

    secret: PasswordCredential | None
    certificate: KeyCredential | None


def stable_id(tenant_id: str, *parts: str) -> str:
    """Seeded objects get the same IDs on every run, so tests and the demo can name them."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "entra-sim/" + "/".join((tenant_id, *parts))))


def new_state(config: EntraSimConfig, now: datetime) -> EntraState:
    """The home tenant, freshly seeded."""
    return seed_tenant(config.tenant_id, TENANT_DOMAIN, config.users, now)


def seed_tenant(tenant: str, domain: str, users: int, now: datetime) -> EntraState:
    """A tenant with Microsoft Graph's service principal, a Global Administrator ``admin@{domain}``,
    ``users`` more users and three Microsoft 365 groups."""
    state = EntraState(tenant, new_signing_key(), domain)
    state.add_service_principal(
        ServicePrincipal(
            id=stable_id(tenant, "sp", GRAPH_APP_ID),
            app_id=GRAPH_APP_ID,
            display_name="Microsoft Graph",
            created=now,
            app_owner_organization_id=MICROSOFT_TENANT_ID,
            sign_in_audience="AzureADMultipleOrgs",
            app_roles=graph_app_roles_json(),
            oauth2_permission_scopes=graph_scopes_json(),
        )
    )
    admin_upn = f"admin@{domain}"
    state.add_user(
        DirectoryUser(
            id=stable_id(tenant, "user", "admin"),
            display_name="MOD Administrator",
            user_principal_name=admin_upn,
            mail=admin_upn,
            job_title="Global Administrator",
            is_global_admin=True,
        )
    )
    for n in range(users):
        first, last = _FIRST[n % len(_FIRST)], _LAST[(n // len(_FIRST) + n) % len(_LAST)]
        suffix = "" if n < len(_FIRST) else str(n)
        upn = f"{first}.{last}{suffix}@{domain}".lower()
        state.add_user(
            DirectoryUser(
                id=stable_id(tenant, "user", str(n)),
                display_name=f"{first} {last}",
                user_principal_name=upn,
                mail=upn,
                job_title=_JOBS[n % len(_JOBS)],
                business_phones=[f"+1 425 555 {n % 10000:04d}"],
            )
        )
    for name, description, job_titles in _GROUPS:
        nickname = mail_nickname(name)
        state.add_group(
            DirectoryGroup(
                id=stable_id(tenant, "group", nickname),
                display_name=name,
                mail=f"{nickname}@{domain}",
                description=description,
                member_ids=[u.id for u in state.users() if job_titles is None or u.job_title in job_titles],
            )
        )
    return state


def extra_tenant_states(config: EntraSimConfig, loaded: list[EntraState], now: datetime) -> list[EntraState]:
    """The configured extra tenants: as loaded from the state file, else freshly seeded."""
    by_id = {state.tenant_id.lower(): state for state in loaded}
    return [
        by_id.get(extra.tenant_id.lower()) or seed_tenant(extra.tenant_id, extra.domain, extra.users, now)
        for extra in config.extra_tenants
    ]


def ensure_operators_group(state: EntraState) -> None:
    """Add the operators security group (OPERATORS_GROUP_ID, the seeded admin its only member) if the
    tenant lacks it: a fresh one, or one from a state file written before the group existed."""
    if state.group(OPERATORS_GROUP_ID) is not None:
        return
    admin = state.user(ADMIN_UPN)
    state.add_group(
        DirectoryGroup(
            id=OPERATORS_GROUP_ID,
            display_name=OPERATORS_GROUP_NAME,
            mail=None,
            description="May sign in to the connector's web app",
            unified=False,
            member_ids=[admin.id] if admin else [],
        )
    )


def reconcile_provisioning_app(ctx: SimContext, now: datetime) -> None:
    """Make the provisioning app match the config: it exists with a service principal, exactly the
    configured Graph roles, the configured secret (and certificate), and public client flows on
    (so it can also run the device code flow)."""
    config, state = ctx.config, ctx.state
    app = state.application_by_app_id(config.provisioning_client_id)
    # Backdated so replication delays never apply to the seeded identity.
    seeded_at = now - timedelta(days=1)
    if app is None:
        app = create_application(
            ctx,
            {
                "displayName": PROVISIONING_DISPLAY_NAME,
                "signInAudience": "AzureADMyOrg",
                "isFallbackPublicClient": True,
            },
            seeded_at,
            owners=[],
            app_id=config.provisioning_client_id,
        )
    sp = state.service_principal_by_app_id(app.app_id) or create_service_principal(ctx, app, seeded_at)
    sp.created = min(sp.created, seeded_at)
    app.password_credentials = [c for c in app.password_credentials if c.display_name != PROVISIONING_SECRET_NAME]
    app.password_credentials.append(
        new_password_credential(
            config.provisioning_secret,
            PROVISIONING_SECRET_NAME,
            seeded_at,
            now + timedelta(days=config.provisioning_secret_lifetime_days),
            seeded_at,
        )
    )
    if config.provisioning_certificate_pem is not None:
        cert = new_key_credential(config.provisioning_certificate_pem)
        if all(k.sha1_thumbprint != cert.sha1_thumbprint for k in app.key_credentials):
            app.key_credentials.append(cert)
    graph = ctx.graph_sp
    unknown = [name for name in config.provisioning_roles if name not in ROLE_BY_VALUE]
    if unknown:
        raise ValueError(f"provisioning_roles not among Graph's app roles: {unknown}")
    wanted = {ROLE_BY_VALUE[name].id for name in config.provisioning_roles}
    for assignment in state.app_role_assignments(sp.id):
        if assignment.resource_id == graph.id and assignment.app_role_id not in wanted:
            state.remove_app_role_assignment(assignment)
    have = {a.app_role_id for a in state.app_role_assignments(sp.id) if a.resource_id == graph.id}
    for role_id in sorted(wanted - have):
        assign_app_role(ctx, sp, graph, role_id, seeded_at)
    state.touch()


def provisioning_credentials(ctx: SimContext) -> ProvisioningCredentials:
    config = ctx.config
    app = ctx.state.application_by_app_id(config.provisioning_client_id)
    if app is None:
        return ProvisioningCredentials(None, None)
    secret = next((c for c in app.password_credentials if c.display_name == PROVISIONING_SECRET_NAME), None)
    certificate = None
    if config.provisioning_certificate_pem is not None:
        thumbprint = new_key_credential(config.provisioning_certificate_pem).sha1_thumbprint
        certificate = next((k for k in app.key_credentials if k.sha1_thumbprint == thumbprint), None)
    return ProvisioningCredentials(secret, certificate)
