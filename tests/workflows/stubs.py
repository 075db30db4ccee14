"""Stub activities (registered under the real activity names, as samples-python does) for the failure
paths of the workflows on the time-skipping server: each test decides what Graph "does", and the
workflows run for simulated years in well under a second of their own."""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models import activity_names as names
from models.activities import (
    ActivityResult,
    AdoptInput,
    AdoptResult,
    CheckCredentialInput,
    CreateSecretInput,
    CredentialCheck,
    CutoverEvidence,
    CutoverInput,
    DeliverInput,
    DiscardSecretsInput,
    DiscardSecretsResult,
    IntegrationRef,
    NotifyInput,
    OffboardAppInput,
    OffboardResult,
    PermissionsInput,
    PermissionsResult,
    PreflightInput,
    PreflightResult,
    ProveSecretInput,
    ProveSecretResult,
    ProvisioningCheck,
    ProvisioningCredential,
    RedirectUrisInput,
    RegisterInput,
    RegisterResult,
    RemoveSecretInput,
    ScheduleInput,
    VerifyInput,
)
from models.integration import (
    REQUIRED_GRAPH_PERMISSIONS,
    AppIds,
    ConsentConfirmation,
    IntegrationStatus,
    LifecycleOptions,
    OnboardInput,
    Phase,
    RedirectUris,
    SecretRef,
    Verification,
    workflow_id_for,
)
from models.review import AdoptSpec, AppReview, Finding
from notifications.message import Notification
from tests.conftest import wait_until
from worker import WORKFLOWS
from workflows.integration import IntegrationWorkflow

TENANT = "11111111-1111-4111-8111-111111111111"
URIS = RedirectUris(redirect_uri="https://pbx.example.com/api/microsoft365/oauth2/callback")


def failure(message: str, *, retryable: bool = False) -> ApplicationError:
    return ApplicationError(message, "fix it, then retry", type="StubFailure", non_retryable=not retryable)


@dataclass
class FakeGraph:
    """What the stubs pretend Entra holds and does; tests change the knobs as they go."""

    keys: dict[str, SecretRef] = field(default_factory=dict)  # key ID -> the secret's reference
    created: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    removal_failures: int = 0  # the next N removals fail
    # Which key the PBX is seen signing in with during a cut-over: "new", "old", or None (logs unreadable).
    pbx_uses: str | None = "new"
    evidence_failures: int = 0  # the next N cut-over evidence reads fail (Graph down)
    create_fails: bool = False
    channels: list[str] = field(default_factory=lambda: ["ops"])
    channel_down: set[str] = field(default_factory=set)
    delivered: list[tuple[str, Notification]] = field(default_factory=list)
    provisioning_expiry: datetime | None = None
    app_deleted: bool = False
    # Adoption: the secret set up by hand (None: the app isn't found), and what the daily check finds.
    hand_made: SecretRef | None = None
    drift: list[Finding] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)

    def of_kind(self, kind: str, channel: str = "ops") -> list[Notification]:
        return [n for c, n in self.delivered if c == channel and n.kind == kind]


