"""Inputs and results of the activities. Free of client imports so workflow code can import them."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from models.integration import AppIds, SecretRef
from models.review import AppReview, ExpectedApp, Finding
from notifications.message import Notification


class ActivityResult(BaseModel):
    # Which Temporal attempt produced this result, so the status shows retries that happened.
    attempt: int = 1


class ProvisioningCredential(BaseModel):
    """When the provisioning identity's own secret or certificate expires (never its value)."""

    kind: str  # "client secret" or "certificate"
    key_id: str
    expires_at: datetime
    display_name: str | None = None


class ProvisioningCheck(ActivityResult):
    credential: ProvisioningCredential | None = None
    # Why the expiry could not be read (a missing permission, say); None when it was.
    problem: str | None = None


class PreflightInput(BaseModel):
    tenant_id: str
    requested_lifetime: timedelta
    check_yeastar: bool


class PreflightResult(ActivityResult):
    granted_roles: list[str]
    secret_lifetime: timedelta
    # Optional permissions missing, each with the feature it degrades; the lifetime clamp.
    notes: list[str] = Field(default_factory=list)
    provisioning_credential: ProvisioningCredential | None = None
    firmware_version: str | None = None


class RegisterInput(BaseModel):
    tenant_id: str
    unique_name: str
    display_name: str
    redirect_uri: str


class RegisterResult(ActivityResult):
    app: AppIds
    created: bool


class RedirectUrisInput(BaseModel):
    tenant_id: str
    application_object_id: str
    redirect_uris: list[str]


class PermissionsInput(BaseModel):
    tenant_id: str
    app: AppIds
    permissions: list[str]


class PermissionsResult(ActivityResult):
    service_principal_id: str
    granted: list[str]
    newly_assigned: int


class CreateSecretInput(BaseModel):
    integration_id: str
    tenant_id: str
    application_object_id: str
    # Tags the password credential so a retried activity finds what an earlier attempt created.
    operation_id: str
    description: str
    expires_at: datetime


class ProveSecretInput(BaseModel):
    integration_id: str
    tenant_id: str
    client_id: str
    key_id: str
    timeout: timedelta
    # Sent as the token requests' client-request-id, which Entra records as the sign-in's correlation
    # ID: the workflow knows its own sign-ins as the app and never counts them as the PBX's.
    sign_in_id: str


class ProveSecretResult(ActivityResult):
    waited_seconds: float


class VerifyInput(BaseModel):
    integration_id: str
    app: AppIds
    key_id: str
    permissions: list[str]
    # The PBX's sign-ins count from the moment the credentials were handed over; the service's own
    # (its proof of the secret, this step's sign-in as the app, see ProveSecretInput) never do.
    handed_over_at: datetime
    sign_in_id: str
    own_sign_in_ids: list[str]
    check_yeastar: bool


class CheckCredentialInput(BaseModel):
    tenant_id: str
    application_object_id: str
    key_id: str
    # Also compare the app with this and repair what is safe (drift); None: the credential only.
    expected: ExpectedApp | None = None


class CredentialCheck(ActivityResult):
    present: bool
    application_missing: bool = False
    expires_at: datetime | None = None
    other_key_ids: list[str] = Field(default_factory=list)
    # What differed from the expected app; repaired ones are marked so.
    drift: list[Finding] = Field(default_factory=list)


class AdoptInput(BaseModel):
    integration_id: str
    tenant_id: str
    client_id: str
    repair: bool


class AdoptResult(ActivityResult):
    review: AppReview
    app: AppIds
    # The secret whose expiry is watched: the hand-made one expiring first (its value is unknown here).
    secret: SecretRef


class RemoveSecretInput(BaseModel):
    integration_id: str
    tenant_id: str
    application_object_id: str
    key_id: str


class DiscardSecretsInput(BaseModel):
    """Remove every credential tagged with ``operation_id`` (a rotation that ended before its card)."""

    integration_id: str
    tenant_id: str
    application_object_id: str
    operation_id: str


class DiscardSecretsResult(ActivityResult):
    removed: list[str]


class OffboardAppInput(BaseModel):
    integration_id: str
    tenant_id: str
    application_object_id: str
    # The whole app registration (soft-deleted: restorable for 30 days), or only the service's secrets.
    delete_app: bool


class OffboardResult(ActivityResult):
    removed_key_ids: list[str]
    app_deleted: bool


class CutoverInput(BaseModel):
    tenant_id: str
    client_id: str
    old_key_id: str
    new_key_id: str
    since: datetime
    own_sign_in_ids: list[str]


class CutoverEvidence(ActivityResult):
    readable: bool
    new_key_sign_ins: int = 0
    old_key_sign_ins: int = 0
    last_new_use: datetime | None = None
    last_old_use: datetime | None = None
    reason: str | None = None


class NotifyInput(BaseModel):
    notification: Notification
    # Also send to the escalation channels (reminders nobody acted on).
    escalate: bool = False


class DeliverInput(BaseModel):
    notification: Notification
    channel: str


class IntegrationRef(BaseModel):
    integration_id: str


class ScheduleInput(BaseModel):
    integration_id: str
    every: timedelta
