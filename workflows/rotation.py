"""SecretRotationWorkflow: replace an integration's client secret with zero downtime.

New secret first → proven to work → the human pastes it into the PBX → evidence that the PBX signs in
with it → only then the old key ID is removed. Started by the integration's Temporal Schedule (or
`starter.py rotate`); the integration workflow accepts it (one rotation at a time) and stays the
single source of truth for status, which this workflow keeps informed by signals.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities import names as activity
    from activities.models import (
        ActivityResult,
        BeginRotationInput,
        CreateSecretInput,
        CutoverEvidence,
        CutoverInput,
        ProveSecretInput,
        ProveSecretResult,
        RemoveSecretInput,
    )
    from notifications.message import Notification
    from workflows import instructions
    from workflows.models import (
        ConsentConfirmation,
        InstructionCard,
        RotationPlan,
        RotationRequest,
        RotationStage,
        RotationStatus,
        SecretRef,
        workflow_id_for,
    )
    from workflows.shared import history_too_long, notify, run_activity, wait

# Within this many days of the old secret's expiry, reminders about the pending paste turn critical.
URGENT_BEFORE_EXPIRY = timedelta(days=7)
MAX_HISTORY_EVENTS = 2000


class RotationCarry(RotationStatus):
    """State carried across continue-as-new while the rotation waits a long time for the human."""

    plan: RotationPlan
    reminders_sent: int = 0
    expiry_alarm_sent: bool = False


@workflow.defn
class SecretRotationWorkflow:
    @workflow.init
    def __init__(self, request: RotationRequest, carry: RotationCarry | None = None) -> None:
        self._request = request
        self._carry = carry
        self._confirmation: ConsentConfirmation | None = None

    @workflow.run
    async def run(self, request: RotationRequest, carry: RotationCarry | None = None) -> RotationStatus:
        if self._carry is None:
            plan = await self._begin()
            if plan is None:
                return RotationStatus(
                    workflow_id=workflow.info().workflow_id,
                    reason=request.reason,
                    stage=RotationStage.ABANDONED,
                    started_at=workflow.now(),
                    finished_at=workflow.now(),
                    message=f"skipped: {self._skip_reason}",
                )
            self._carry = RotationCarry(
                workflow_id=workflow.info().workflow_id,
                reason=request.reason,
                started_at=workflow.now(),
                old_secret=plan.current,
                plan=plan,
            )
        carry = self._carry
        try:
            if carry.new_secret is None:
                await self._create_new_secret(carry)
            if carry.pbx_updated_at is None:
                await self._wait_for_pbx(carry)
            if carry.cutover_evidence is None:
                await self._verify_cutover(carry)
            await self._set_stage(carry, RotationStage.REMOVING_OLD_SECRET, card=None)
            await self._remove_secret(carry, carry.plan.current.key_id)
        except ActivityError as err:
            return await self._abandon(carry, err)
        carry.finished_at = workflow.now()
        carry.stage = RotationStage.COMPLETED
        carry.message = f"old key {carry.plan.current.key_id} removed; the PBX uses key {self._new.key_id}"
        await self._tell_integration("rotation_finished", carry)
        workflow.logger.info("rotation completed", extra={"integration_id": carry.plan.integration_id})
        return _public(carry)

    @workflow.signal
    def pbx_secret_updated(self, confirmation: ConsentConfirmation) -> None:
        self._confirmation = confirmation

    @workflow.query
    def status(self) -> RotationStatus | None:
        return self._carry

    # ------------------------------------------------------------------ steps

    async def _begin(self) -> RotationPlan | None:
        self._skip_reason = ""
        try:
            return await run_activity(
                activity.BEGIN_ROTATION,
                BeginRotationInput(
                    integration_id=self._request.integration_id,
                    rotation_workflow_id=workflow.info().workflow_id,
                    reason=self._request.reason,
                ),
                RotationPlan,
                schedule_to_close_timeout=timedelta(minutes=5),
            )
        except ActivityError as err:
            # The integration said no (not Connected, or another rotation runs): nothing to undo.
            self._skip_reason = _reason(err)
            workflow.logger.info("rotation skipped", extra={"reason": self._skip_reason})
            return None

    async def _create_new_secret(self, carry: RotationCarry) -> None:
        plan = carry.plan
        secret = await run_activity(
            activity.CREATE_CLIENT_SECRET,
            CreateSecretInput(
                integration_id=plan.integration_id,
                tenant_id=plan.app.tenant_id,
                application_object_id=plan.app.application_object_id,
                # The workflow ID is unique per rotation: a retried activity reconciles, never adds twice.
                operation_id=workflow.info().workflow_id,
                description=f"Yeastar PBX {plan.integration_id} (rotation)",
                expires_at=workflow.now() + plan.lifetime,
            ),
            SecretRef,
        )
        carry.new_secret = secret
        await run_activity(
            activity.PROVE_SECRET,
            ProveSecretInput(
                integration_id=plan.integration_id,
                tenant_id=plan.app.tenant_id,
                client_id=plan.app.client_id,
                key_id=secret.key_id,
                timeout=plan.options.secret_replication_timeout,
            ),
            ProveSecretResult,
            start_to_close_timeout=plan.options.secret_replication_timeout + timedelta(minutes=1),
        )

    async def _wait_for_pbx(self, carry: RotationCarry) -> None:
        plan = carry.plan
        card = instructions.rotation_card(plan.integration_id, plan.app, self._new, carry.plan.current)
        await self._set_stage(carry, RotationStage.WAITING_FOR_PBX, card=card)
        interval = plan.options.human_reminder_interval
        while True:
            if self._confirmation is None:  # a confirmation that already arrived must not be carried away
                await self._continue_as_new_if_needed(carry)
            old_expiry = carry.plan.current.expires_at
            if workflow.now() >= old_expiry and not carry.expiry_alarm_sent:
                carry.expiry_alarm_sent = True
                await self._notify(
                    carry,
                    "old_secret_expired",
                    severity="critical",
                    title="PBX sync is down: paste the new client secret now",
                    summary=f"The old client secret {carry.plan.current.hint}… expired at {old_expiry:%Y-%m-%d %H:%M} "
                    "UTC before the PBX was given the new one. The new secret is ready and kept; the old key is "
                    "not removed until the PBX is confirmed on the new one.",
                    escalate=True,
                )
            next_reminder = carry.started_at + interval * (carry.reminders_sent + 1)
            wake_at = next_reminder if carry.expiry_alarm_sent else min(next_reminder, old_expiry)
            if await wait(lambda: self._confirmation is not None, wake_at - workflow.now()):
                break
            if workflow.now() >= next_reminder:
                carry.reminders_sent += 1
                urgent = old_expiry - workflow.now() <= URGENT_BEFORE_EXPIRY
                await self._notify(
                    carry,
                    f"reminder:{carry.reminders_sent}",
                    severity="critical" if urgent else "warning",
                    title="Paste the new client secret into the PBX",
                    summary=f"A new client secret is ready for {plan.integration_id}. The old one expires at "
                    f"{old_expiry:%Y-%m-%d %H:%M} UTC (reminder {carry.reminders_sent}).",
                    escalate=carry.reminders_sent > plan.options.escalate_after_reminders,
                )
        assert self._confirmation is not None
        carry.pbx_updated_at = workflow.now()
        carry.message = f"PBX updated, confirmed by {self._confirmation.confirmed_by or 'operator'}"
        await self._tell_integration("rotation_progress", carry)

    async def _verify_cutover(self, carry: RotationCarry) -> None:
        """Sign-in logs must show the PBX on the new key and no longer on the old one; without access to
        them, wait the grace period instead."""
        plan = carry.plan
        opts = plan.options
        await self._set_stage(carry, RotationStage.VERIFYING_CUTOVER, card=None)
        assert carry.pbx_updated_at is not None
        stale_warned = False
        while True:
            evidence = await run_activity(
                activity.CUTOVER_EVIDENCE,
                CutoverInput(
                    tenant_id=plan.app.tenant_id,
                    client_id=plan.app.client_id,
                    old_key_id=carry.plan.current.key_id,
                    new_key_id=self._new.key_id,
                    since=carry.pbx_updated_at,
                ),
                CutoverEvidence,
            )
            now = workflow.now()
            if not evidence.readable:
                grace = opts.cutover_grace_period
                carry.cutover_evidence = (
                    f"sign-in logs not readable ({evidence.reason}); waited the {grace} grace period"
                )
                await workflow.sleep(opts.cutover_grace_period)
                return
            settled = now - carry.pbx_updated_at >= opts.sign_in_settle_time
            old_quiet = evidence.last_old_use is None or now - evidence.last_old_use >= opts.sign_in_settle_time
            moved = evidence.last_new_use is not None and (
                evidence.last_old_use is None or evidence.last_new_use > evidence.last_old_use
            )
            if settled and moved and old_quiet:
                carry.cutover_evidence = (
                    f"{evidence.new_key_sign_ins} PBX sign-in(s) with the new key since the confirmation, "
                    f"none with the old key in the last {opts.sign_in_settle_time}"
                )
                return
            if (
                evidence.last_old_use is not None
                and not stale_warned
                and now - carry.pbx_updated_at >= opts.sign_in_settle_time
            ):
                stale_warned = True
                await self._notify(
                    carry,
                    "still_old_key",
                    severity="warning",
                    title="The PBX still signs in with the old client secret",
                    summary="Sign-in logs show the PBX using the old key after you confirmed the update. Check "
                    "that the new secret was saved in the PBX and that you signed in again; the old key stays "
                    "until the PBX has moved.",
                )
            await workflow.sleep(opts.sign_in_poll_interval)

    # --------------------------------------------------------------- helpers

    @property
    def _new(self) -> SecretRef:
        assert self._carry is not None and self._carry.new_secret is not None
        return self._carry.new_secret

    async def _set_stage(self, carry: RotationCarry, stage: RotationStage, *, card: InstructionCard | None) -> None:
        carry.stage, carry.card = stage, card
        await self._tell_integration("rotation_progress", carry)

    async def _tell_integration(self, signal: str, carry: RotationCarry) -> None:
        status = _public(carry)
        handle = workflow.get_external_workflow_handle(workflow_id_for(carry.plan.integration_id))
        await handle.signal(signal, status)

    async def _remove_secret(self, carry: RotationCarry, key_id: str) -> None:
        await run_activity(
            activity.REMOVE_CLIENT_SECRET,
            RemoveSecretInput(
                integration_id=carry.plan.integration_id,
                tenant_id=carry.plan.app.tenant_id,
                application_object_id=carry.plan.app.application_object_id,
                key_id=key_id,
            ),
            ActivityResult,
        )

    async def _abandon(self, carry: RotationCarry, err: ActivityError) -> RotationStatus:
        """A step failed for good. Before the PBX has the new secret, remove the unused new one; after,
        never remove anything (the PBX may be using either)."""
        if carry.new_secret is not None and carry.pbx_updated_at is None:
            try:
                await self._remove_secret(carry, carry.new_secret.key_id)
                carry.new_secret = None
            except ActivityError:
                pass  # left in place; the status says so below
        carry.stage, carry.finished_at, carry.card = RotationStage.ABANDONED, workflow.now(), None
        carry.message = f"rotation abandoned: {_reason(err)}"
        await self._tell_integration("rotation_finished", carry)
        await self._notify(
            carry, "abandoned", severity="critical", title="Client secret rotation failed", summary=carry.message
        )
        return _public(carry)

    async def _notify(
        self, carry: RotationCarry, key: str, *, severity: str, title: str, summary: str, escalate: bool = False
    ) -> None:
        integration_id = carry.plan.integration_id
        await notify(
            Notification(
                notification_id=f"{integration_id}:rotation:{carry.workflow_id}:{key}".replace("/", "-"),
                integration_id=integration_id,
                kind="rotation_pending",
                severity=severity,
                title=title,
                summary=summary,
                due=carry.plan.current.expires_at,
                next_action=f"python starter.py pbx-updated {integration_id}",
                facts={"Client ID": carry.plan.app.client_id, "Old key": carry.plan.current.key_id}
                | ({"New key": carry.new_secret.key_id} if carry.new_secret else {}),
            ),
            escalate=escalate,
        )

    async def _continue_as_new_if_needed(self, carry: RotationCarry) -> None:
        if history_too_long(MAX_HISTORY_EVENTS):
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(args=[self._request, carry])


def _public(carry: RotationCarry) -> RotationStatus:
    return RotationStatus.model_validate(carry.model_dump(exclude={"plan", "reminders_sent", "expiry_alarm_sent"}))


def _reason(err: ActivityError) -> str:
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(cause or err)
