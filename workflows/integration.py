"""IntegrationWorkflow: one per PBX. Takes it from "not integrated" to Connected, then keeps it there.

The documented steps are activities; the two human moments (reading redirect URIs, pasting the
credentials into the PBX and signing in) are instruction cards plus an update each. A failure that
retrying can't fix parks the workflow in Blocked with the fix in plain words until `retry`.

After Connected it reminds before the secret expires, checks the credential once a day in the
integration's own slot of the day, and rotates the secret when asked ("rotate now" from the schedule
or the operator): the rotation is a child workflow, so this workflow always learns how it ended and
settles every outcome itself (see docs/ARCHITECTURE.md, "Rotation").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, WorkflowAlreadyStartedError
from temporalio.exceptions import TimeoutError as ActivityTimeout
from temporalio.workflow import ChildWorkflowHandle, ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from common import search_attributes
    from common.metrics import ROTATIONS
    from models import activity_names as activity
    from models.activities import (
        ActivityResult,
        AdoptInput,
        AdoptResult,
        CheckCredentialInput,
        CredentialCheck,
        IntegrationRef,
        OffboardAppInput,
        OffboardResult,
        PermissionsInput,
        PermissionsResult,
        PreflightInput,
        PreflightResult,
        ProveSecretResult,
        RedirectUrisInput,
        RegisterInput,
        RegisterResult,
        RemoveSecretInput,
        ScheduleInput,
        VerifyInput,
    )
    from models.integration import (
        REQUIRED_GRAPH_PERMISSIONS,
        AdminAction,
        AppIds,
        Blocked,
        ConsentConfirmation,
        InstructionCard,
        IntegrationStatus,
        OffboardRequest,
        OnboardInput,
        PendingHuman,
        Phase,
        RedirectUris,
        Reveal,
        RotationPlan,
        RotationRequest,
        RotationStage,
        RotationStatus,
        SecretRef,
        Step,
        StepState,
        StepStatus,
        Verification,
        admin_action,
        daily_slot,
        rotation_workflow_id,
        workflow_id_for,
    )
    from models.review import ExpectedApp, Finding
    from notifications.message import Notification
    from workflows import instructions, messages
    from workflows.alarms import Alarms
    from workflows.human import due_expiry_reminder, next_expiry_reminder_at, wait_for_human
    from workflows.notify import notify
    from workflows.rotation import SecretRotationWorkflow
    from workflows.shared import (
        create_secret,
        discard_operation_secrets,
        failure_reason,
        history_too_long,
        prove_secret,
        run_activity,
        signal_quietly,
    )
    from workflows.state import REMEMBERED_REQUESTS, REMEMBERED_REVEALS, IntegrationState

T = TypeVar("T")
PROVISIONING_STEPS = (Step.REGISTER_APP, Step.SSO_REDIRECT_URI, Step.PERMISSIONS, Step.CLIENT_SECRET)
CONFIRMABLE_ROTATION_STAGES = (RotationStage.WAITING_FOR_PBX, RotationStage.VERIFYING_CUTOVER)
# Offboarding is the last thing an integration does: it keeps trying Graph for this long.
OFFBOARD_PATIENCE = timedelta(hours=6)
ROTATION_OVERRUN = timedelta(days=1)


@workflow.defn
class IntegrationWorkflow:
    @workflow.init
    def __init__(self, start: OnboardInput, resume: IntegrationState | None = None) -> None:
        self._state = resume or IntegrationState(input=start, redirect_uris=start.redirect_uris)
        self._alarms = Alarms()
        self._rotation_child: ChildWorkflowHandle[Any, RotationStatus] | None = None
        # `check_now` asked for the daily check to run now; cleared once it ran.
        self._check_requested = False

    @workflow.run
    async def run(self, start: OnboardInput, resume: IntegrationState | None = None) -> IntegrationStatus:
        # Each pass does what the carried state calls for, so a run continued-as-new mid-way resumes there.
        try:
            while True:
                self._stop_if_offboarding()
                if self._state.blocked is not None:
                    await self._wait_for_retry()
                elif not self._onboarded:
                    await self._onboard()
                else:
                    await self._stay_connected()
        except _Offboarding:
            return await self._offboard()

    # ------------------------------------------------------------ onboarding

    async def _onboard(self) -> None:
        state = self._state
        if state.input.adopt is not None and state.adopted_at is None:
            await self._adopt_existing()
            return
        if state.steps[Step.PREFLIGHT].state != StepState.DONE:
            self._set_phase(Phase.PROVISIONING)
        if preflight := await self._step(Step.PREFLIGHT, self._preflight):
            self._take_preflight(preflight)

        if state.redirect_uris is None:
            self._set_phase(Phase.WAITING_FOR_REDIRECT_URIS)
            await self._wait_for_human(
                Step.REDIRECT_URIS,
                lambda: self._state.redirect_uris is not None,
                instructions.redirect_uris_card(state.input.integration_id),
                kind="redirect_uris_pending",
                summary="The PBX's redirect URIs are needed to register the Entra application.",
                action=AdminAction(kind="redirect-uris"),
            )
        self._mark(Step.REDIRECT_URIS, StepState.DONE)

        if not all(self._done(step) for step in PROVISIONING_STEPS):
            self._set_phase(Phase.PROVISIONING)
        await self._step(Step.REGISTER_APP, self._register)
        if self._uris.sso_redirect_uri:
            await self._step(Step.SSO_REDIRECT_URI, self._set_redirect_uris)
        else:
            self._mark(Step.SSO_REDIRECT_URI, StepState.SKIPPED, detail="no Client SSO Redirect URI given")
        await self._step(Step.PERMISSIONS, self._grant_permissions)
        await self._step(Step.CLIENT_SECRET, self._create_secret)

        if state.consent_confirmed_at is None:
            await self._wait_for_paste()
        self._mark(Step.CONNECT_PBX, StepState.DONE, detail=f"confirmed by {state.consent_confirmed_by}")

        self._set_phase(Phase.VERIFYING)
        if verification := await self._step(Step.VERIFY, self._verify):
            state.verification = verification
            self._replace_warnings("verify", verification.warnings)
        state.connected_at = state.connected_at or workflow.now()
        workflow.logger.info("integration connected", extra={"integration_id": state.input.integration_id})
        await self._ensure_rotation_schedule()

    def _take_preflight(self, preflight: PreflightResult) -> None:
        state = self._state
        state.secret_lifetime = preflight.secret_lifetime
        self._replace_warnings("preflight", preflight.notes)
        credential = preflight.provisioning_credential
        soonest_reminder = max(state.input.options.reminder_offsets, default=timedelta(0))
        if credential is not None and credential.expires_at - workflow.now() <= soonest_reminder:
            self._warn(
                "provisioning-credential",
                f"The service's own Entra {credential.kind} (key {credential.key_id}) expires at "
                f"{credential.expires_at:%Y-%m-%d %H:%M} UTC: renew it before then, or no integration can be "
                "checked or rotated.",
            )

    async def _adopt_existing(self) -> None:
        """An app registration configured by hand (the guide followed in the portal): take it over and
        watch the secret the PBX already has. Its value is unknown here, so the first rotation hands
        over one this service holds; from then on the integration is like one onboarded here."""
        state = self._state
        self._set_phase(Phase.PROVISIONING)
        if preflight := await self._step(Step.PREFLIGHT, self._preflight):
            self._take_preflight(preflight)
        adopted = await self._step(Step.REGISTER_APP, self._adopt_application)
        if adopted is None:
            return
        review, secret, now = adopted.review, adopted.secret, workflow.now()
        uris = review.redirect_uris
        self._mark(Step.REDIRECT_URIS, StepState.DONE, detail=f"read from the app: {', '.join(uris) or 'none'}")
        if state.redirect_uris is not None and state.redirect_uris.sso_redirect_uri:
            self._mark(Step.SSO_REDIRECT_URI, StepState.DONE, detail="read from the app")
        else:
            self._mark(Step.SSO_REDIRECT_URI, StepState.SKIPPED, detail="no second redirect URI on the app")
        repaired = [f.detail for f in review.findings if f.repaired]
        self._mark(
            Step.PERMISSIONS,
            StepState.DONE,
            detail=f"{len(review.granted)} Graph permission(s) consented"
            + (f"; repaired: {'; '.join(repaired)}" if repaired else ""),
        )
        self._mark(
            Step.CLIENT_SECRET,
            StepState.DONE,
            detail=f"set up by hand (key {secret.key_id}); its value is unknown to this service until the first "
            "rotation",
        )
        self._mark(Step.CONNECT_PBX, StepState.DONE, detail="set up by hand before adoption")
        self._mark(
            Step.VERIFY,
            StepState.SKIPPED,
            detail="the service can't sign in with a secret it doesn't hold; the daily check watches the app",
        )
        self._replace_warnings("adopt", [f.detail for f in review.unrepaired])
        state.adopted_at = state.connected_at = state.consent_confirmed_at = now
        state.adopted_key_id = secret.key_id
        state.consent_confirmed_by = "the PBX administrator, by hand before adoption"
        self._upsert_search_attributes()
        workflow.logger.info("integration adopted", extra={"integration_id": state.input.integration_id})
        if secret.expires_at - now <= messages.URGENT_BEFORE_EXPIRY:
            # Close to expiry already: one critical message offering the rotation, instead of the
            # reminders that fell due before the service knew the secret.
            due_expiry_reminder(
                secret.expires_at,
                state.input.options.reminder_offsets,
                state.notifications_sent,
                lambda offset: _expiry_key(secret, offset),
                now,
            )
            await self._notify(messages.adopted_secret_expiring(state.input.integration_id, secret, now, self._facts()))
        await self._ensure_rotation_schedule()

    async def _adopt_application(self) -> AdoptResult:
        state = self._state
        spec = state.input.adopt
        assert spec is not None
        result = await run_activity(
            activity.ADOPT_APPLICATION,
            AdoptInput(
                integration_id=state.input.integration_id,
                tenant_id=state.input.tenant_id,
                client_id=spec.client_id,
                repair=spec.repair,
            ),
            AdoptResult,
        )
        state.app, state.secret = result.app, result.secret
        state.granted_permissions = result.review.granted
        uris = result.review.redirect_uris
        if uris:
            state.redirect_uris = RedirectUris(
                redirect_uri=uris[0], sso_redirect_uri=uris[1] if len(uris) > 1 else None
            )
        return result

    async def _wait_for_paste(self) -> None:
        """Guide step 6: the credentials are handed over; the PBX's sign-ins count from now on."""
        state = self._state
        # Expired here means a rotation's new secret is waiting to be pasted after the old one expired.
        after_expiry = state.phase == Phase.EXPIRED
        state.handed_over_at = state.handed_over_at or workflow.now()
        if not after_expiry:
            self._set_phase(Phase.WAITING_FOR_CONSENT)
        title = instructions.PASTE_AFTER_EXPIRY_TITLE if after_expiry else instructions.CONNECT_TITLE
        await self._wait_for_human(
            Step.CONNECT_PBX,
            lambda: self._state.consent_confirmed_at is not None,
            instructions.connect_pbx_card(state.input.integration_id, self._app, self._secret, title=title),
            kind="consent_pending",
            summary="Paste the credentials into the PBX and sign in as Global Administrator.",
            severity="critical" if after_expiry else "warning",
            action=AdminAction(kind="connect", ref=self._secret.key_id),
        )

    async def _ensure_rotation_schedule(self) -> None:
        state = self._state
        if not state.input.schedule_rotations:
            return
        every = state.input.options.rotation_every(state.secret_lifetime or state.input.options.secret_lifetime)
        if state.schedule_ensured_for == every:
            return
        try:
            await run_activity(
                activity.ENSURE_ROTATION_SCHEDULE,
                ScheduleInput(integration_id=state.input.integration_id, every=every),
                ActivityResult,
            )
        except ActivityError as err:
            self._warn("schedule", f"rotation schedule not set up: {failure_reason(err)}")
            return
        self._state.warnings.pop("schedule", None)
        state.schedule_ensured_for = every

    # ------------------------------------------------------------- connected

    async def _stay_connected(self) -> None:
        """Connected: rotate when asked, remind before expiry, check the credential daily. Returns when
        the integration needs a human or a new secret (Blocked, Expired, a paste after a rotation)."""
        state = self._state
        self._set_phase(Phase.CONNECTED)
        state.instruction = instructions.connected_card(state.input.integration_id)
        if state.next_check_at is None:
            state.next_check_at = self._next_slot()
        while True:
            await self._checkpoint()
            if state.pending_rotation is not None:
                request, state.pending_rotation = state.pending_rotation, None
                await self._rotate(request)
                if state.blocked is not None or not self._onboarded:
                    return
                self._set_phase(Phase.CONNECTED)
                state.instruction = instructions.connected_card(state.input.integration_id)
                continue
            secret, now = self._secret, workflow.now()
            if state.retry_rotation_at is not None and now >= state.retry_rotation_at:
                state.pending_rotation = RotationRequest(
                    integration_id=state.input.integration_id,
                    request_id=f"retry-after-{state.rotations_started}",
                    reason="retry",
                )
                continue
            await self._send_due_expiry_reminders(secret, now)
            if now >= secret.expires_at:
                await self._needs_new_secret(
                    "SecretExpired",
                    f"The client secret {secret.hint}… expired at {secret.expires_at:%Y-%m-%d %H:%M} UTC; "
                    "the PBX can no longer sync from Entra ID.",
                    phase=Phase.EXPIRED,
                )
                return
            if now >= state.next_check_at or self._check_requested:
                if not await self._daily_check(secret):
                    return
                continue
            await self._alarms.wait_until(
                self._next_wake(secret, now),
                lambda: (
                    self._state.pending_rotation is not None
                    or self._state.offboard is not None
                    or self._check_requested
                ),
            )

    async def _daily_check(self, secret: SecretRef) -> bool:
        """The credential still exists (False once the integration parked for a new one); also the
        daily attempt at removing keys that rotations retired."""
        state = self._state
        check = await self._check_credential(secret)
        state.next_check_at = self._next_slot()
        state.last_check_at = workflow.now()
        self._check_requested = False
        if check is not None:
            await self._take_drift(check.drift)
        await self._remove_retired_keys()
        if check is None or check.present:
            return True
        await self._needs_new_secret(
            "ApplicationDeleted" if check.application_missing else "SecretRemoved",
            f"The Entra application {self._app.client_id} was deleted outside this service; the PBX can no longer sync."
            if check.application_missing
            else f"The client secret {secret.hint}… (key ID {secret.key_id}) was removed from the Entra "
            "application outside this service; the PBX can no longer sync.",
            restart_from=Step.REGISTER_APP if check.application_missing else Step.CLIENT_SECRET,
        )
        return False

    async def _check_credential(self, secret: SecretRef) -> CredentialCheck | None:
        """None when the check itself failed (Graph unreachable): try again at the next slot."""
        try:
            check = await run_activity(
                activity.CHECK_CREDENTIAL,
                CheckCredentialInput(
                    tenant_id=self._app.tenant_id,
                    application_object_id=self._app.application_object_id,
                    key_id=secret.key_id,
                    expected=self._expected_app(),
                ),
                CredentialCheck,
            )
        except ActivityError as err:
            self._warn("check", f"credential check failed at {workflow.now():%Y-%m-%d %H:%M}: {failure_reason(err)}")
            return None
        self._state.warnings.pop("check", None)
        return check

    def _expected_app(self) -> ExpectedApp:
        state = self._state
        known = [key.key_id for key in (state.secret, *state.retired_keys) if key is not None]
        if state.rotation is not None and state.rotation.new_secret is not None:
            known.append(state.rotation.new_secret.key_id)
        return ExpectedApp(
            redirect_uris=self._uris.as_list() if state.redirect_uris is not None else [],
            permissions=list(REQUIRED_GRAPH_PERMISSIONS),
            known_key_ids=known,
        )

    async def _take_drift(self, drift: list[Finding]) -> None:
        """What the check found changed in the app: the rest stays a warning until it is gone, and the
        channels hear about each change once."""
        state = self._state
        state.drift = drift
        self._replace_warnings("drift", [f.detail for f in drift if not f.repaired])
        if not drift or not workflow.patched("app-drift-notification"):
            return
        new = [f for f in drift if messages.drift_key(f) not in state.notifications_sent]
        if new:
            state.notifications_sent += [messages.drift_key(f) for f in new]
            await self._notify(messages.app_drift(state.input.integration_id, new, self._facts()))

    async def _needs_new_secret(
        self,
        error_type: str,
        message: str,
        *,
        restart_from: Step = Step.CLIENT_SECRET,
        phase: Phase = Phase.BLOCKED,
    ) -> None:
        """Park until `retry`; then onboarding issues, proves and hands over a new secret."""
        await self._block(
            Blocked(
                step=Step.CLIENT_SECRET,
                error_type=error_type,
                message=message,
                fix="Run the retry command: a new client secret is created and proven, and you are asked "
                "to paste it into the PBX again.",
                since=workflow.now(),
                restart_from=restart_from,
            ),
            phase,
        )

    def _forget_from(self, restart_from: Step) -> None:
        state = self._state
        state.secret = None
        state.consent_confirmed_at = state.handed_over_at = None
        state.own_sign_in_ids = []
        state.next_check_at = None
        steps = list(Step)
        for step in steps[steps.index(restart_from) :]:
            state.steps[step] = StepStatus()

    # ------------------------------------------------------------- rotation

    async def _rotate(self, request: RotationRequest) -> None:
        """Run one rotation as a child workflow and settle however it ends."""
        state = self._state
        state.rotations_started += 1
        state.retry_rotation_at = None
        rotation_id = rotation_workflow_id(state.input.integration_id, state.rotations_started)
        current = self._secret
        state.rotation = RotationStatus(
            workflow_id=rotation_id, reason=request.reason, started_at=workflow.now(), old_secret=current
        )
        self._set_phase(Phase.ROTATING)
        state.instruction = None
        plan = RotationPlan(
            integration_id=state.input.integration_id,
            reason=request.reason,
            app=self._app,
            current=current,
            options=state.input.options,
            lifetime=state.secret_lifetime or state.input.options.secret_lifetime,
        )
        try:
            self._rotation_child = await workflow.start_child_workflow(
                SecretRotationWorkflow.run,
                args=[plan, None],
                id=rotation_id,
                # The rotation never outlives its integration (nor runs twice for one).
                parent_close_policy=ParentClosePolicy.TERMINATE,
                # Its waits end at the old secret's expiry; this bounds even a rotation that is stuck.
                execution_timeout=max(current.expires_at - workflow.now(), timedelta(0)) + ROTATION_OVERRUN,
            )
            outcome = await self._rotation_child
        except (ChildWorkflowError, WorkflowAlreadyStartedError) as err:  # failed, cancelled, terminated, timed out
            outcome = state.rotation.model_copy(
                update={
                    "stage": RotationStage.FAILED,
                    "message": f"the rotation workflow {rotation_id} ended without finishing: {failure_reason(err)}",
                }
            )
        finally:
            self._rotation_child = None
        await self._settle_rotation(outcome)

    async def _settle_rotation(self, outcome: RotationStatus) -> None:
        """Whatever the rotation's end, the integration leaves Rotating for a truthful phase. Once the
        PBX confirmed the new secret, that secret is the one tracked from now on."""
        state = self._state
        known = state.rotation
        assert known is not None
        if state.offboard is not None:  # cancelled by the offboarding, which removes what it created
            state.rotation, state.last_rotation = None, outcome.model_copy(update={"stage": RotationStage.FAILED})
            return
        # What this workflow saw itself (the confirmation passes through it) fills what a failed child lost.
        outcome.pbx_updated_at = outcome.pbx_updated_at or known.pbx_updated_at
        outcome.handed_over_at = outcome.handed_over_at or known.handed_over_at
        outcome.new_secret = outcome.new_secret or known.new_secret
        outcome.finished_at, outcome.card = outcome.finished_at or workflow.now(), None
        state.rotation = None
        old, new = outcome.old_secret, outcome.new_secret
        if new is None or (outcome.pbx_updated_at is None and outcome.stage != RotationStage.OLD_SECRET_EXPIRED):
            self._count_rotation("abandoned" if outcome.stage == RotationStage.ABANDONED else "failed")
            await self._rotation_failed(outcome, known)
        elif outcome.stage == RotationStage.CUTOVER_PROVEN:
            self._count_rotation("completed")
            self._adopt(new)
            state.rotations_completed += 1
            state.retired_keys.append(old)
            outcome.stage = RotationStage.COMPLETED
            outcome.message = f"the PBX signs in with key {new.key_id}; old key {old.key_id} retired"
            state.warnings.pop("rotation", None)
        elif outcome.pbx_updated_at is None:  # the old secret expired before anyone pasted the new one
            self._count_rotation("expired")
            self._adopt(new)
            state.retired_keys.append(old)
            state.handed_over_at = outcome.handed_over_at
            for step in (Step.CONNECT_PBX, Step.VERIFY):
                state.steps[step] = StepStatus()
            state.consent_confirmed_at = None
            self._set_phase(Phase.EXPIRED)
            self._warn(
                "rotation",
                f"The old client secret {old.hint}… expired at {old.expires_at:%Y-%m-%d %H:%M} UTC before the PBX "
                f"was given the new one (key {new.key_id}): sync is down until it is pasted.",
            )
        else:  # confirmed, but the cut-over was never proven (the deadline, or the child failed)
            self._count_rotation("completed")
            self._adopt(new)
            state.rotations_completed += 1
            if workflow.now() >= old.expires_at:
                state.retired_keys.append(old)
            self._warn(
                "rotation",
                f"Rotation {outcome.workflow_id} ended before the PBX was seen signing in with the new key "
                f"{new.key_id} ({outcome.message}). The service now tracks the new key; the old key {old.key_id} is "
                f"left to expire at {old.expires_at:%Y-%m-%d %H:%M} UTC. If sync stops then, paste the new secret "
                "again and sign in.",
            )
        state.last_rotation = outcome
        await self._remove_retired_keys()

    @staticmethod
    def _count_rotation(outcome: str) -> None:
        # The SDK's meter is replay-safe: a replayed workflow task counts nothing again.
        workflow.metric_meter().create_counter(ROTATIONS, "Rotations that ended, by outcome").add(
            1, {"outcome": outcome}
        )

    async def _rotation_failed(self, outcome: RotationStatus, known: RotationStatus) -> None:
        """Nothing was confirmed: the PBX stays on the current secret, reminders and checks resume."""
        state = self._state
        if outcome.stage == RotationStage.ABANDONED:  # no working new secret (Graph failing): try again soon
            state.retry_rotation_at = workflow.now() + state.input.options.credential_check_interval
            outcome.message = f"{outcome.message}; tried again at {state.retry_rotation_at:%Y-%m-%d %H:%M} UTC"
        else:  # it ended from outside or failed itself: clean up what it could not
            outcome.stage = RotationStage.FAILED
            if known.handed_over_at is None:
                await self._discard_rotation_secrets(outcome.workflow_id)
            elif outcome.new_secret is not None:
                new = outcome.new_secret
                outcome.message = (
                    f"{outcome.message}; its new key {new.key_id} stays in Entra in case it was already pasted "
                    f"into the PBX (it expires {new.expires_at:%Y-%m-%d})"
                )
        self._warn("rotation", f"Rotation {outcome.workflow_id} failed: {outcome.message}")
        await self._notify(messages.rotation_failed(state.input.integration_id, outcome, self._secret))

    async def _discard_rotation_secrets(self, rotation_id: str) -> None:
        try:
            await discard_operation_secrets(self._state.input.integration_id, self._app, rotation_id)
        except ActivityError as err:
            self._warn("discard", f"secrets of rotation {rotation_id} not cleaned up: {failure_reason(err)}")

    def _adopt(self, new: SecretRef) -> None:
        state = self._state
        state.secret = new
        # Reminders already sent for the old key are of no further use.
        state.notifications_sent = [sent for sent in state.notifications_sent if new.key_id in sent]
        self._upsert_search_attributes()

    async def _remove_retired_keys(self) -> None:
        """Remove keys that rotations replaced; a failure is retried at the next daily check until the
        key has expired by itself (then it no longer works, and removing it is only tidiness)."""
        state = self._state
        for key in list(state.retired_keys):
            topic = f"retired:{key.key_id}"
            try:
                await run_activity(
                    activity.REMOVE_CLIENT_SECRET,
                    RemoveSecretInput(
                        integration_id=state.input.integration_id,
                        tenant_id=self._app.tenant_id,
                        application_object_id=self._app.application_object_id,
                        key_id=key.key_id,
                    ),
                    ActivityResult,
                )
            except ActivityError as err:
                if workflow.now() < key.expires_at:
                    self._warn(
                        topic,
                        f"The old key {key.key_id} ({key.hint}…) is not removed yet: {failure_reason(err)}. "
                        f"Retried daily until it expires at {key.expires_at:%Y-%m-%d %H:%M} UTC.",
                    )
                    continue
            state.retired_keys.remove(key)
            state.warnings.pop(topic, None)

    # ------------------------------------------------------------- offboarding

    def _stop_if_offboarding(self) -> None:
        """Called at every safe point (before a step, after a wait): unwinds to `run` once asked to end."""
        if self._state.offboard is not None:
            raise _Offboarding

    async def _offboard(self) -> IntegrationStatus:
        """Remove what the service created (the schedule, its secrets or the whole app) and end."""
        state = self._state
        request = state.offboard
        assert request is not None
        what = []
        if state.input.schedule_rotations and state.schedule_ensured_for is not None:
            try:
                await run_activity(
                    activity.DELETE_ROTATION_SCHEDULE,
                    IntegrationRef(integration_id=state.input.integration_id),
                    ActivityResult,
                )
                what.append("the rotation schedule")
            except ActivityError as err:
                self._warn("offboard-schedule", f"the rotation schedule was not deleted: {failure_reason(err)}")
        if state.app is not None:
            delete_app = request.delete_app or request.cancel
            try:
                result = await run_activity(
                    activity.OFFBOARD_APP,
                    OffboardAppInput(
                        integration_id=state.input.integration_id,
                        tenant_id=state.app.tenant_id,
                        application_object_id=state.app.application_object_id,
                        delete_app=delete_app,
                    ),
                    OffboardResult,
                    schedule_to_close_timeout=OFFBOARD_PATIENCE,
                )
                what.append(
                    f"the app registration {state.app.client_id} (restorable for 30 days)"
                    if result.app_deleted
                    else f"{len(result.removed_key_ids)} client secret(s) of the service from the app"
                )
            except ActivityError as err:
                self._warn(
                    "offboard-app",
                    f"Entra could not be cleaned up ({failure_reason(err)}): remove the app's secrets or the app "
                    f"{state.app.client_id} in the Entra admin center",
                )
        state.blocked, state.waiting, state.rotation = None, None, None
        self._set_phase(Phase.OFFBOARDED)
        verb = "Cancelled" if request.cancel else "Offboarded"
        state.instruction = InstructionCard(
            title=f"{verb} by {request.by or 'the operator'} at {workflow.now():%Y-%m-%d %H:%M} UTC",
            steps=[f"Removed: {', '.join(what) or 'nothing (nothing had been created)'}."]
            + ([] if request.delete_app or request.cancel else ["The app registration itself was kept."]),
        )
        workflow.logger.info("integration ended", extra={"integration_id": state.input.integration_id, "how": verb})
        return self.status()

    @workflow.update
    async def offboard(self, request: OffboardRequest) -> IntegrationStatus:
        self._state.offboard = request
        if self._rotation_child is not None:  # it ends, cancelled; the integration then winds up
            await signal_quietly(workflow.get_external_workflow_handle(self._rotation_child.id).cancel(), "cancel")
        return self.status()

    @offboard.validator
    def _validate_offboard(self, request: OffboardRequest) -> None:
        state = self._state
        if state.offboard is not None:
            raise ValueError("it is already being offboarded")
        if request.cancel and state.connected_at is not None:
            raise ValueError(
                f"it has been Connected (since {state.connected_at:%Y-%m-%d}): end it with offboard, which removes "
                "the service's secrets (or the app, with --delete-app)"
            )

    # ----------------------------------------------------------- the steps

    async def _preflight(self) -> PreflightResult:
        state = self._state
        return await run_activity(
            activity.PREFLIGHT,
            PreflightInput(
                tenant_id=state.input.tenant_id,
                requested_lifetime=state.input.options.secret_lifetime,
                check_yeastar=state.input.yeastar_configured,
            ),
            PreflightResult,
        )

    async def _register(self) -> RegisterResult:
        state = self._state
        result = await run_activity(
            activity.REGISTER_APPLICATION,
            RegisterInput(
                tenant_id=state.input.tenant_id,
                unique_name=state.input.unique_name,
                display_name=state.input.app_display_name,
                redirect_uri=self._uris.redirect_uri,
            ),
            RegisterResult,
        )
        state.app = result.app
        return result

    async def _set_redirect_uris(self) -> ActivityResult:
        return await run_activity(
            activity.SET_REDIRECT_URIS,
            RedirectUrisInput(
                tenant_id=self._app.tenant_id,
                application_object_id=self._app.application_object_id,
                redirect_uris=self._uris.as_list(),
            ),
            ActivityResult,
        )

    async def _grant_permissions(self) -> PermissionsResult:
        result = await run_activity(
            activity.GRANT_PERMISSIONS,
            PermissionsInput(
                tenant_id=self._app.tenant_id, app=self._app, permissions=list(REQUIRED_GRAPH_PERMISSIONS)
            ),
            PermissionsResult,
        )
        self._app.service_principal_id = result.service_principal_id
        self._state.granted_permissions = result.granted
        return result

    async def _create_secret(self) -> ProveSecretResult:
        state = self._state
        lifetime = state.secret_lifetime or state.input.options.secret_lifetime
        if state.secret is None:
            state.secret = await create_secret(
                state.input.integration_id,
                self._app,
                # Deterministic per attempt of this step: a retried activity reconciles.
                operation_id=f"{workflow.info().workflow_id}-{state.steps[Step.CLIENT_SECRET].attempts}-"
                f"{workflow.now():%Y%m%d%H%M%S}",
                description=f"Yeastar PBX {state.input.integration_id}",
                expires_at=workflow.now() + lifetime,
            )
            self._upsert_search_attributes()
        return await prove_secret(
            state.input.integration_id,
            self._app,
            self._secret.key_id,
            state.input.options,
            sign_in_id=self._own_sign_in_id(),
        )

    async def _verify(self) -> Verification:
        state = self._state
        assert state.handed_over_at is not None, "set when the credentials were handed over"
        sign_in_id = self._own_sign_in_id()
        return await run_activity(
            activity.VERIFY_INTEGRATION,
            VerifyInput(
                integration_id=state.input.integration_id,
                app=self._app,
                key_id=self._secret.key_id,
                permissions=list(REQUIRED_GRAPH_PERMISSIONS),
                handed_over_at=state.handed_over_at,
                sign_in_id=sign_in_id,
                own_sign_in_ids=state.own_sign_in_ids,
                check_yeastar=state.input.yeastar_configured,
            ),
            Verification,
        )

    def _own_sign_in_id(self) -> str:
        """A correlation ID for the service's next sign-in as the app, remembered before it is used."""
        sign_in_id = str(workflow.uuid4())
        self._state.own_sign_in_ids.append(sign_in_id)
        return sign_in_id

    # ----------------------------------------------- handlers (the human side)

    @workflow.update
    async def submit_redirect_uris(self, uris: RedirectUris) -> IntegrationStatus:
        """Guide step 1, or later (the PBX moved to a new domain): once the app exists, the new URIs
        are applied to its registration before they are taken."""
        state = self._state
        if state.app is not None:
            try:
                await run_activity(
                    activity.SET_REDIRECT_URIS,
                    RedirectUrisInput(
                        tenant_id=state.app.tenant_id,
                        application_object_id=state.app.application_object_id,
                        redirect_uris=uris.as_list(),
                    ),
                    ActivityResult,
                )
            except ActivityError as err:
                raise ApplicationError(f"Entra refused the redirect URIs: {failure_reason(err)}") from None
        state.redirect_uris = uris
        return self.status()

    @submit_redirect_uris.validator
    def _validate_redirect_uris(self, uris: RedirectUris) -> None:
        state = self._state
        if problems := uris.problems():
            raise ValueError("; ".join(problems))
        if uris == state.redirect_uris:
            raise ValueError("these are the redirect URIs the app already has")
        if running := [str(step) for step, status in state.steps.items() if status.state == StepState.RUNNING]:
            raise ValueError(f"the step {running[0]} is running; send them again in a moment")
        if state.offboard is not None or state.phase == Phase.OFFBOARDED:
            raise ValueError("the integration is being offboarded")

    @workflow.query
    def started_with(self) -> OnboardInput:
        """What the integration was started with (to tell a repeated `onboard` what differs)."""
        return self._state.input

    @workflow.update
    def confirm_consent(self, confirmation: ConsentConfirmation) -> IntegrationStatus:
        self._state.consent_confirmed_at = workflow.now()
        self._state.consent_confirmed_by = confirmation.confirmed_by or "operator"
        return self.status()

    @confirm_consent.validator
    def _validate_consent(self, confirmation: ConsentConfirmation) -> None:
        state = self._state
        if state.steps[Step.CONNECT_PBX].state == StepState.WAITING and state.consent_confirmed_at is None:
            return
        if state.rotation is not None:
            raise ValueError(
                "a rotation is waiting for the PBX: after pasting its new secret, confirm with pbx-updated"
            )
        if state.consent_confirmed_at is not None:
            raise ValueError(
                f"already confirmed at {state.consent_confirmed_at:%Y-%m-%d %H:%M} UTC by "
                f"{state.consent_confirmed_by}; the integration is {state.phase}"
            )
        raise ValueError(
            f"nothing to confirm yet: the integration is {state.phase}, and the client ID and secret to paste "
            "into the PBX don't exist until the steps before are done (the status shows the card when it is time)"
        )

    @workflow.update
    def record_reveal(self, reveal: Reveal) -> IntegrationStatus:
        """The web page is about to show a secret's value: recorded first (when, to which address)."""
        state = self._state
        if reveal.key_id in state.reveals_allowed:
            state.reveals_allowed.remove(reveal.key_id)
        state.reveals = [*state.reveals, reveal][-REMEMBERED_REVEALS:]
        return self.status()

    @record_reveal.validator
    def _validate_reveal(self, reveal: Reveal) -> None:
        if reveal.key_id != self._key_to_paste():
            raise ValueError("that secret is not the one waiting to be pasted (the integration has moved on)")
        earlier = [r for r in self._state.reveals if r.key_id == reveal.key_id]
        if earlier and reveal.key_id not in self._state.reveals_allowed:
            raise ValueError(
                f"this secret was already shown, at {earlier[-1].at:%Y-%m-%d %H:%M} UTC to {earlier[-1].address}; "
                f"the operator can allow one more showing (python starter.py allow-reveal "
                f"{self._state.input.integration_id})"
            )

    @workflow.update
    def allow_reveal(self) -> str:
        """The operator lets the secret waiting to be pasted be shown once more; returns its key ID."""
        key_id = self._key_to_paste()
        assert key_id is not None, "checked by the validator"
        self._state.reveals_allowed = [*self._state.reveals_allowed, key_id]
        return key_id

    @allow_reveal.validator
    def _validate_allow_reveal(self) -> None:
        if self._key_to_paste() is None:
            raise ValueError(f"no secret is waiting to be pasted ({self._state.phase.sentence.lower()})")

    def _key_to_paste(self) -> str | None:
        """The key ID of the secret the administrator is asked to paste now, if any."""
        action = admin_action(self.status())
        if action is None or action.kind == "redirect-uris":
            return None
        rotation = self._state.rotation
        if action.kind == "connect":
            return action.ref
        return rotation.new_secret.key_id if rotation is not None and rotation.new_secret is not None else None

    @workflow.signal
    def retry(self) -> None:
        # Only a parked workflow waits for this; elsewhere it would linger and skip a future Blocked.
        if self._state.blocked is not None:
            self._state.retry_requested = True

    # ------------------------------------------------------ rotation messages

    @workflow.signal
    def request_rotation(self, request: RotationRequest) -> None:
        """A rotation asked for by the schedule: kept if the integration can rotate, else noted in the status."""
        if not self._remember(request):
            return
        if refusal := self._rotation_refusal():
            self._warn(
                "rotation-request",
                f"{request.reason.capitalize()} rotation request at {workflow.now():%Y-%m-%d %H:%M} UTC skipped: "
                f"{refusal}",
            )
            return
        self._state.pending_rotation = request

    @workflow.update
    def rotate_now(self, request: RotationRequest) -> str:
        """A rotation asked for by the operator; returns the ID of the rotation workflow about to start."""
        if self._remember(request):
            self._state.pending_rotation = request
        return rotation_workflow_id(self._state.input.integration_id, self._state.rotations_started + 1)

    @rotate_now.validator
    def _validate_rotate_now(self, request: RotationRequest) -> None:
        if refusal := self._rotation_refusal():
            raise ValueError(refusal)

    def _rotation_refusal(self) -> str | None:
        state = self._state
        if state.rotation is not None:
            return f"a rotation is already running ({state.rotation.workflow_id}, {state.rotation.stage})"
        if state.pending_rotation is not None:
            return "a rotation is already starting"
        if state.phase != Phase.CONNECTED:
            return (
                f"the integration is {state.phase}; only a Connected integration rotates its secret "
                "(a Blocked or Expired one gets a new secret with retry)"
            )
        return None

    def _remember(self, request: RotationRequest) -> bool:
        """False for a request already seen (the same schedule action delivered twice)."""
        seen = self._state.rotation_requests_seen
        if request.request_id in seen:
            return False
        seen[:] = [*seen, request.request_id][-REMEMBERED_REQUESTS:]
        return True

    @workflow.update
    async def check_now(self) -> list[Finding]:
        """Run the daily check now (the credential and the app's drift) and return what it found."""
        self._check_requested = True
        await workflow.wait_condition(lambda: not self._check_requested)
        return self._state.drift

    @check_now.validator
    def _validate_check_now(self) -> None:
        state = self._state
        if state.phase != Phase.CONNECTED:
            raise ValueError(
                f"the check runs while Connected; {state.input.integration_id} is {state.phase.sentence.lower()}"
            )

    @workflow.signal
    def rotation_progress(self, status: RotationStatus) -> None:
        rotation = self._state.rotation
        if rotation is None or status.workflow_id != rotation.workflow_id:
            return  # a late message from a rotation already settled
        status.pbx_updated_at = status.pbx_updated_at or rotation.pbx_updated_at
        self._state.rotation = status

    @workflow.update
    async def confirm_pbx_updated(self, confirmation: ConsentConfirmation) -> RotationStatus:
        """The admin pasted the new secret into the PBX and signed in again (again, if the cut-over check
        still saw the old key): recorded here, then handed to the rotation."""
        rotation = self._state.rotation
        assert rotation is not None, "checked by the validator"
        rotation.pbx_updated_at = workflow.now()
        rotation.message = f"PBX updated, confirmed by {confirmation.confirmed_by or 'operator'}"
        if self._rotation_child is not None:
            await signal_quietly(
                self._rotation_child.signal(SecretRotationWorkflow.pbx_secret_updated, confirmation),
                "pbx_secret_updated",
            )
        return rotation

    @confirm_pbx_updated.validator
    def _validate_pbx_updated(self, confirmation: ConsentConfirmation) -> None:
        rotation = self._state.rotation
        if rotation is None:
            raise ValueError(f"no rotation in progress (the integration is {self._state.phase})")
        if rotation.stage not in CONFIRMABLE_ROTATION_STAGES:
            raise ValueError(
                f"rotation {rotation.workflow_id} is {rotation.stage}: the new secret isn't ready to paste yet"
            )

    # ------------------------------------------------------------------ query

    @workflow.query
    def status(self) -> IntegrationStatus:
        state = self._state
        rotation_card = state.rotation.card if state.rotation else None
        return IntegrationStatus(
            integration_id=state.input.integration_id,
            workflow_id=workflow_id_for(state.input.integration_id),
            phase=state.phase,
            steps=state.steps,
            app=state.app,
            secret=state.secret,
            redirect_uris=state.redirect_uris,
            granted_permissions=state.granted_permissions,
            verification=state.verification,
            blocked=state.blocked,
            pending_human_action=rotation_card or state.instruction,
            pending_since=state.waiting.since if state.waiting else None,
            warnings=list(state.warnings.values()),
            connected_at=state.connected_at,
            rotation=state.rotation,
            last_rotation=state.last_rotation,
            rotations_completed=state.rotations_completed,
            retired_keys=state.retired_keys,
            reveals=state.reveals,
            next_check_at=state.next_check_at,
            adopted_at=state.adopted_at,
            adopted_key_id=state.adopted_key_id,
            last_check_at=state.last_check_at,
            drift=state.drift,
            history_length=workflow.info().get_current_history_length(),
            continued_as_new=state.continued_as_new,
        )

    # --------------------------------------------------------------- helpers

    @property
    def _onboarded(self) -> bool:
        return all(self._done(step) for step in Step)

    def _done(self, step: Step) -> bool:
        return self._state.steps[step].state in (StepState.DONE, StepState.SKIPPED)

    @property
    def _app(self) -> AppIds:
        assert self._state.app is not None, "application not registered yet"
        return self._state.app

    @property
    def _secret(self) -> SecretRef:
        assert self._state.secret is not None, "no client secret yet"
        return self._state.secret

    @property
    def _uris(self) -> RedirectUris:
        assert self._state.redirect_uris is not None, "no redirect URIs yet"
        return self._state.redirect_uris

    def _next_slot(self) -> datetime:
        opts = self._state.input.options
        return daily_slot(self._state.input.integration_id, workflow.now(), opts.credential_check_interval)

    async def _step(self, step: Step, action: Callable[[], Awaitable[T]]) -> T | None:
        """Run a step unless already done; on a failure retrying can't fix, park Blocked until `retry`."""
        status = self._state.steps[step]
        if status.state in (StepState.DONE, StepState.SKIPPED):
            return None
        while True:
            self._stop_if_offboarding()
            status.state, status.started_at, status.finished_at = StepState.RUNNING, workflow.now(), None
            try:
                result = await action()
            except ActivityError as err:
                status.attempts += 1
                blocked = _blocked_from(step, err, workflow.now(), resume_phase=self._state.phase)
                status.state, status.last_error = StepState.FAILED, blocked.message
                await self._block(blocked)
                await self._wait_for_retry()
                continue
            status.attempts += result.attempt if isinstance(result, ActivityResult) else 1
            status.state, status.finished_at = StepState.DONE, workflow.now()
            return result

    async def _block(self, blocked: Blocked, phase: Phase = Phase.BLOCKED) -> None:
        """Park with the error and the fix; tell the channels now (then remind while it lasts)."""
        state = self._state
        state.blocked, state.retry_requested = blocked, False
        self._set_phase(phase)
        workflow.logger.warning(
            "integration blocked",
            extra={"integration_id": state.input.integration_id, "step": blocked.step, "error": blocked.error_type},
        )
        card = instructions.blocked_card(state.input.integration_id, blocked)
        state.instruction = card
        state.waiting = PendingHuman(kind="blocked", since=workflow.now())
        await self._notify(
            messages.human_reminder(
                state.input.integration_id,
                state.waiting,
                card,
                _blocked_summary(blocked),
                severity="critical",
                facts=self._facts(),
            )
        )

    async def _wait_for_retry(self) -> None:
        state = self._state
        blocked = state.blocked
        assert blocked is not None
        await self._wait_for_human(
            blocked.step,
            lambda: self._state.retry_requested,
            instructions.blocked_card(state.input.integration_id, blocked),
            kind="blocked",
            summary=_blocked_summary(blocked),
            severity="critical",
        )
        state.retry_requested, state.blocked = False, None
        if blocked.restart_from is not None:
            self._forget_from(blocked.restart_from)
        self._set_phase(blocked.resume_phase)

    async def _wait_for_human(
        self,
        step: Step,
        done: Callable[[], bool],
        card: InstructionCard,
        *,
        kind: str,
        summary: str,
        severity: str = "warning",
        action: AdminAction | None = None,
    ) -> None:
        """Publish the card, then wait, reminding every `human_reminder_interval` until `done()`; the
        reminders link to the administrator's page for ``action``."""
        state, opts = self._state, self._state.input.options
        state.instruction = card
        if state.steps[step].state in (StepState.PENDING, StepState.RUNNING):
            self._mark(step, StepState.WAITING)
        if state.waiting is None or state.waiting.kind != kind:
            state.waiting = PendingHuman(kind=kind, since=workflow.now())

        async def remind(pending: PendingHuman) -> None:
            workflow.logger.info(
                "still waiting for a human",
                extra={"integration_id": state.input.integration_id, "kind": kind, "reminder": pending.reminders},
            )
            await self._notify(
                messages.human_reminder(
                    state.input.integration_id,
                    pending,
                    card,
                    summary,
                    severity=severity,
                    facts=self._facts(),
                    action=action,
                ),
                escalate=pending.reminders > opts.escalate_after_reminders,
            )

        await wait_for_human(
            state.waiting,
            lambda: done() or self._state.offboard is not None,
            every=opts.human_reminder_interval,
            remind=remind,
            alarms=self._alarms,
            checkpoint=self._checkpoint,
        )
        self._stop_if_offboarding()
        state.waiting = None

    async def _send_due_expiry_reminders(self, secret: SecretRef, now: datetime) -> None:
        state, opts = self._state, self._state.input.options
        offset, sent_before = due_expiry_reminder(
            secret.expires_at, opts.reminder_offsets, state.notifications_sent, partial(_expiry_key, secret), now
        )
        if offset is not None:
            await self._notify(
                messages.expiry_reminder(state.input.integration_id, secret, offset, now, self._facts()),
                escalate=sent_before >= opts.escalate_after_reminders,
            )

    def _next_wake(self, secret: SecretRef, now: datetime) -> datetime:
        state = self._state
        assert state.next_check_at is not None
        reminder = next_expiry_reminder_at(
            secret.expires_at,
            state.input.options.reminder_offsets,
            state.notifications_sent,
            partial(_expiry_key, secret),
        )
        moments = [state.next_check_at, secret.expires_at, reminder, state.retry_rotation_at]
        return max(min(m for m in moments if m is not None), now)

    async def _notify(self, notification: Notification, *, escalate: bool = False) -> None:
        if problems := await notify(notification, escalate=escalate):
            self._warn("notifications", "; ".join(problems))

    def _facts(self) -> dict[str, str]:
        state = self._state
        facts = {"Phase": str(state.phase), "Tenant": state.input.tenant_id}
        return facts | ({"Client ID": state.app.client_id} if state.app else {})

    async def _checkpoint(self) -> None:
        """Continue-as-new once history is long. Never while a rotation runs: the child's outcome must
        reach this run (its history meanwhile grows only by the rotation's few progress messages)."""
        self._stop_if_offboarding()
        state = self._state
        if state.rotation is not None or not history_too_long(state.input.options.max_history_events):
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        state.continued_as_new += 1
        workflow.continue_as_new(args=[state.input, state])

    def _mark(self, step: Step, state: StepState, *, detail: str | None = None) -> None:
        status = self._state.steps[step]
        if status.state == state:
            return
        status.state = state
        if state == StepState.WAITING:
            status.started_at = workflow.now()
        if state in (StepState.DONE, StepState.SKIPPED):
            status.finished_at = workflow.now()
        if detail:
            status.detail = detail

    def _warn(self, topic: str, warning: str) -> None:
        self._state.warnings[topic] = warning

    def _replace_warnings(self, source: str, warnings: list[str]) -> None:
        kept = {topic: text for topic, text in self._state.warnings.items() if not topic.startswith(f"{source}:")}
        self._state.warnings = kept | {f"{source}:{number}": text for number, text in enumerate(warnings)}

    def _set_phase(self, phase: Phase) -> None:
        if self._state.phase != phase:
            self._state.phase = phase
            self._upsert_search_attributes()

    def _upsert_search_attributes(self) -> None:
        state = self._state
        if not state.input.publish_search_attributes:
            return
        updates: list[SearchAttributeUpdate[Any]] = [
            search_attributes.INTEGRATION_ID.value_set(state.input.integration_id),
            search_attributes.INTEGRATION_PHASE.value_set(str(state.phase)),
            search_attributes.TENANT_ID.value_set(state.input.tenant_id),
        ]
        if state.secret is not None:
            updates.append(search_attributes.SECRET_EXPIRY.value_set(state.secret.expires_at))
        workflow.upsert_search_attributes(updates)


