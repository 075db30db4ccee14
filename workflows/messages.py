"""What the notifications say: every reminder and alarm the workflows send, in plain words.

Each function returns a :class:`Notification` whose ``notification_id`` is stable for that one
message (receivers drop a duplicate); none of them ever carries a secret value.
"""

from __future__ import annotations

import zlib
from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from models.activities import ProvisioningCredential
    from models.integration import (
        AdminAction,
        InstructionCard,
        PendingHuman,
        RotationPlan,
        RotationStatus,
        SecretRef,
    )
    from models.review import Finding
    from notifications.message import Notification
    from workflows.instructions import CLI

# Within this long of an expiry, reminders are critical: three days for a secret in use, a week for a
# rotation's paste (the human has more to do, and the old secret is the one expiring).
CRITICAL_BEFORE_EXPIRY = timedelta(days=3)
URGENT_BEFORE_EXPIRY = timedelta(days=7)


def _days(delta: timedelta) -> str:
    # Rounded: a reminder due 14 days before expiry runs a moment after that, not "in 13 days".
    days = max(round(delta / timedelta(days=1)), 0)
    return "now" if days == 0 else f"in {days} day{'s' if days != 1 else ''}"


def _note(integration_id: str, key: str, **fields: object) -> Notification:
    return Notification.model_validate(
        {"notification_id": f"{integration_id}:{key}".replace("/", "-"), "integration_id": integration_id, **fields}
    )


def human_reminder(
    integration_id: str,
    pending: PendingHuman,
    card: InstructionCard,
    summary: str,
    *,
    severity: str,
    facts: dict[str, str],
    action: AdminAction | None = None,
) -> Notification:
    return _note(
        integration_id,
        f"{pending.kind}:{pending.since:%Y%m%dT%H%M%S}:{pending.reminders}",
        kind=pending.kind,
        severity=severity,
        title=card.title,
        summary=f"{summary} Waiting since {pending.since:%Y-%m-%d %H:%M} UTC"
        + (f" (reminder {pending.reminders})." if pending.reminders else "."),
        next_action=card.commands[-1] if card.commands else card.steps[0],
        facts=facts,
        action=action,
    )


def expiry_reminder(
    integration_id: str, secret: SecretRef, offset: timedelta, now: datetime, facts: dict[str, str]
) -> Notification:
    """The reminder ``offset`` before expiry (its ID); the text says how long is really left."""
    left = secret.expires_at - now
    return _note(
        integration_id,
        f"secret_expiry:{secret.key_id}:{offset.days}d",
        kind="secret_expiry",
        severity="critical" if left <= CRITICAL_BEFORE_EXPIRY else "warning",
        title=f"Client secret expires {_days(left)}",
        summary=f"The Entra client secret {secret.hint}… used by the PBX expires at "
        f"{secret.expires_at:%Y-%m-%d %H:%M} UTC. When it does, directory sync, SSO and Teams presence stop.",
        due=secret.expires_at,
        next_action=f"{CLI} retry {integration_id}" if left <= timedelta(0) else f"{CLI} rotate {integration_id}",
        facts=facts,
    )


def _rotation_facts(plan: RotationPlan, status: RotationStatus) -> dict[str, str]:
    facts = {"Client ID": plan.app.client_id, "Old key": plan.current.key_id}
    return facts | ({"New key": status.new_secret.key_id} if status.new_secret else {})


def _rotation_note(
    plan: RotationPlan, status: RotationStatus, key: str, action: AdminAction | None = None, **fields: object
) -> Notification:
    return _note(
        plan.integration_id,
        f"rotation:{status.workflow_id}:{key}",
        kind="rotation_pending",
        due=plan.current.expires_at,
        facts=_rotation_facts(plan, status),
        action=action or AdminAction(kind="rotation", ref=status.workflow_id),
        **fields,
    )


def _paste_action(integration_id: str) -> str:
    return (
        f"Reveal the new secret with `{CLI} secret {integration_id} --reveal --pending`, paste it into the PBX "
        f"(Integrations > Collaboration > Microsoft 365), sign in again, then run `{CLI} pbx-updated {integration_id}`."
    )


def paste_reminder(plan: RotationPlan, status: RotationStatus, pending: PendingHuman, now: datetime) -> Notification:
    old = plan.current
    return _rotation_note(
        plan,
        status,
        f"reminder:{pending.reminders}",
        severity="critical" if old.expires_at - now <= URGENT_BEFORE_EXPIRY else "warning",
        title="Paste the new client secret into the PBX",
        summary=f"A new client secret is ready for {plan.integration_id}. The old one ({old.hint}…) expires "
        f"{_days(old.expires_at - now)}, at {old.expires_at:%Y-%m-%d %H:%M} UTC (reminder {pending.reminders}).",
        next_action=_paste_action(plan.integration_id),
    )


