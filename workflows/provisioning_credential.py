"""ProvisioningCredentialWorkflow: watches the service's own Entra credential.

The provisioning app signs in with a secret or certificate that expires like any other; when it
does, nothing can be onboarded, checked or rotated. One of these per provisioning identity (the
worker starts it) reads the expiry once a day and reminds on the same channels and offsets as the
integrations' secrets.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import partial

from pydantic import BaseModel, Field
from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from models import activity_names as activity
    from models.activities import ProvisioningCheck, ProvisioningCredential
    from models.integration import LifecycleOptions, daily_slot
    from notifications.message import Notification
    from workflows import messages
    from workflows.alarms import Alarms
    from workflows.human import due_expiry_reminder, next_expiry_reminder_at
    from workflows.notify import notify
    from workflows.shared import failure_reason, history_too_long, run_activity


def watcher_id_for(client_id: str) -> str:
    return f"provisioning-credential-{client_id}"


class ProvisioningWatch(BaseModel):
    """Input and carried state of the watcher."""

    tenant_id: str
    client_id: str
    options: LifecycleOptions = Field(default_factory=LifecycleOptions)
    credential: ProvisioningCredential | None = None
    checked_at: datetime | None = None
    problem: str | None = None
    notifications_sent: list[str] = Field(default_factory=list)


@workflow.defn
class ProvisioningCredentialWorkflow:
    @workflow.init
    def __init__(self, watch: ProvisioningWatch) -> None:
        self._watch = watch
        self._alarms = Alarms()

    @workflow.run
    async def run(self, watch: ProvisioningWatch) -> None:
        watch, opts = self._watch, self._watch.options
        while True:
            if history_too_long(opts.max_history_events):
                workflow.continue_as_new(watch)
            await self._check()
            credential, now = watch.credential, workflow.now()
            wake_at = daily_slot(workflow.info().workflow_id, now, opts.credential_check_interval)
            if credential is not None:
                key = partial(_reminder_key, credential)
                offset, _ = due_expiry_reminder(
                    credential.expires_at, opts.reminder_offsets, watch.notifications_sent, key, now
                )
                if offset is not None:
                    await self._notify(
                        messages.provisioning_expiry(_watcher(watch), credential, offset, now, watch.client_id)
                    )
                reminder_at = next_expiry_reminder_at(
                    credential.expires_at, opts.reminder_offsets, watch.notifications_sent, key
                )
                wake_at = min(wake_at, reminder_at or wake_at)
            await self._alarms.wait_until(wake_at)

    @workflow.query
    def status(self) -> ProvisioningWatch:
        return self._watch

    async def _check(self) -> None:
        watch = self._watch
        try:
            check = await run_activity(activity.CHECK_PROVISIONING_CREDENTIAL, watch.tenant_id, ProvisioningCheck)
        except ActivityError as err:
            watch.problem = f"could not check at {workflow.now():%Y-%m-%d %H:%M} UTC: {failure_reason(err)}"
            return
        watch.credential, watch.problem, watch.checked_at = check.credential, check.problem, workflow.now()
        if check.credential is not None:  # reminders about an earlier credential or expiry are of no further use
            current = _reminder_key(check.credential, timedelta(0)).rsplit(":", 1)[0]
            watch.notifications_sent = [sent for sent in watch.notifications_sent if sent.startswith(current)]

    async def _notify(self, notification: Notification) -> None:
        if problems := await notify(notification):
            self._watch.problem = "; ".join(problems)


def _watcher(watch: ProvisioningWatch) -> str:
    return f"provisioning-{watch.client_id}"


def _reminder_key(credential: ProvisioningCredential, offset: timedelta) -> str:
    # The expiry is part of the key: a credential renewed in place is reminded about afresh.
    return f"provisioning_expiry:{credential.key_id}:{credential.expires_at:%Y%m%d}:{offset.days}d"
