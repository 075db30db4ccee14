"""Typed views of the Microsoft Graph objects the service reads (only the fields it uses).

Graph adds properties over time, so unknown fields are ignored; names are camelCase on the wire
and snake_case in Python (either is accepted when constructing).
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic.alias_generators import to_camel


class GraphModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class PasswordCredential(GraphModel):
    key_id: str
    display_name: str | None = None
    hint: str | None = None
    start_date_time: datetime | None = None
    end_date_time: datetime | None = None
    custom_key_identifier: str | None = None


class KeyCredential(GraphModel):
    """A certificate registered on an app."""

    key_id: str
    display_name: str | None = None
    type: str | None = None  # "AsymmetricX509Cert"
    usage: str | None = None  # "Verify"
    start_date_time: datetime | None = None
    end_date_time: datetime | None = None
    # Edm.Binary (base64 in JSON); defaults to the certificate's SHA-1 thumbprint bytes.
    custom_key_identifier: str | None = None
    # The certificate (DER, base64): only from GraphClient.get_key_credentials ($select=keyCredentials).
    key: str | None = Field(default=None, repr=False)

    @property
    def thumbprint(self) -> str | None:
        """The SHA-1 thumbprint as upper-case hex (as the portal and ``CertificateCredential`` show it),
        or None if ``customKeyIdentifier`` was set to something else."""
        try:
            raw = base64.b64decode(self.custom_key_identifier or "", validate=True)
        except binascii.Error:
            return None
        return raw.hex().upper() if len(raw) == 20 else None


class NewPassword(PasswordCredential):
    """``addPassword``'s answer: the only time Graph returns the secret value."""

    secret_text: SecretStr


class WebApplication(GraphModel):
    redirect_uris: list[str] = []


class ResourceAccess(GraphModel):
    id: str
    type: str  # "Role" (application permission) or "Scope" (delegated)


class RequiredResourceAccess(GraphModel):
    resource_app_id: str
    resource_access: list[ResourceAccess] = []


class Application(GraphModel):
    id: str  # object ID (used in /applications/{id})
    app_id: str  # client ID
    display_name: str | None = None
    unique_name: str | None = None
    sign_in_audience: str | None = None
    created_date_time: datetime | None = None
    web: WebApplication = WebApplication()
    required_resource_access: list[RequiredResourceAccess] = []
    password_credentials: list[PasswordCredential] = []
    key_credentials: list[KeyCredential] = []


class AppRole(GraphModel):
    id: str
    value: str | None = None  # permission name, e.g. "User.Read.All"
    display_name: str | None = None
    allowed_member_types: list[str] = []
    is_enabled: bool = True


class ServicePrincipal(GraphModel):
    id: str
    app_id: str
    display_name: str | None = None
    account_enabled: bool = True
    app_roles: list[AppRole] = []

    def app_role_ids(self) -> dict[str, str]:
        """Enabled application permissions: permission name → appRole id."""
        return {
            role.value: role.id
            for role in self.app_roles
            if role.value and role.is_enabled and "Application" in role.allowed_member_types
        }


class AppRoleAssignment(GraphModel):
    id: str
    principal_id: str
    resource_id: str
    app_role_id: str
    principal_display_name: str | None = None
    resource_display_name: str | None = None
    created_date_time: datetime | None = None


class User(GraphModel):
    id: str
    display_name: str | None = None
    mail: str | None = None
    user_principal_name: str | None = None


class OAuth2PermissionGrant(GraphModel):
    id: str
    client_id: str  # the client's service principal id
    consent_type: str  # "AllPrincipals" (admin consent for the organisation) or "Principal"
    principal_id: str | None = None
    resource_id: str
    scope: str = ""

    @property
    def scopes(self) -> set[str]:
        return set(self.scope.split())


class CredentialRestriction(GraphModel):
    restriction_type: str  # passwordAddition, passwordLifetime, ...
    state: str = "enabled"
    max_lifetime: timedelta | None = None  # ISO-8601 duration such as P90D
    restrict_for_apps_created_after_date_time: datetime | None = None

    def applies_to(self, app_created: datetime) -> bool:
        cutoff = self.restrict_for_apps_created_after_date_time
        return self.state != "disabled" and (cutoff is None or app_created >= cutoff)


class AppManagementRestrictions(GraphModel):
    password_credentials: list[CredentialRestriction] = []


class AppManagementPolicy(GraphModel):
    """The tenant's default app management policy (``/policies/defaultAppManagementPolicy``)."""

    id: str
    is_enabled: bool = False
    application_restrictions: AppManagementRestrictions = AppManagementRestrictions()

    def _password_restriction(self, kind: str, app_created: datetime | None) -> CredentialRestriction | None:
        if not self.is_enabled:
            return None
        created = app_created or datetime.now(UTC)  # None: an app created now
        return next(
            (
                r
                for r in self.application_restrictions.password_credentials
                if r.restriction_type == kind and r.applies_to(created)
            ),
            None,
        )

    def password_addition_blocked(self, app_created: datetime | None = None) -> bool:
        """True if ``addPassword`` would fail with CredentialTypeNotAllowedAsPerAppPolicy."""
        return self._password_restriction("passwordAddition", app_created) is not None

    def password_max_lifetime(self, app_created: datetime | None = None) -> timedelta | None:
        """The longest secret lifetime allowed, or None if unrestricted."""
        restriction = self._password_restriction("passwordLifetime", app_created)
        return restriction.max_lifetime if restriction else None


class SignInStatus(GraphModel):
    error_code: int = 0  # 0 = success
    failure_reason: str | None = None


class SignIn(GraphModel):
    """A service-principal sign-in (beta ``auditLogs/signIns``): which credential a client used."""

    id: str
    created_date_time: datetime
    app_id: str
    service_principal_id: str | None = None
    service_principal_credential_key_id: str | None = None
    # The client-request-id of the token request: tells a client's own sign-ins from others'.
    correlation_id: str | None = None
    status: SignInStatus = Field(default_factory=SignInStatus)
