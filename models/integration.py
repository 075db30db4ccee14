"""Inputs, status and building blocks of an integration. None of these ever holds a secret value: a
client secret is represented by a :class:`SecretRef` (key ID, hint, expiry) that activities resolve
through the secret store."""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator

from models.review import AdoptSpec, Finding

INTEGRATION_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
DOMAIN_RE = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", re.IGNORECASE)
# Entra caps a client secret at two years.
MAX_SECRET_LIFETIME_DAYS = 730
MAX_REDIRECT_URI_LENGTH = 256
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The six Microsoft Graph application permissions of the vendor's guide (step 4).
REQUIRED_GRAPH_PERMISSIONS = (
    "Directory.Read.All",
    "User.Read.All",
    "Group.Read.All",
    "Contacts.Read",
    "Presence.Read.All",
    "Presence.ReadWrite.All",
)


def workflow_id_for(integration_id: str) -> str:
    return f"integration-{integration_id}"


def validate_integration_id(value: str) -> str:
    if not INTEGRATION_ID_RE.match(value):
        raise ValueError(
            f"integration ID {value!r} must be 1-63 lowercase letters, digits or '-', starting with a "
            "letter or digit (e.g. 'acme-hq')"
        )
    return value


def _guid(value: str) -> str:
    if not GUID_RE.match(value):
        # The value is not repeated: a secret pasted into the wrong variable must not be printed.
        raise ValueError("must be a GUID like 00000000-0000-0000-0000-000000000000")
    return value.lower()


def _tenant(value: str) -> str:
    if GUID_RE.match(value):
        return value.lower()
    if DOMAIN_RE.match(value):
        return value.lower()
    raise ValueError("must be the tenant's GUID (Directory ID) or one of its domains, e.g. contoso.onmicrosoft.com")


Guid = Annotated[str, AfterValidator(_guid)]
# A tenant as the operator names it: its GUID, or a domain of it (resolved to the GUID before use).
TenantRef = Annotated[str, AfterValidator(_tenant)]


def daily_slot(integration_id: str, after: datetime, every: timedelta) -> datetime:
    """The first moment after ``after`` in this integration's own slot of each ``every`` period.

    The slot is derived from the ID, so a fleet onboarded in one burst spreads its daily checks over
    the whole day instead of replaying together, and a given integration keeps the same time of day.
    """
    period = every.total_seconds()
    offset = zlib.crc32(integration_id.encode()) % max(int(period), 1)
    elapsed = (after - EPOCH).total_seconds()
    slot = (elapsed // period) * period + offset
    if slot <= elapsed:
        slot += period
    return EPOCH + timedelta(seconds=slot)


def redirect_uri_problem(uri: str) -> str | None:
    """Why Entra would reject ``uri`` as a Web redirect URI, or None if it is acceptable."""
    parts = urlsplit(uri)
    if parts.scheme != "https" or not parts.netloc:
        return f"{uri!r} is not an https:// URL (Entra accepts plain http only for localhost)"
    if len(uri) > MAX_REDIRECT_URI_LENGTH:
        return f"redirect URI is {len(uri)} characters; Entra allows at most {MAX_REDIRECT_URI_LENGTH}"
    if "*" in uri:
        return f"{uri!r} contains a wildcard, which Entra does not allow for Web redirect URIs"
    if parts.fragment or uri.endswith("#"):
        return f"{uri!r} contains a fragment (#...), which redirect URIs may not have"
    return None


class RedirectUris(BaseModel):
    """The two values the admin reads in the PBX portal (Integrations > Collaboration > Microsoft 365).

    Deliberately unvalidated on construction: callers ask :meth:`problems` so an update validator can
    reject bad input with the reason instead of failing to decode it.
    """

    redirect_uri: str
    sso_redirect_uri: str | None = None

    def as_list(self) -> list[str]:
        return [self.redirect_uri, *([self.sso_redirect_uri] if self.sso_redirect_uri else [])]

    def problems(self) -> list[str]:
        found = []
        for label, uri in (("redirect URI", self.redirect_uri), ("SSO redirect URI", self.sso_redirect_uri)):
            if uri is not None and (problem := redirect_uri_problem(uri)):
                found.append(f"{label}: {problem}")
        if self.sso_redirect_uri is not None and self.sso_redirect_uri == self.redirect_uri:
            found.append("SSO redirect URI: must differ from the redirect URI")
        return found


class OnboardRequest(BaseModel):
    """What an operator asks for when onboarding (CLI flags, the console's form), checked as a whole
    before anything starts."""

    model_config = ConfigDict(extra="forbid")

    integration_id: Annotated[str, AfterValidator(validate_integration_id)]
    tenant: TenantRef
    display_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)] | None = None
    secret_lifetime_days: Annotated[int, Field(ge=1, le=MAX_SECRET_LIFETIME_DAYS)] | None = None
    redirect_uris: RedirectUris | None = None

    @field_validator("redirect_uris")
    @classmethod
    def _uris_acceptable(cls, uris: RedirectUris | None) -> RedirectUris | None:
        if uris is not None and (problems := uris.problems()):
            raise ValueError("; ".join(problems))
        return uris


