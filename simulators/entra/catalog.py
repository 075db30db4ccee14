"""Fixed identifiers of the simulated tenant and of Microsoft Graph's own service principal."""

from __future__ import annotations

from dataclasses import dataclass

SIM_TENANT_ID = "11111111-1111-4111-8111-111111111111"
PROVISIONING_APP_ID = "22222222-2222-4222-8222-222222222222"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GRAPH_RESOURCE = "https://graph.microsoft.com"
# Azure Key Vault's first-party app and the resource (token audience) of its data plane.
KEY_VAULT_APP_ID = "cfa8b339-82a2-471a-a3c9-0fc0be7a4093"
KEY_VAULT_RESOURCE = "https://vault.azure.net"
# Microsoft's own tenant: the owner organisation of first-party service principals such as Graph.
MICROSOFT_TENANT_ID = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
TENANT_DOMAIN = "contoso-sim.onmicrosoft.com"
# A second (customer) tenant for multi-tenant tests and demos: EntraSimConfig.extra_tenants.
CUSTOMER_TENANT_ID = "44444444-4444-4444-8444-444444444444"
CUSTOMER_DOMAIN = "fabrikam-sim.onmicrosoft.com"
# Template IDs of Microsoft Entra built-in roles (permissions-reference): what a user token's ``wids``
# claim lists.
GLOBAL_ADMIN_ROLE_TEMPLATE_ID = "62e90394-69f5-4237-9190-012177145e10"
PRIVILEGED_ROLE_ADMIN_ROLE_TEMPLATE_ID = "e8611ab8-c189-46e8-94e1-60213ab1f814"
CLOUD_APP_ADMIN_ROLE_TEMPLATE_ID = "158c047a-c907-4556-b7ef-446551a6b5f7"
APP_ADMIN_ROLE_TEMPLATE_ID = "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3"
DIRECTORY_ROLES = {
    "Global Administrator": GLOBAL_ADMIN_ROLE_TEMPLATE_ID,
    "Privileged Role Administrator": PRIVILEGED_ROLE_ADMIN_ROLE_TEMPLATE_ID,
    "Cloud Application Administrator": CLOUD_APP_ADMIN_ROLE_TEMPLATE_ID,
    "Application Administrator": APP_ADMIN_ROLE_TEMPLATE_ID,
}
# Who may consent on behalf of the organisation (grant-admin-consent): any permission of any API ...
CONSENT_ANY_ROLES = frozenset({GLOBAL_ADMIN_ROLE_TEMPLATE_ID, PRIVILEGED_ROLE_ADMIN_ROLE_TEMPLATE_ID})
# ... and any permission except Microsoft Graph app roles (application permissions). They also manage
# every app registration and enterprise app.
APP_ADMIN_ROLES = CONSENT_ANY_ROLES | {CLOUD_APP_ADMIN_ROLE_TEMPLATE_ID, APP_ADMIN_ROLE_TEMPLATE_ID}
# The security group whose members may sign in to the connector's web app (its only seeded member is
# the admin, seed.ADMIN_UPN); fixed so the web app's allowed-group setting can name it.
OPERATORS_GROUP_ID = "33333333-3333-4333-8333-333333333333"
OPERATORS_GROUP_NAME = "PBX connector operators"
# Epoch of Entra's default app management policy restrictions (apps created before it are exempt).
POLICY_RESTRICT_FOR_APPS_CREATED_AFTER = "2019-01-01T00:00:00Z"

DEFAULT_PROVISIONING_ROLES = (
    "Application.ReadWrite.All",
    "AppRoleAssignment.ReadWrite.All",
    "Application.Read.All",
    "Policy.Read.All",
    "AuditLog.Read.All",
    "Directory.Read.All",
)

# First-party public clients that may use the device code flow in any tenant.
WELL_KNOWN_PUBLIC_CLIENTS = {
    "04b07795-8ddb-461a-bbee-02f9e1bf7b46": "Microsoft Azure CLI",
    "14d82eec-204b-4c2f-b7e8-296a70dab67e": "Microsoft Graph Command Line Tools",
}


@dataclass(frozen=True)
class Permission:
    value: str
    id: str
    display_name: str


