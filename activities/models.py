"""Inputs and results of the activities. Kept free of client imports so workflow code can import them."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from notifications.message import Notification
from workflows.models import AppIds


class ActivityResult(BaseModel):
    # Which Temporal attempt produced this result, so the status shows retries that happened.
    attempt: int = 1


class PreflightInput(BaseModel):
    tenant_id: str
    requested_lifetime: timedelta
    check_yeastar: bool


class PreflightResult(ActivityResult):
    granted_roles: list[str]
    secret_lifetime: timedelta
    lifetime_note: str | None = None
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


class ProveSecretResult(ActivityResult):
    waited_seconds: float


class VerifyInput(BaseModel):
    integration_id: str
    app: AppIds
    key_id: str
    permissions: list[str]
    consent_confirmed_at: datetime | None
    check_yeastar: bool


class CheckCredentialInput(BaseModel):
    tenant_id: str
    application_object_id: str
    key_id: str


class CredentialCheck(ActivityResult):
    present: bool
    application_missing: bool = False
    expires_at: datetime | None = None
    other_key_ids: list[str] = Field(default_factory=list)


class NotifyInput(BaseModel):
    notification: Notification
    # Also send to the escalation channels (reminders nobody acted on).
    escalate: bool = False


class NotifyResult(BaseModel):
    delivered: list[str]
    failed_permanently: list[str]


class ScheduleInput(BaseModel):
    integration_id: str
    every: timedelta


class BeginRotationInput(BaseModel):
    integration_id: str
    rotation_workflow_id: str
    reason: str


class RemoveSecretInput(BaseModel):
    integration_id: str
    tenant_id: str
    application_object_id: str
    key_id: str


class CutoverInput(BaseModel):
    tenant_id: str
    client_id: str
    old_key_id: str
    new_key_id: str
    since: datetime


class CutoverEvidence(ActivityResult):
    readable: bool
    new_key_sign_ins: int = 0
    old_key_sign_ins: int = 0
    last_new_use: datetime | None = None
    last_old_use: datetime | None = None
    reason: str | None = None
