"""SecretRotationWorkflow: replace an integration's client secret with zero downtime.

A child of the integration workflow, which starts it when asked to rotate and settles its outcome:
new secret first → proven to work → the human pastes it into the PBX → sign-in evidence that the PBX
uses it. Every wait ends by the old secret's expiry at the latest; the result says how far it got:

- ``cutover_proven``: the integration adopts the new secret and removes the old key;
- ``old_secret_expired``: the deadline came first (before the paste, or while the PBX was still
  seen on the old key); nothing is removed while the PBX may still use it;
- ``abandoned``: the new secret could not be created or proven; it was removed again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models import activity_names as activity
    from models.activities import CutoverEvidence, CutoverInput
    from models.integration import (
        ConsentConfirmation,
        InstructionCard,
        PendingHuman,
        RotationPlan,
        RotationStage,
        RotationStatus,
        SecretRef,
    )
    from notifications.message import Notification
    from workflows import instructions, messages
    from workflows.alarms import Alarms
    from workflows.human import wait_for_human
    from workflows.notify import notify
    from workflows.shared import (
        create_secret,
        discard_operation_secrets,
        failure_reason,
        history_too_long,
        prove_secret,
        run_activity,
        signal_quietly,
    )

# While the PBX keeps using the old key, sign-in logs are read less and less often, down to this.
SLOWEST_CUTOVER_POLL = timedelta(hours=1)


class RotationCarry(BaseModel):
    """The rotation's whole state, carried across continue-as-new during its long waits."""

    plan: RotationPlan
    status: RotationStatus
    # Correlation IDs of the service's own sign-ins with the new key: never the PBX's evidence.
    own_sign_in_ids: list[str] = Field(default_factory=list)
    # The paste being waited for, or (during the cut-over check) the PBX seen on the old key.
    waiting: PendingHuman | None = None
    poll_every: timedelta | None = None