# Application permissions (type Role) on Graph; GUIDs are Microsoft's real ones.
GRAPH_APP_ROLES = (
    Permission("Directory.Read.All", "7ab1d382-f21e-4acd-a863-ba3e13f7da61", "Read directory data"),
    Permission("User.Read.All", "df021288-bdef-4463-88db-98f22de89214", "Read all users' full profiles"),
    Permission("Group.Read.All", "5b567255-7703-4780-807c-7be8301ae99b", "Read all groups"),
    Permission("Contacts.Read", "089fe4d0-434a-44c5-8827-41ba8a0b17f5", "Read contacts in all mailboxes"),
    Permission("Presence.Read.All", "a70e0c2d-e793-494c-94c4-118fa0a67f42", "Read presence information for all users"),
    Permission(
        "Presence.ReadWrite.All",
        "83cded22-8297-4ff6-a7fa-e97e9545a259",
        "Read and write presence information for all users",
    ),
    Permission("Application.ReadWrite.All", "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9", "Read and write all applications"),
    Permission(
        "Application.ReadWrite.OwnedBy",
        "18a4783c-866b-4cc7-a460-3d5e5662c884",
        "Manage apps that this app creates or owns",
    ),
    Permission(
        "AppRoleAssignment.ReadWrite.All",
        "06b708a9-e830-4db3-a914-8e69da51d44f",
        "Manage app permission grants and app role assignments",
    ),
    Permission("Application.Read.All", "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30", "Read all applications"),
    Permission("Policy.Read.All", "246dd0d5-5bd0-4def-940b-0421030a5b68", "Read your organization's policies"),
    Permission("AuditLog.Read.All", "b0afded3-3588-46d8-8b3d-9842eff778da", "Read all audit log data"),
    Permission("Reports.Read.All", "230c1aed-a721-4c5d-9cb4-a90514e508ef", "Read all usage reports"),
    Permission("Organization.Read.All", "498476ce-e0fe-48b0-b801-37ba7e2685c6", "Read organization information"),
    Permission(
        "DelegatedPermissionGrant.ReadWrite.All",
        "8e8e4742-1d95-4f68-9d56-6ee75648c72a",
        "Manage all delegated permission grants",
    ),
)

# Delegated permissions (type Scope) on Graph, for interactive consent and device code tokens.
GRAPH_SCOPES = (
    Permission("User.Read", "e1fe6dd8-ba31-4d61-89e7-88639da4683d", "Sign in and read user profile"),
    Permission("User.Read.All", "a154be20-db9c-4678-8ab7-66f6cc099a59", "Read all users' full profiles"),
    Permission("Directory.Read.All", "06da0dbc-49e2-44d2-8312-53f166ab848a", "Read directory data"),
    Permission("Group.Read.All", "5f8c59db-677d-491f-a6b8-5f174b11ec1d", "Read all groups"),
    Permission("Contacts.Read", "ff74d97f-43af-4b68-9f2a-b77ee6968c5d", "Read user contacts"),
    Permission(
        "Presence.Read.All",
        "9c7a330d-35b3-4aa1-963d-cb2b9f927841",
        "Read presence information of all users in your organization",
    ),
    Permission("offline_access", "7427e0e9-2fba-42fe-b0c0-848c9e6a8182", "Maintain access to data"),
    Permission("openid", "37f7f235-527c-4136-accd-4a02d197296e", "Sign users in"),
    Permission("profile", "14dad69e-099b-42c9-810b-d002981feec1", "View users' basic profile"),
    Permission("email", "64a6cdd6-aab1-4aaf-94b8-3cc8405e90d0", "View users' email address"),
    Permission("Application.Read.All", "c79f8feb-a9db-4090-85f9-90d820caa0eb", "Read applications"),
    Permission("Application.ReadWrite.All", "bdfbf15f-ee85-4955-8675-146e8e5296b5", "Read and write all applications"),
    Permission(
        "AppRoleAssignment.ReadWrite.All",
        "84bccea3-f856-4a8a-967b-dbe0a3d53a64",
        "Manage app permission grants and app role assignments",
    ),
)

# Scopes that only shape the token response (OIDC), never a Graph permission.
OIDC_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})

# Delegated permissions any user may consent to for themselves; the rest need an administrator.
USER_CONSENTABLE_SCOPES = OIDC_SCOPES | {"User.Read"}

ROLE_BY_ID = {p.id: p for p in GRAPH_APP_ROLES}
ROLE_BY_VALUE = {p.value: p for p in GRAPH_APP_ROLES}
SCOPE_BY_ID = {p.id: p for p in GRAPH_SCOPES}


def graph_app_roles_json() -> list[dict[str, object]]:
    return [
        {
            "allowedMemberTypes": ["Application"],
            "description": f"Allows the app to {p.display_name[0].lower()}{p.display_name[1:]} "
            "without a signed-in user.",
            "displayName": p.display_name,
            "id": p.id,
            "isEnabled": True,
            "origin": "Application",
            "value": p.value,
        }
        for p in GRAPH_APP_ROLES
    ]


def graph_scopes_json() -> list[dict[str, object]]:
    return [
        {
            "adminConsentDescription": p.display_name,
            "adminConsentDisplayName": p.display_name,
            "id": p.id,
            "isEnabled": True,
            "type": "User" if p.value in USER_CONSENTABLE_SCOPES else "Admin",
            "userConsentDescription": p.display_name,
            "userConsentDisplayName": p.display_name,
            "value": p.value,
        }
        for p in GRAPH_SCOPES
    ]