class StubActivities:
    def __init__(self, graph: FakeGraph) -> None:
        self.graph = graph

    def _count(self) -> None:
        self.graph.calls[activity.info().activity_type] += 1

    @activity.defn(name=names.PREFLIGHT)
    async def preflight(self, req: PreflightInput) -> PreflightResult:
        self._count()
        credential = None
        if self.graph.provisioning_expiry is not None:
            credential = ProvisioningCredential(
                kind="client secret", key_id="prov", expires_at=self.graph.provisioning_expiry
            )
        return PreflightResult(
            granted_roles=[], secret_lifetime=req.requested_lifetime, provisioning_credential=credential
        )

    @activity.defn(name=names.REGISTER_APPLICATION)
    async def register_application(self, req: RegisterInput) -> RegisterResult:
        self._count()
        return RegisterResult(
            app=AppIds(tenant_id=req.tenant_id, application_object_id="app", client_id="client"), created=True
        )

    @activity.defn(name=names.SET_REDIRECT_URIS)
    async def set_redirect_uris(self, req: RedirectUrisInput) -> ActivityResult:
        self._count()
        return ActivityResult()

    @activity.defn(name=names.GRANT_PERMISSIONS)
    async def grant_permissions(self, req: PermissionsInput) -> PermissionsResult:
        self._count()
        return PermissionsResult(
            service_principal_id="sp", granted=req.permissions, newly_assigned=len(req.permissions)
        )

    @activity.defn(name=names.CREATE_CLIENT_SECRET)
    async def create_client_secret(self, req: CreateSecretInput) -> SecretRef:
        self._count()
        if self.graph.create_fails:
            raise failure("Graph refused the new secret")
        secret = SecretRef(
            key_id=f"key-{len(self.graph.created) + 1}",
            hint="abc",
            display_name=f"{req.description} [op:{req.operation_id}]",
            expires_at=req.expires_at,
        )
        self.graph.keys[secret.key_id] = secret
        self.graph.created.append(secret.key_id)
        return secret

    @activity.defn(name=names.PROVE_SECRET)
    async def prove_secret(self, req: ProveSecretInput) -> ProveSecretResult:
        self._count()
        return ProveSecretResult(waited_seconds=0.0)

    @activity.defn(name=names.VERIFY_INTEGRATION)
    async def verify_integration(self, req: VerifyInput) -> Verification:
        self._count()
        return Verification(
            token_ok=True,
            users_readable=True,
            role_assignments=list(REQUIRED_GRAPH_PERMISSIONS),
            missing_roles=[],
            admin_consent_evidence="stub",
        )

    @activity.defn(name=names.CHECK_CREDENTIAL)
    async def check_credential(self, req: CheckCredentialInput) -> CredentialCheck:
        self._count()
        drift = self.graph.drift if req.expected is not None else []
        return CredentialCheck(present=req.key_id in self.graph.keys, drift=drift)

    @activity.defn(name=names.ADOPT_APPLICATION)
    async def adopt_application(self, req: AdoptInput) -> AdoptResult:
        self._count()
        secret = self.graph.hand_made
        if secret is None:
            raise failure(f"No app registration with client ID {req.client_id}")
        self.graph.keys[secret.key_id] = secret
        review = AppReview(
            tenant_id=req.tenant_id,
            application_object_id="app",
            client_id=req.client_id,
            service_principal_id="sp",
            redirect_uris=URIS.as_list(),
            granted=list(REQUIRED_GRAPH_PERMISSIONS),
            findings=[
                Finding(code="permission-not-consented", detail="no admin consent for Contacts.Read", repairable=True)
            ],
        )
        if req.repair:
            review.findings = [f.model_copy(update={"repaired": True}) for f in review.findings]
        app = AppIds(
            tenant_id=req.tenant_id, application_object_id="app", client_id=req.client_id, service_principal_id="sp"
        )
        return AdoptResult(review=review, app=app, secret=secret)

    @activity.defn(name=names.REMOVE_CLIENT_SECRET)
    async def remove_client_secret(self, req: RemoveSecretInput) -> ActivityResult:
        self._count()
        if self.graph.removal_failures > 0:
            self.graph.removal_failures -= 1
            raise failure("Graph is down")
        self.graph.keys.pop(req.key_id, None)
        self.graph.removed.append(req.key_id)
        return ActivityResult()

    @activity.defn(name=names.DISCARD_OPERATION_SECRETS)
    async def discard_operation_secrets(self, req: DiscardSecretsInput) -> DiscardSecretsResult:
        self._count()
        tag = f"[op:{req.operation_id}]"
        gone = [key for key, secret in self.graph.keys.items() if tag in secret.display_name]
        for key in gone:
            del self.graph.keys[key]
            self.graph.removed.append(key)
        return DiscardSecretsResult(removed=gone)

    @activity.defn(name=names.OFFBOARD_APP)
    async def offboard_app(self, req: OffboardAppInput) -> OffboardResult:
        self._count()
        removed = [] if req.delete_app else list(self.graph.keys)
        self.graph.keys.clear()
        self.graph.removed += removed
        self.graph.app_deleted = req.delete_app
        return OffboardResult(removed_key_ids=removed, app_deleted=req.delete_app)

    @activity.defn(name=names.CUTOVER_EVIDENCE)
    async def cutover_evidence(self, req: CutoverInput) -> CutoverEvidence:
        self._count()
        if self.graph.evidence_failures > 0:
            self.graph.evidence_failures -= 1
            raise failure("Graph is down")
        if self.graph.pbx_uses is None:
            return CutoverEvidence(readable=False, reason="Authorization_RequestDenied")
        now = activity.info().current_attempt_scheduled_time
        used = req.new_key_id if self.graph.pbx_uses == "new" else req.old_key_id
        moment = now - timedelta(minutes=1)
        return CutoverEvidence(
            readable=True,
            new_key_sign_ins=int(used == req.new_key_id),
            old_key_sign_ins=int(used == req.old_key_id),
            last_new_use=moment if used == req.new_key_id else None,
            last_old_use=moment if used == req.old_key_id else None,
        )

    @activity.defn(name=names.CHECK_PROVISIONING_CREDENTIAL)
    async def check_provisioning_credential(self, tenant_id: str) -> ProvisioningCheck:
        self._count()
        if self.graph.provisioning_expiry is None:
            return ProvisioningCheck(problem="not readable")
        return ProvisioningCheck(
            credential=ProvisioningCredential(
                kind="client secret", key_id="prov", expires_at=self.graph.provisioning_expiry
            )
        )

    @activity.defn(name=names.NOTIFICATION_CHANNELS)
    async def notification_channels(self, req: NotifyInput) -> list[str]:
        return list(self.graph.channels)

    @activity.defn(name=names.DELIVER_NOTIFICATION)
    async def deliver_notification(self, req: DeliverInput) -> None:
        if req.channel in self.graph.channel_down:
            raise failure(f"{req.channel} is down", retryable=True)
        self.graph.delivered.append((req.channel, req.notification))

    @activity.defn(name=names.ENSURE_ROTATION_SCHEDULE)
    async def ensure_rotation_schedule(self, req: ScheduleInput) -> ActivityResult:
        return ActivityResult()

    @activity.defn(name=names.DELETE_ROTATION_SCHEDULE)
    async def delete_rotation_schedule(self, req: IntegrationRef) -> ActivityResult:
        self._count()
        return ActivityResult()

    def all(self) -> list[Callable[..., Any]]:
        return [
            getattr(self, name)
            for name in dir(self)
            if not name.startswith("_") and hasattr(getattr(self, name), "__temporal_activity_definition")
        ]