class LifecycleOptions(BaseModel):
    """Knobs captured at start so a running workflow does not change behaviour when settings change."""

    secret_lifetime: timedelta = timedelta(days=180)
    reminder_offsets: list[timedelta] = Field(default_factory=lambda: [timedelta(days=d) for d in (30, 14, 7, 3, 1, 0)])
    human_reminder_interval: timedelta = timedelta(days=1)
    # Unanswered reminders about one thing before the escalation channels are added.
    escalate_after_reminders: int = 3
    # How often the app's password credentials are checked for removal or expiry outside the service.
    credential_check_interval: timedelta = timedelta(days=1)
    # How long to wait for a brand-new secret to replicate before giving up on an attempt.
    secret_replication_timeout: timedelta = timedelta(minutes=5)
    # Continue-as-new after this many history events, so a years-long run stays small.
    max_history_events: int = 2000
    # Rotation: how often the schedule starts one (None: half the secret lifetime), how long to look
    # for sign-in evidence that the PBX moved to the new secret, and the fallback wait without it.
    rotation_interval: timedelta | None = None
    sign_in_poll_interval: timedelta = timedelta(minutes=10)
    cutover_grace_period: timedelta = timedelta(hours=1)
    # Sign-ins reach the logs minutes late: only a quiet window this long after confirmation counts.
    sign_in_settle_time: timedelta = timedelta(minutes=15)

    def rotation_every(self, lifetime: timedelta) -> timedelta:
        return self.rotation_interval or lifetime / 2


