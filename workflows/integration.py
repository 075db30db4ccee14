"""IntegrationWorkflow: one per PBX. Takes it from "not integrated" to Connected, then keeps it there.

The documented steps are activities; the two human moments (reading redirect URIs, pasting the
credentials into the PBX and signing in) are instruction cards plus an update / a signal. A failure
that retrying can't fix parks the workflow in Blocked with the fix in plain words until `retry`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeout

with workflow.unsafe.imports_passed_through():
    from activities import names as activity
    from activities.models import (
        ActivityResult,
        CheckCredentialInput,
        CreateSecretInput,
        CredentialCheck,
        PermissionsInput,
        PermissionsResult,
        PreflightInput,
        PreflightResult,
        ProveSecretInput,
        ProveSecretResult,
        RedirectUrisInput,
        RegisterInput,
        RegisterResult,
        ScheduleInput,
        VerifyInput,
    )
    from common import search_attributes
    from notifications.message import Notification
    from workflows import instructions
    from workflows.models import (
        REQUIRED_GRAPH_PERMISSIONS,
        AppIds,
        Blocked,
        ConsentConfirmation,
        InstructionCard,
        IntegrationState,
        IntegrationStatus,
        OnboardInput,
        Phase,
        RedirectUris,
        RotationPlan,
        RotationStage,
        RotationStart,
        RotationStatus,
        SecretRef,
        Step,
        StepState,
        StepStatus,
        Verification,
        workflow_id_for,
    )
    from workflows.shared import history_too_long, notify, run_activity, wait

T = TypeVar("T")


@workflow.defn
class IntegrationWorkflow:
    @workflow.init
    def __init__(self, start: OnboardInput, resume: IntegrationState | None = None) -> None:
        self._state = resume or IntegrationState(input=start, redirect_uris=start.redirect_uris)
        self._retry_requested = False
        self._rotation_changed = False

    # ----------------------------------------------------------------- run

    @workflow.run
    async def run(self, start: OnboardInput, resume: IntegrationState | None = None) -> IntegrationStatus:
        while True:
            # A run continued-as-new after Connected resumes watching, it does not walk the steps again.
            if not all(st.state in (StepState.DONE, StepState.SKIPPED) for st in self._state.steps.values()):
                await self._onboard()
            await self._stay_connected()

    async def _onboard(self) -> None:
        state = self._state
        if state.steps[Step.PREFLIGHT].state != StepState.DONE:
            self._set_phase(Phase.PROVISIONING)
        preflight = await self._step(Step.PREFLIGHT, self._preflight)
        if preflight is not None:
            state.secret_lifetime = preflight.secret_lifetime
            if preflight.lifetime_note:
                self._warn(preflight.lifetime_note)

        if state.redirect_uris is None:
            self._set_phase(Phase.WAITING_FOR_REDIRECT_URIS)
            await self._wait_for_human(
                Step.REDIRECT_URIS,
                lambda: self._state.redirect_uris is not None,
                instructions.redirect_uris_card(state.input.integration_id),
                kind="redirect_uris_pending",
                summary="The PBX's redirect URIs are needed to register the Entra application.",
            )
        self._mark(Step.REDIRECT_URIS, StepState.DONE)
        self._set_phase(Phase.PROVISIONING)

        await self._step(Step.REGISTER_APP, self._register)
        if self._uris.sso_redirect_uri:
            await self._step(Step.SSO_REDIRECT_URI, self._set_redirect_uris)
        else:
            self._mark(Step.SSO_REDIRECT_URI, StepState.SKIPPED, detail="no Client SSO Redirect URI given")
        await self._step(Step.PERMISSIONS, self._grant_permissions)
        await self._step(Step.CLIENT_SECRET, self._create_secret)

        if state.consent_confirmed_at is None:
            self._set_phase(Phase.WAITING_FOR_CONSENT)
            await self._wait_for_human(
                Step.CONNECT_PBX,
                lambda: self._state.consent_confirmed_at is not None,
                instructions.connect_pbx_card(state.input.integration_id, self._app, self._secret),
                kind="consent_pending",
                summary="Paste the credentials into the PBX and sign in as Global Administrator.",
            )
        self._mark(Step.CONNECT_PBX, StepState.DONE, detail=f"confirmed by {state.consent_confirmed_by}")

        self._set_phase(Phase.VERIFYING)
        verification = await self._step(Step.VERIFY, self._verify)
        if verification is not None:
            state.verification = verification
            for warning in verification.warnings:
                self._warn(warning)
        state.connected_at = state.connected_at or workflow.now()
        state.instruction = instructions.connected_card(state.input.integration_id)
        self._set_phase(Phase.CONNECTED)
        workflow.logger.info("integration connected", extra={"integration_id": state.input.integration_id})
        await self._ensure_rotation_schedule()

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
            self._warn_latest(f"rotation schedule not set up: {err.cause or err}")
            return
        state.schedule_ensured_for = every

    async def _stay_connected(self) -> None:
        """Connected: remind before expiry, watch the credential, report Expired. Returns when a new
        secret is needed (the old one vanished or expired and the operator asked to `retry`)."""
        state, opts = self._state, self._state.input.options
        while True:
            await self._continue_as_new_if_needed()
            secret = self._secret
            now = workflow.now()
            # During a rotation the rotation workflow owns the reminders and the old secret's fate.
            if state.rotation is None:
                await self._send_due_expiry_reminders(secret, now)
                if now >= secret.expires_at:
                    await self._needs_new_secret(
                        "SecretExpired",
                        f"The client secret {secret.hint}… expired at {secret.expires_at:%Y-%m-%d %H:%M} UTC; "
                        "the PBX can no longer sync from Entra ID.",
                        phase=Phase.EXPIRED,
                    )
                    return
                if state.credentials_checked_at is None or now >= (
                    state.credentials_checked_at + opts.credential_check_interval
                ):
                    check = await self._check_credential(secret)
                    state.credentials_checked_at = workflow.now()
                    if check is not None and not check.present:
                        await self._needs_new_secret(
                            "ApplicationDeleted" if check.application_missing else "SecretRemoved",
                            f"The Entra application {self._app.client_id} was deleted outside this service; "
                            "the PBX can no longer sync."
                            if check.application_missing
                            else f"The client secret {secret.hint}… (key ID {secret.key_id}) was removed from "
                            "the Entra application outside this service; the PBX can no longer sync.",
                            restart_from=Step.REGISTER_APP if check.application_missing else Step.CLIENT_SECRET,
                        )
                        return
            self._rotation_changed = False
            # While a rotation runs nothing here is due (checks and reminders are paused): sleep until
            # it reports; otherwise until the next reminder, check or expiry.
            now = workflow.now()
            wake_at = now + opts.credential_check_interval if state.rotation else min(self._next_events(secret, now))
            await wait(lambda: self._rotation_changed, wake_at - now)

    async def _check_credential(self, secret: SecretRef) -> CredentialCheck | None:
        """None when the check itself failed (Graph unreachable): try again at the next interval."""
        try:
            return await run_activity(
                activity.CHECK_CREDENTIAL,
                CheckCredentialInput(
                    tenant_id=self._app.tenant_id,
                    application_object_id=self._app.application_object_id,
                    key_id=secret.key_id,
                ),
                CredentialCheck,
            )
        except ActivityError as err:
            self._warn_latest(f"credential check failed at {workflow.now():%Y-%m-%d %H:%M}: {err.cause or err}")
            return None

    async def _needs_new_secret(
        self,
        error_type: str,
        message: str,
        *,
        restart_from: Step = Step.CLIENT_SECRET,
        phase: Phase = Phase.BLOCKED,
    ) -> None:
        """Park until `retry`, then forget the secret: onboarding issues, proves and hands over a new one."""
        state = self._state
        await self._park(
            Blocked(
                step=Step.CLIENT_SECRET,
                error_type=error_type,
                message=message,
                fix="Run the retry command: a new client secret is created and proven, and you are asked "
                "to paste it into the PBX again.",
                since=workflow.now(),
            ),
            phase,
        )
        state.secret = None
        state.consent_confirmed_at = None
        state.credentials_checked_at = None
        steps = list(Step)
        for step in steps[steps.index(restart_from) :]:
            state.steps[step] = StepStatus()

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
        # Deterministic per attempt of this step: a retried activity reconciles instead of adding twice.
        operation_id = f"{workflow.info().workflow_id}-{state.steps[Step.CLIENT_SECRET].attempts}-" + (
            workflow.now().strftime("%Y%m%d%H%M%S")
        )
        if state.secret is None:
            state.secret = await run_activity(
                activity.CREATE_CLIENT_SECRET,
                CreateSecretInput(
                    integration_id=state.input.integration_id,
                    tenant_id=self._app.tenant_id,
                    application_object_id=self._app.application_object_id,
                    operation_id=operation_id,
                    description=f"Yeastar PBX {state.input.integration_id}",
                    expires_at=workflow.now() + lifetime,
                ),
                SecretRef,
            )
            self._upsert_search_attributes()
        opts = state.input.options
        return await run_activity(
            activity.PROVE_SECRET,
            ProveSecretInput(
                integration_id=state.input.integration_id,
                tenant_id=self._app.tenant_id,
                client_id=self._app.client_id,
                key_id=self._secret.key_id,
                timeout=opts.secret_replication_timeout,
            ),
            ProveSecretResult,
            start_to_close_timeout=opts.secret_replication_timeout + timedelta(minutes=1),
        )

    async def _verify(self) -> Verification:
        state = self._state
        return await run_activity(
            activity.VERIFY_INTEGRATION,
            VerifyInput(
                integration_id=state.input.integration_id,
                app=self._app,
                key_id=self._secret.key_id,
                permissions=list(REQUIRED_GRAPH_PERMISSIONS),
                consent_confirmed_at=state.consent_confirmed_at,
                check_yeastar=state.input.yeastar_configured,
            ),
            Verification,
        )

    # ----------------------------------------------- handlers (the human side)

    @workflow.update
    def submit_redirect_uris(self, uris: RedirectUris) -> IntegrationStatus:
        self._state.redirect_uris = uris
        return self.status()

    @submit_redirect_uris.validator
    def _validate_redirect_uris(self, uris: RedirectUris) -> None:
        if self._state.redirect_uris is not None:
            raise ValueError(
                f"redirect URIs were already provided ({self._state.redirect_uris.redirect_uri}); "
                "they can't be changed during onboarding"
            )
        if problems := uris.problems():
            raise ValueError("; ".join(problems))

    @workflow.signal
    def consent_completed(self, confirmation: ConsentConfirmation) -> None:
        # Only meaningful once the credentials exist; an early signal is kept, it is not lost.
        if self._state.consent_confirmed_at is None:
            self._state.consent_confirmed_at = workflow.now()
            self._state.consent_confirmed_by = confirmation.confirmed_by or "operator"

    @workflow.signal
    def retry(self) -> None:
        # Only a parked workflow waits for this; elsewhere it would linger and skip a future Blocked.
        if self._state.phase in (Phase.BLOCKED, Phase.EXPIRED):
            self._retry_requested = True

    # ------------------------------------------- rotation (SecretRotationWorkflow talks to these)

    @workflow.update
    def begin_rotation(self, request: RotationStart) -> RotationPlan:
        state = self._state
        state.rotation = RotationStatus(
            workflow_id=request.rotation_workflow_id,
            reason=request.reason,
            started_at=workflow.now(),
            old_secret=self._secret,
        )
        self._set_phase(Phase.ROTATING)
        self._rotation_changed = True
        return RotationPlan(
            integration_id=state.input.integration_id,
            app=self._app,
            current=self._secret,
            options=state.input.options,
            lifetime=state.secret_lifetime or state.input.options.secret_lifetime,
        )

    @begin_rotation.validator
    def _validate_begin_rotation(self, request: RotationStart) -> None:
        state = self._state
        if state.rotation is not None:
            raise ValueError(f"rotation {state.rotation.workflow_id} is already in progress")
        if state.phase != Phase.CONNECTED:
            raise ValueError(
                f"the integration is {state.phase}; only a Connected integration rotates its secret "
                "(a Blocked or Expired one gets a new secret with `retry`)"
            )

    @workflow.signal
    def rotation_progress(self, status: RotationStatus) -> None:
        if self._state.rotation and status.workflow_id == self._state.rotation.workflow_id:
            self._state.rotation = status
            self._rotation_changed = True

    @workflow.signal
    def rotation_finished(self, status: RotationStatus) -> None:
        state = self._state
        if state.rotation is None or status.workflow_id != state.rotation.workflow_id:
            return
        state.rotation, state.last_rotation = None, status
        if status.stage == RotationStage.COMPLETED and status.new_secret is not None:
            state.secret = status.new_secret
            state.rotations_completed += 1
            state.credentials_checked_at = None
        self._set_phase(Phase.CONNECTED)
        self._rotation_changed = True

    @workflow.signal
    async def pbx_secret_updated(self, confirmation: ConsentConfirmation) -> None:
        """The admin pasted the new secret into the PBX: hand it to the rotation that waits for it."""
        rotation = self._state.rotation
        if rotation is None:
            self._warn_latest("pbx_secret_updated arrived with no rotation in progress; ignored")
            return
        await workflow.get_external_workflow_handle(rotation.workflow_id).signal("pbx_secret_updated", confirmation)

    @workflow.query
    def status(self) -> IntegrationStatus:
        state = self._state
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
            pending_human_action=state.rotation.card if state.rotation and state.rotation.card else state.instruction,
            warnings=state.warnings,
            connected_at=state.connected_at,
            rotation=state.rotation,
            last_rotation=state.last_rotation,
            rotations_completed=state.rotations_completed,
            history_length=workflow.info().get_current_history_length(),
            continued_as_new=state.continued_as_new,
        )

    # --------------------------------------------------------------- helpers

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

    async def _step(self, step: Step, action: Callable[[], Awaitable[T]]) -> T | None:
        """Run a step unless already done; on a failure retrying can't fix, park Blocked until `retry`."""
        status = self._state.steps[step]
        if status.state in (StepState.DONE, StepState.SKIPPED):
            return None
        while True:
            status.state, status.started_at, status.finished_at = StepState.RUNNING, workflow.now(), None
            try:
                result = await action()
            except ActivityError as err:
                status.attempts += 1
                blocked = _blocked_from(step, err, workflow.now())
                status.state, status.last_error = StepState.FAILED, blocked.message
                await self._park(blocked)
                continue
            status.attempts += result.attempt if isinstance(result, ActivityResult) else 1
            status.state, status.finished_at = StepState.DONE, workflow.now()
            return result

    async def _park(self, blocked: Blocked, phase: Phase = Phase.BLOCKED) -> None:
        state = self._state
        resume_phase = state.phase
        state.blocked = blocked
        self._set_phase(phase)
        workflow.logger.warning(
            "integration blocked",
            extra={
                "integration_id": state.input.integration_id,
                "step": blocked.step,
                "error": blocked.error_type,
            },
        )
        self._retry_requested = False
        await self._wait_for_human(
            blocked.step,
            lambda: self._retry_requested,
            instructions.blocked_card(state.input.integration_id, blocked),
            kind="blocked",
            summary=f"{blocked.message} Fix: {blocked.fix}",
            severity="critical",
        )
        self._retry_requested = False
        state.blocked = None
        self._set_phase(Phase.PROVISIONING if phase == Phase.EXPIRED else resume_phase)

    async def _wait_for_human(
        self,
        step: Step,
        done: Callable[[], bool],
        card: InstructionCard,
        *,
        kind: str,
        summary: str,
        severity: str = "warning",
    ) -> None:
        """Publish the card, then wait, reminding every `human_reminder_interval` until `done()`."""
        state = self._state
        state.instruction = card
        if state.steps[step].state != StepState.FAILED:
            self._mark(step, StepState.WAITING)
        waiting_since = workflow.now()
        reminders = 0
        interval = state.input.options.human_reminder_interval
        while not await wait(done, interval):
            reminders += 1
            workflow.logger.info(
                "still waiting for a human",
                extra={"integration_id": state.input.integration_id, "kind": kind, "reminder": reminders},
            )
            await self._notify(
                f"{kind}:{waiting_since:%Y%m%dT%H%M%S}:{reminders}",
                kind=kind,
                severity=severity,
                title=card.title,
                summary=f"{summary} Waiting since {waiting_since:%Y-%m-%d %H:%M} UTC (reminder {reminders}).",
                next_action=card.commands[-1] if card.commands else card.steps[0],
                escalate=reminders > state.input.options.escalate_after_reminders,
            )

    async def _send_due_expiry_reminders(self, secret: SecretRef, now: datetime) -> None:
        due = [o for o in self._state.input.options.reminder_offsets if secret.expires_at - o <= now]
        unsent = [o for o in due if self._expiry_reminder_id(secret, o) not in self._state.notifications_sent]
        if not unsent:
            return
        # After downtime several offsets may be due at once: send only the most urgent, skip the rest.
        for offset in unsent:
            self._state.notifications_sent.append(self._expiry_reminder_id(secret, offset))
        offset = min(unsent)
        days = offset.days
        already_sent = sum(
            1 for sent in self._state.notifications_sent if sent.startswith(f"secret_expiry:{secret.key_id}:")
        ) - len(unsent)
        await self._notify(
            self._expiry_reminder_id(secret, offset),
            kind="secret_expiry",
            severity="critical" if days <= 3 else "warning",
            title=(
                "Client secret expires now"
                if days == 0
                else f"Client secret expires in {days} day{'s' if days != 1 else ''}"
            ),
            summary=f"The Entra client secret {secret.hint}… used by the PBX expires at "
            f"{secret.expires_at:%Y-%m-%d %H:%M} UTC. When it does, directory sync, SSO and Teams "
            "presence stop.",
            next_action=f"python starter.py retry {self._state.input.integration_id}"
            if days == 0
            else f"python starter.py rotate {self._state.input.integration_id}",
            due=secret.expires_at,
            escalate=already_sent >= self._state.input.options.escalate_after_reminders,
        )

    def _expiry_reminder_id(self, secret: SecretRef, offset: timedelta) -> str:
        return f"secret_expiry:{secret.key_id}:{offset.days}d"

    def _next_events(self, secret: SecretRef, now: datetime) -> list[datetime]:
        opts = self._state.input.options
        checked = self._state.credentials_checked_at or now
        events = [checked + opts.credential_check_interval, secret.expires_at]
        events += [
            secret.expires_at - o
            for o in opts.reminder_offsets
            if self._expiry_reminder_id(secret, o) not in self._state.notifications_sent
        ]
        return [max(at, now + timedelta(seconds=1)) for at in events]

    async def _notify(
        self,
        key: str,
        *,
        kind: str,
        severity: str,
        title: str,
        summary: str,
        next_action: str,
        due: datetime | None = None,
        escalate: bool = False,
    ) -> None:
        state = self._state
        notification = Notification(
            notification_id=f"{state.input.integration_id}:{key}",
            integration_id=state.input.integration_id,
            kind=kind,
            severity=severity,
            title=title,
            summary=summary,
            due=due,
            next_action=next_action,
            facts={
                k: v
                for k, v in {
                    "Phase": str(state.phase),
                    "Tenant": state.input.tenant_id,
                    "Client ID": state.app.client_id if state.app else None,
                }.items()
                if v is not None
            },
        )
        if problem := await notify(notification, escalate=escalate):
            self._warn_latest(problem)

    async def _continue_as_new_if_needed(self) -> None:
        if not history_too_long(self._state.input.options.max_history_events):
            return
        await workflow.wait_condition(workflow.all_handlers_finished)
        self._state.continued_as_new += 1
        workflow.continue_as_new(args=[self._state.input, self._state])

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

    def _warn_latest(self, warning: str) -> None:
        """Keep only the newest of a recurring warning (first word identifies it)."""
        prefix = warning.split(" ", 1)[0]
        self._state.warnings = [w for w in self._state.warnings if not w.startswith(prefix)] + [warning]

    def _warn(self, warning: str) -> None:
        if warning not in self._state.warnings:
            self._state.warnings.append(warning)

    def _set_phase(self, phase: Phase) -> None:
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


def _blocked_from(step: Step, err: ActivityError, now: datetime) -> Blocked:
    """Turn an activity failure into what the operator sees: the error and the fix, in plain words."""
    cause = err.cause
    if isinstance(cause, ApplicationError):
        fix = str(cause.details[0]) if cause.details else "See the worker log for details, then retry."
        return Blocked(step=step, error_type=cause.type or "Error", message=cause.message, fix=fix, since=now)
    if isinstance(cause, ActivityTimeout):
        return Blocked(
            step=step,
            error_type="Timeout",
            message=f"Step '{step}' did not complete in time ({cause.type.name if cause.type else '?'} "
            "timeout); "
            "Microsoft Graph or the worker kept failing.",
            fix="Check the worker is running and can reach Microsoft Graph (worker log), then retry.",
            since=now,
        )
    return Blocked(
        step=step,
        error_type=type(cause).__name__,
        message=str(cause or err),
        fix="See the worker log.",
        since=now,
    )