@dataclass
class StubWorld:
    env: WorkflowEnvironment
    graph: FakeGraph
    task_queue: str

    def onboard(self, integration_id: str, *, adopt: str | None = None, **options: Any) -> OnboardInput:
        """``adopt``: take over the app with that client ID instead of registering one."""
        return OnboardInput(
            integration_id=integration_id,
            tenant_id=TENANT,
            redirect_uris=None if adopt else URIS,
            publish_search_attributes=False,
            schedule_rotations=False,
            options=LifecycleOptions(**options),
            adopt=AdoptSpec(client_id=adopt) if adopt else None,
        )

    async def start(self, onboard: OnboardInput) -> WorkflowHandle[Any, Any]:
        return await self.env.client.start_workflow(
            IntegrationWorkflow.run,
            args=[onboard, None],
            id=workflow_id_for(onboard.integration_id),
            task_queue=self.task_queue,
        )

    async def connected(self, onboard: OnboardInput) -> tuple[WorkflowHandle[Any, Any], IntegrationStatus]:
        """Onboard and confirm the paste: Connected."""
        handle = await self.start(onboard)
        await wait_until(handle, lambda s: s.phase == Phase.WAITING_FOR_CONSENT, "waiting for consent")
        await handle.execute_update(IntegrationWorkflow.confirm_consent, ConsentConfirmation(confirmed_by="admin"))
        return handle, await wait_until(handle, lambda s: s.phase == Phase.CONNECTED, "connected")


@contextlib.asynccontextmanager
async def stub_world(
    env: WorkflowEnvironment, graph: FakeGraph | None = None, workflows: list[type] | None = None
) -> AsyncIterator[StubWorld]:
    """A worker with the real workflows (or replacements registered under their names) and stubs."""
    world = StubWorld(env, graph or FakeGraph(), f"stub-{uuid.uuid4()}")
    async with Worker(
        env.client,
        task_queue=world.task_queue,
        workflows=workflows or WORKFLOWS,
        activities=StubActivities(world.graph).all(),
    ):
        yield world