class OnboardInput(BaseModel):
    integration_id: str
    tenant_id: str
    display_name: str | None = None
    redirect_uris: RedirectUris | None = None
    yeastar_configured: bool = False
    # Off only where the server lacks the feature (the time-skipping test server has neither custom
    # search attributes nor schedules; its tests deliver "rotate now" themselves).
    publish_search_attributes: bool = True
    schedule_rotations: bool = True
    options: LifecycleOptions = Field(default_factory=LifecycleOptions)
    # Take over an app registration configured by hand instead of registering one.
    adopt: AdoptSpec | None = None

    @field_validator("integration_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return validate_integration_id(value)

    @property
    def app_display_name(self) -> str:
        return self.display_name or f"Yeastar P-Series PBX ({self.integration_id})"

    @property
    def unique_name(self) -> str:
        # Graph's uniqueName is the idempotency key of the app registration (immutable once set).
        return f"yeastar-pbx-{self.integration_id}"


class Phase(StrEnum):
    STARTING = "Starting"
    WAITING_FOR_REDIRECT_URIS = "WaitingForRedirectUris"
    PROVISIONING = "Provisioning"
    WAITING_FOR_CONSENT = "WaitingForConsent"
    VERIFYING = "Verifying"
    CONNECTED = "Connected"
    ROTATING = "Rotating"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    OFFBOARDED = "Offboarded"

    @property
    def sentence(self) -> str:
        """The phase in words, for people."""
        return _PHASE_SENTENCES[self]


_PHASE_SENTENCES = {
    Phase.STARTING: "Starting",
    Phase.WAITING_FOR_REDIRECT_URIS: "Waiting for the redirect URIs from the PBX portal",
    Phase.PROVISIONING: "Setting up the Entra application",
    Phase.WAITING_FOR_CONSENT: "Waiting for the administrator to connect the PBX",
    Phase.VERIFYING: "Checking the connection",
    Phase.CONNECTED: "Connected",
    Phase.ROTATING: "Connected, replacing the client secret",
    Phase.BLOCKED: "Blocked: needs a fix, then retry",
    Phase.EXPIRED: "Expired: the PBX can't sync until it has a valid secret",
    Phase.OFFBOARDED: "Offboarded",
}


def in_words(duration: timedelta) -> str:
    """A duration as people say it: "90 days", "1 day 6 hours", "15 seconds"."""
    seconds = int(duration.total_seconds())
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'s' if count != 1 else ''}")
    return " ".join(parts[:2]) or "0 seconds"


class Step(StrEnum):
    PREFLIGHT = "preflight"
    REDIRECT_URIS = "redirect_uris"
    REGISTER_APP = "register_app"
    SSO_REDIRECT_URI = "sso_redirect_uri"
    PERMISSIONS = "permissions"
    CLIENT_SECRET = "client_secret"
    CONNECT_PBX = "connect_pbx"
    VERIFY = "verify"


class StepState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class StepStatus(BaseModel):
    state: StepState = StepState.PENDING
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    last_error: str | None = None
    detail: str | None = None


class AppIds(BaseModel):
    tenant_id: str
    application_object_id: str
    client_id: str
    service_principal_id: str | None = None


class SecretRef(BaseModel):
    """Everything about a client secret except its value."""

    key_id: str
    hint: str
    display_name: str
    expires_at: datetime


class InstructionCard(BaseModel):
    """What the human has to do next, with the exact values to paste."""

    title: str
    steps: list[str]
    values: dict[str, str] = Field(default_factory=dict)
    commands: list[str] = Field(default_factory=list)


class Blocked(BaseModel):
    step: Step
    error_type: str
    message: str
    fix: str
    since: datetime
    # Where the integration goes once `retry` is received, and which steps it then does again (a new
    # secret after the old one expired or was removed).
    resume_phase: Phase = Phase.PROVISIONING
    restart_from: Step | None = None


class PendingHuman(BaseModel):
    """A human step being waited for; carried across continue-as-new so reminders keep counting."""

    kind: str
    since: datetime
    reminders: int = 0


class Verification(BaseModel):
    token_ok: bool
    users_readable: bool
    role_assignments: list[str]
    missing_roles: list[str]
    extension_count: int | None = None
    admin_consent_evidence: str | None = None
    warnings: list[str] = Field(default_factory=list)


class RotationStage(StrEnum):
    CREATING_SECRET = "creating_secret"
    WAITING_FOR_PBX = "waiting_for_pbx"
    VERIFYING_CUTOVER = "verifying_cutover"
    # How a rotation workflow ends (the integration takes it from there).
    CUTOVER_PROVEN = "cutover_proven"
    OLD_SECRET_EXPIRED = "old_secret_expired"
    ABANDONED = "abandoned"
    # What the integration records once it has settled the outcome.
    COMPLETED = "completed"
    FAILED = "failed"


def rotation_workflow_id(integration_id: str, number: int) -> str:
    return f"rotation-{integration_id}-{number}"


def schedule_id_for(integration_id: str) -> str:
    return f"rotation-schedule-{integration_id}"


# What the rotation schedule starts (by name: activities create the schedule, workflows define it).
ROTATION_REQUEST_WORKFLOW = "RotationRequestWorkflow"


