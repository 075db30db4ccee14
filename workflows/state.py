"""The integration workflow's whole state: what it carries across continue-as-new."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import BaseModel, Field

from models.integration import (
    AppIds,
    Blocked,
    InstructionCard,
    OffboardRequest,
    OnboardInput,
    PendingHuman,
    Phase,
    RedirectUris,
    Reveal,
    RotationRequest,
    RotationStatus,
    SecretRef,
    Step,
    StepStatus,
    Verification,
)
from models.review import Finding

# Rotation request IDs remembered to drop a repeat (the schedule retrying one action, say).
REMEMBERED_REQUESTS = 20
# Reveals kept for the status (the newest).
REMEMBERED_REVEALS = 20


class IntegrationState(BaseModel):
    input: OnboardInput
    phase: Phase = Phase.STARTING
    steps: dict[Step, StepStatus] = Field(default_factory=lambda: {step: StepStatus() for step in Step})
    redirect_uris: RedirectUris | None = None
    app: AppIds | None = None
    granted_permissions: list[str] = Field(default_factory=list)
    secret: SecretRef | None = None
    secret_lifetime: timedelta | None = None
    # When the card with the credentials to paste was shown: the PBX's sign-ins count from then.
    handed_over_at: datetime | None = None
    # Correlation IDs the service gave its own sign-ins as the app, so they never count as the PBX's.
    own_sign_in_ids: list[str] = Field(default_factory=list)
    consent_confirmed_at: datetime | None = None
    consent_confirmed_by: str | None = None
    verification: Verification | None = None
    connected_at: datetime | None = None
    blocked: Blocked | None = None
    retry_requested: bool = False
    instruction: InstructionCard | None = None
    waiting: PendingHuman | None = None
    # Keyed by topic, so a recurring warning replaces its older self.
    warnings: dict[str, str] = Field(default_factory=dict)
    notifications_sent: list[str] = Field(default_factory=list)
    next_check_at: datetime | None = None
    rotation: RotationStatus | None = None
    last_rotation: RotationStatus | None = None
    rotations_started: int = 0
    rotations_completed: int = 0
    pending_rotation: RotationRequest | None = None
    # A rotation that could not get a working new secret (Graph failing) is tried again from then.
    retry_rotation_at: datetime | None = None
    rotation_requests_seen: list[str] = Field(default_factory=list)
    # Keys replaced by a rotation, removed from the app once that succeeds (retried daily until then).
    retired_keys: list[SecretRef] = Field(default_factory=list)
    schedule_ensured_for: timedelta | None = None
    # Each showing of a secret on the web pages; a key in reveals_allowed may be shown once more.
    reveals: list[Reveal] = Field(default_factory=list)
    reveals_allowed: list[str] = Field(default_factory=list)
    # Set by `offboard` / `cancel`: the workflow winds up at its next safe point and ends.
    offboard: OffboardRequest | None = None
    continued_as_new: int = 0
    # Set when the integration took over an app configured by hand (OnboardInput.adopt).
    adopted_at: datetime | None = None
    adopted_key_id: str | None = None
    # What the last daily check found different in the app (repaired or not), and when it ran.
    drift: list[Finding] = Field(default_factory=list)
    last_check_at: datetime | None = None