class _Offboarding(Exception):
    """Raised at a safe point once `offboard` was accepted; `run` catches it and winds up."""


def _expiry_key(secret: SecretRef, offset: timedelta) -> str:
    return f"secret_expiry:{secret.key_id}:{offset.days}d"


def _blocked_summary(blocked: Blocked) -> str:
    return f"{blocked.message} Fix: {blocked.fix}"


def _blocked_from(step: Step, err: ActivityError, now: datetime, *, resume_phase: Phase) -> Blocked:
    """Turn an activity failure into what the operator sees: the error and the fix, in plain words."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        fix = str(cause.details[0]) if cause.details else "See the worker log for details, then retry."
        error_type, message = cause.type or "Error", cause.message
    elif isinstance(cause, ActivityTimeout):
        error_type, fix = (
            "Timeout",
            "Check the worker is running and can reach Microsoft Graph (worker log), then retry.",
        )
        message = (
            f"Step '{step}' did not complete in time ({cause.type.name if cause.type else '?'} timeout); "
            "Microsoft Graph or the worker kept failing."
        )
    else:
        error_type, message, fix = type(cause).__name__, str(cause or err), "See the worker log."
    return Blocked(step=step, error_type=error_type, message=message, fix=fix, since=now, resume_phase=resume_phase)