@workflow.defn
class SecretRotationWorkflow:
    @workflow.init
    def __init__(self, plan: RotationPlan, carry: RotationCarry | None = None) -> None:
        self._carry = carry or RotationCarry(
            plan=plan,
            status=RotationStatus(
                workflow_id=workflow.info().workflow_id,
                reason=plan.reason,
                started_at=workflow.now(),
                old_secret=plan.current,
            ),
        )
        self._alarms = Alarms()

    @workflow.run
    async def run(self, plan: RotationPlan, carry: RotationCarry | None = None) -> RotationStatus:
        status = self._carry.status
        if status.new_secret is None and not await self._create_new_secret():
            return self._finish(RotationStage.ABANDONED)
        if status.pbx_updated_at is None and not await self._wait_for_pbx():
            return self._finish(RotationStage.OLD_SECRET_EXPIRED)
        if not await self._verify_cutover():
            return self._finish(RotationStage.OLD_SECRET_EXPIRED)
        return self._finish(RotationStage.CUTOVER_PROVEN)

    @workflow.signal
    def pbx_secret_updated(self, confirmation: ConsentConfirmation) -> None:
        # The integration only forwards this once the new secret's card is shown.
        status = self._carry.status
        status.pbx_updated_at = workflow.now()
        status.message = f"PBX updated, confirmed by {confirmation.confirmed_by or 'operator'}"

    @workflow.query
    def status(self) -> RotationStatus:
        return self._carry.status

    # ------------------------------------------------------------------ steps

    async def _create_new_secret(self) -> bool:
        carry = self._carry
        plan, status = carry.plan, carry.status
        try:
            status.new_secret = await create_secret(
                plan.integration_id,
                plan.app,
                operation_id=status.workflow_id,  # unique per rotation
                description=f"Yeastar PBX {plan.integration_id} (rotation)",
                expires_at=workflow.now() + plan.lifetime,
            )
            sign_in_id = str(workflow.uuid4())
            carry.own_sign_in_ids.append(sign_in_id)
            await prove_secret(
                plan.integration_id, plan.app, status.new_secret.key_id, plan.options, sign_in_id=sign_in_id
            )
        except ActivityError as err:
            status.message = f"no working new secret: {failure_reason(err)}; {await self._discard_new_secret()}"
            status.new_secret = None
            return False
        return True

    async def _discard_new_secret(self) -> str:
        plan, status = self._carry.plan, self._carry.status
        try:
            await discard_operation_secrets(plan.integration_id, plan.app, status.workflow_id)
        except ActivityError as err:
            return f"removing what was created failed too ({failure_reason(err)})"
        return "nothing was left behind"

    async def _wait_for_pbx(self) -> bool:
        """The card is shown until the PBX is confirmed updated; False if the old secret expires first."""
        carry = self._carry
        plan, status = carry.plan, carry.status
        status.handed_over_at = status.handed_over_at or workflow.now()
        card = instructions.rotation_card(plan.integration_id, plan.app, self._new, plan.current)
        await self._set_stage(RotationStage.WAITING_FOR_PBX, card)
        carry.waiting = carry.waiting or PendingHuman(kind="rotation_paste", since=status.handed_over_at)

        async def remind(pending: PendingHuman) -> None:
            await self._notify(
                messages.paste_reminder(plan, status, pending, workflow.now()),
                escalate=pending.reminders > plan.options.escalate_after_reminders,
            )

        pasted = await wait_for_human(
            carry.waiting,
            lambda: self._carry.status.pbx_updated_at is not None,
            every=plan.options.human_reminder_interval,
            remind=remind,
            alarms=self._alarms,
            checkpoint=self._checkpoint,
            deadline=plan.current.expires_at,
        )
        carry.waiting = None
        if not pasted:
            status.message = (
                f"the old secret expired at {plan.current.expires_at:%Y-%m-%d %H:%M} UTC before the PBX was "
                "given the new one"
            )
            await self._notify(messages.old_secret_expired_before_paste(plan, status), escalate=True)
        return pasted

    async def _verify_cutover(self) -> bool:
        """Sign-in logs must show the PBX on the new key and no longer on the old one; without access to
        them, the grace period is waited instead. False if the old key expires first."""
        carry = self._carry
        plan, status, opts = carry.plan, carry.status, carry.plan.options
        if status.stage != RotationStage.VERIFYING_CUTOVER:
            await self._set_stage(RotationStage.VERIFYING_CUTOVER, None)
        deadline = plan.current.expires_at
        while True:
            await self._checkpoint()
            confirmed_at = status.pbx_updated_at
            assert confirmed_at is not None
            evidence = await self._cutover_evidence()
            now = workflow.now()
            if evidence is not None and not evidence.readable:
                status.cutover_evidence = (
                    f"sign-in logs not readable ({evidence.reason}); waited the {opts.cutover_grace_period} grace "
                    "period after the confirmation"
                )
                await self._alarms.wait_until(confirmed_at + opts.cutover_grace_period)
                return True
            if evidence is not None and _moved(evidence, confirmed_at, now, opts.sign_in_settle_time):
                status.cutover_evidence = (
                    f"{evidence.new_key_sign_ins} PBX sign-in(s) with the new key, none with the old key in the "
                    f"last {opts.sign_in_settle_time}"
                )
                return True
            if now >= deadline:
                status.message = (
                    f"the old key expired at {deadline:%Y-%m-%d %H:%M} UTC before sign-ins showed the PBX on the "
                    "new one"
                )
                return False
            if evidence is not None and now - confirmed_at >= opts.sign_in_settle_time:
                await self._still_on_old_key(now)
            carry.poll_every = _next_poll(carry.poll_every, opts.sign_in_poll_interval, stalled=carry.waiting)
            reconfirmed = await self._alarms.wait_until(
                min(now + carry.poll_every, deadline), partial(self._confirmed_since, confirmed_at)
            )
            if reconfirmed:  # pasted again: the settle window starts over, at the quick pace
                carry.waiting, carry.poll_every = None, None
                await self._set_stage(RotationStage.VERIFYING_CUTOVER, None)

    async def _cutover_evidence(self) -> CutoverEvidence | None:
        """None when the logs could not be read this time (Graph down): the next poll tries again."""
        carry = self._carry
        plan, status = carry.plan, carry.status
        assert status.handed_over_at is not None
        try:
            return await run_activity(
                activity.CUTOVER_EVIDENCE,
                CutoverInput(
                    tenant_id=plan.app.tenant_id,
                    client_id=plan.app.client_id,
                    old_key_id=plan.current.key_id,
                    new_key_id=self._new.key_id,
                    since=status.handed_over_at,
                    own_sign_in_ids=carry.own_sign_in_ids,
                ),
                CutoverEvidence,
            )
        except ActivityError as err:
            status.warning = f"sign-in logs unreadable at {workflow.now():%Y-%m-%d %H:%M} UTC: {failure_reason(err)}"
            return None

    async def _still_on_old_key(self, now: datetime) -> None:
        """The PBX was confirmed but is still seen on the old key (or not at all): say so where the
        operator looks (the status card) and remind, escalating, until it moves or the deadline."""
        carry = self._carry
        plan, opts = carry.plan, carry.plan.options
        if carry.waiting is None:
            carry.waiting = PendingHuman(kind="cutover_stalled", since=now)
            card = instructions.cutover_stalled_card(plan.integration_id, plan.app, self._new, plan.current)
            await self._set_stage(RotationStage.VERIFYING_CUTOVER, card)
        elif now < carry.waiting.since + opts.human_reminder_interval * (carry.waiting.reminders + 1):
            return
        else:
            carry.waiting.reminders += 1
        await self._notify(
            messages.cutover_stalled(plan, carry.status, carry.waiting.reminders, now),
            escalate=carry.waiting.reminders > opts.escalate_after_reminders,
        )

    # --------------------------------------------------------------- helpers

    def _confirmed_since(self, confirmed_at: datetime) -> bool:
        updated = self._carry.status.pbx_updated_at
        return updated is not None and updated > confirmed_at

    @property
    def _new(self) -> SecretRef:
        assert self._carry.status.new_secret is not None
        return self._carry.status.new_secret

    def _finish(self, stage: RotationStage) -> RotationStatus:
        status = self._carry.status
        status.stage, status.finished_at, status.card = stage, workflow.now(), None
        workflow.logger.info("rotation ended", extra={"rotation": status.workflow_id, "stage": str(stage)})
        return status

    async def _set_stage(self, stage: RotationStage, card: InstructionCard | None) -> None:
        status = self._carry.status
        status.stage, status.card = stage, card
        parent = workflow.info().parent
        if parent is not None:
            integration = workflow.get_external_workflow_handle(parent.workflow_id)
            await signal_quietly(integration.signal("rotation_progress", status), "rotation_progress")

    async def _notify(self, notification: Notification, *, escalate: bool = False) -> None:
        if problems := await notify(notification, escalate=escalate):
            self._carry.status.warning = "; ".join(problems)

    async def _checkpoint(self) -> None:
        if history_too_long(self._carry.plan.options.max_history_events):
            await workflow.wait_condition(workflow.all_handlers_finished)
            workflow.continue_as_new(args=[self._carry.plan, self._carry])


def _moved(evidence: CutoverEvidence, confirmed_at: datetime, now: datetime, settle: timedelta) -> bool:
    """Sign-ins with the new key, the newest after any with the old, and the old quiet for `settle`
    (sign-ins reach the logs minutes late) at least `settle` after the confirmation."""
    new, old = evidence.last_new_use, evidence.last_old_use
    return now - confirmed_at >= settle and new is not None and (old is None or (new > old and now - old >= settle))


def _next_poll(current: timedelta | None, base: timedelta, *, stalled: PendingHuman | None) -> timedelta:
    if current is None or stalled is None:
        return base
    return min(current * 2, max(base, SLOWEST_CUTOVER_POLL))