def rotation_request_id_for(integration_id: str) -> str:
    """The schedule's workflow ID (Temporal appends the scheduled time to it)."""
    return f"rotation-request-{integration_id}"


class RotationRequest(BaseModel):
    """A request to rotate now, from the schedule or the operator; a repeated ``request_id`` is a no-op."""

    integration_id: str
    request_id: str
    reason: str = "scheduled"


class RotationPlan(BaseModel):
    """The rotation child workflow's input, from the integration that starts it."""

    integration_id: str
    reason: str
    app: AppIds
    current: SecretRef
    options: LifecycleOptions
    lifetime: timedelta


class RotationStatus(BaseModel):
    workflow_id: str
    reason: str
    stage: RotationStage = RotationStage.CREATING_SECRET
    started_at: datetime
    old_secret: SecretRef
    new_secret: SecretRef | None = None
    # When the new secret's card was shown (the PBX's sign-ins count from here) and confirmed.
    handed_over_at: datetime | None = None
    pbx_updated_at: datetime | None = None
    cutover_evidence: str | None = None
    finished_at: datetime | None = None
    message: str | None = None
    # The latest problem on the side (a notification not delivered, sign-in logs unreadable).
    warning: str | None = None
    card: InstructionCard | None = None


class Reveal(BaseModel):
    """One showing of a secret's value on the web pages (the CLI's --reveal is the operator's own)."""

    key_id: str
    at: datetime
    address: str


class IntegrationStatus(BaseModel):
    """What the `status` query returns: the state plus the pending human action in plain words."""

    integration_id: str
    workflow_id: str
    phase: Phase
    steps: dict[Step, StepStatus]
    app: AppIds | None
    secret: SecretRef | None
    redirect_uris: RedirectUris | None
    granted_permissions: list[str]
    verification: Verification | None
    blocked: Blocked | None
    pending_human_action: InstructionCard | None
    pending_since: datetime | None = None
    warnings: list[str]
    connected_at: datetime | None
    rotation: RotationStatus | None
    last_rotation: RotationStatus | None
    rotations_completed: int
    retired_keys: list[SecretRef] = Field(default_factory=list)
    reveals: list[Reveal] = Field(default_factory=list)
    next_check_at: datetime | None = None
    # Took over an app set up by hand (the watched secret's value is unknown to the service).
    adopted_at: datetime | None = None
    adopted_key_id: str | None = None
    # The last daily check, and what it found changed in the app (repaired or not).
    last_check_at: datetime | None = None
    drift: list[Finding] = Field(default_factory=list)
    history_length: int
    continued_as_new: int


class AdminAction(BaseModel):
    """What the PBX administrator can do right now on the web pages, and for which secret or rotation:
    a link is signed for one of these and dies once the integration has moved on."""

    kind: Literal["redirect-uris", "connect", "rotation"]
    ref: str = ""  # the key ID of the secret to paste (connect), the rotation's workflow ID (rotation)


def admin_action(status: IntegrationStatus) -> AdminAction | None:
    if status.phase == Phase.WAITING_FOR_REDIRECT_URIS:
        return AdminAction(kind="redirect-uris")
    rotation = status.rotation
    if rotation is not None and rotation.stage in (RotationStage.WAITING_FOR_PBX, RotationStage.VERIFYING_CUTOVER):
        return AdminAction(kind="rotation", ref=rotation.workflow_id)
    if status.steps[Step.CONNECT_PBX].state == StepState.WAITING and status.secret is not None:
        return AdminAction(kind="connect", ref=status.secret.key_id)
    return None


class OffboardRequest(BaseModel):
    """End an integration: `cancel` (it never connected) removes what onboarding created; `offboard`
    removes the service's client secrets, or the whole app registration with ``delete_app``."""

    cancel: bool = False
    delete_app: bool = False
    by: str | None = None


class ConsentConfirmation(BaseModel):
    confirmed_by: str | None = None
    note: str | None = None