def old_secret_expired_before_paste(plan: RotationPlan, status: RotationStatus) -> Notification:
    old = plan.current
    assert status.new_secret is not None
    return _rotation_note(
        plan,
        status,
        "old_secret_expired",
        severity="critical",
        title="PBX sync is down: paste the new client secret now",
        summary=f"The old client secret {old.hint}… expired at {old.expires_at:%Y-%m-%d %H:%M} UTC before the PBX "
        "was given the new one. The new secret is ready and kept; the integration now waits for it to be pasted.",
        next_action=f"Reveal it with `{CLI} secret {plan.integration_id} --reveal`, paste it into the PBX, sign in "
        f"again, then run `{CLI} consent {plan.integration_id}`.",
        # From now on it is the integration's own secret to connect with.
        action=AdminAction(kind="connect", ref=status.new_secret.key_id),
    )


def cutover_stalled(plan: RotationPlan, status: RotationStatus, number: int, now: datetime) -> Notification:
    old = plan.current
    return _rotation_note(
        plan,
        status,
        f"still_old_key:{number}",
        severity="critical" if old.expires_at - now <= URGENT_BEFORE_EXPIRY else "warning",
        title="The PBX still signs in with the old client secret",
        summary="Sign-in logs show the PBX using the old key after the update was confirmed. The old key "
        f"({old.hint}…) stays until the PBX has moved; it expires {_days(old.expires_at - now)}, at "
        f"{old.expires_at:%Y-%m-%d %H:%M} UTC, and sync stops then.",
        next_action=_paste_action(plan.integration_id),
    )


def rotation_failed(integration_id: str, outcome: RotationStatus, current: SecretRef) -> Notification:
    return _note(
        integration_id,
        f"rotation:{outcome.workflow_id}:failed",
        kind="rotation_failed",
        severity="critical",
        title="Client secret rotation failed",
        summary=f"{outcome.message} The PBX keeps using the current secret {current.hint}…, which expires at "
        f"{current.expires_at:%Y-%m-%d %H:%M} UTC.",
        due=current.expires_at,
        next_action=f"{CLI} rotate {integration_id}  (or wait for the next scheduled rotation)",
    )


def provisioning_expiry(
    watcher_id: str, credential: ProvisioningCredential, offset: timedelta, now: datetime, client_id: str
) -> Notification:
    left = credential.expires_at - now
    return _note(
        watcher_id,
        f"provisioning_expiry:{credential.key_id}:{credential.expires_at:%Y%m%d}:{offset.days}d",
        kind="provisioning_expiry",
        severity="critical" if left <= CRITICAL_BEFORE_EXPIRY else "warning",
        title=f"The service's own Entra {credential.kind} expires {_days(left)}",
        summary=f"The provisioning app {client_id} signs in to Microsoft Graph with a {credential.kind} (key "
        f"{credential.key_id}) that expires at {credential.expires_at:%Y-%m-%d %H:%M} UTC. After that no "
        "integration can be onboarded, checked or rotated, and secrets expire unattended.",
        due=credential.expires_at,
        next_action="Add a new secret or certificate to the provisioning app (Entra admin center > App "
        "registrations > Certificates & secrets), set YEC_ENTRA__CLIENT_SECRET or YEC_ENTRA__CERTIFICATE_PATH, "
        "restart the worker, then remove the old one.",
        facts={"Client ID": client_id},
    )


def adopted_secret_expiring(
    integration_id: str, secret: SecretRef, now: datetime, facts: dict[str, str]
) -> Notification:
    """Right after adoption, when the secret set up by hand is close to expiry: rotate now."""
    left = secret.expires_at - now
    expired = left <= timedelta(0)
    return _note(
        integration_id,
        f"adopted:{secret.key_id}",
        kind="secret_expiry",
        severity="critical",
        title="Adopted: the client secret set up by hand has expired"
        if expired
        else f"Adopted: the client secret set up by hand expires {_days(left)}",
        summary=f"The Entra client secret {secret.hint}… the PBX was given by hand expires at "
        f"{secret.expires_at:%Y-%m-%d %H:%M} UTC. Rotate now: the service creates a new secret for the PBX "
        "administrator to paste, and removes the old one once the PBX signs in with the new.",
        due=secret.expires_at,
        next_action=f"{CLI} retry {integration_id}" if expired else f"{CLI} rotate {integration_id}",
        facts=facts,
    )


def drift_key(finding: Finding) -> str:
    """One change found in the app, the same each day it is found again."""
    return f"drift:{finding.code}.{zlib.crc32(finding.detail.encode()):08x}"


def app_drift(integration_id: str, findings: list[Finding], facts: dict[str, str]) -> Notification:
    """The daily check found the app changed outside this service: what was put back, what needs a person."""
    repaired = [f for f in findings if f.repaired]
    open_ = [f for f in findings if not f.repaired]
    lines = [f"Put back: {f.detail}." for f in repaired] + [f"Needs you: {f.detail}." for f in open_]
    disabled = any(f.code == "service-principal-disabled" for f in open_)
    return _note(
        integration_id,
        f"drift:{zlib.crc32('~'.join(sorted(drift_key(f) for f in findings)).encode()):08x}",
        kind="app_drift",
        severity="critical" if disabled else "warning",
        title="The Entra application was changed outside this service",
        summary=" ".join(lines),
        next_action=f"{CLI} status {integration_id}" if open_ else "Nothing: the service repaired it.",
        facts=facts,
    )
