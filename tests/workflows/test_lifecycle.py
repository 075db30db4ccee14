"""Two years in the life of one integration on the time-skipping server: every expiry reminder, three
rotations (the human on time, late, never), escalation, old keys removed only after the PBX moved,
and bounded history. Reminders arrive over real HTTP at a receiver that checks their signatures."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from models.integration import IntegrationStatus, LifecycleOptions, Phase, RotationStage
from tests.conftest import ESCALATION, OPS, Harness, bounded, record_history, wait_until
from tests.receivers import Receiver
from tests.workflows.test_onboarding import connect_pbx_as_human, portal_redirect_uris
from tests.workflows.test_rotation import key_ids, paste_new_secret_as_human
from workflows import instructions

DAY = timedelta(days=1)
OPTIONS = LifecycleOptions(
    secret_lifetime=timedelta(days=180),
    human_reminder_interval=DAY,
    escalate_after_reminders=3,
    credential_check_interval=timedelta(days=7),
    max_history_events=300,  # small, so two years must continue-as-new
)


def delivered(receiver: Receiver, route: str) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in receiver.of(route)]


def ids(notifications: list[dict[str, Any]], kind: str, contains: str = "") -> list[str]:
    return [n["notification_id"] for n in notifications if n["kind"] == kind and contains in n["notification_id"]]


async def sleep_until(env: WorkflowEnvironment, since: Any, offset: timedelta) -> None:
    await env.sleep((since + offset) - await env.get_current_time())


async def test_two_years_of_reminders_and_rotations(ts_notified: Harness, receiver: Receiver) -> None:
    async with ts_notified.worker():
        await _live_two_years(ts_notified, receiver)
    # Every request the receiver accepted was signed and well-formed; nothing arrived twice.
    for batch in (delivered(receiver, OPS), delivered(receiver, ESCALATION)):
        assert not [i for i, n in Counter(n["notification_id"] for n in batch).items() if n > 1], "duplicates"


async def _live_two_years(h: Harness, receiver: Receiver) -> None:
    handle = await h.start(h.onboard_input("life", redirect_uris=await portal_redirect_uris(h), options=OPTIONS))
    connected = await connect_pbx_as_human(h, handle)
    assert connected.secret is not None and connected.connected_at is not None
    key_a = connected.secret.key_id

    # Year one: nobody rotates until the last day, so every expiry reminder but "at expiry" goes out.
    await sleep_until(h.env, connected.connected_at, timedelta(days=179, hours=12))
    expiry_a = ids(delivered(receiver, OPS), "secret_expiry", key_a)
    assert sorted(expiry_a) == sorted(f"life:secret_expiry:{key_a}:{d}d" for d in (30, 14, 7, 3, 1))

    # Rotation 1, the human on time.
    r1 = await h.rotate("life")
    await paste_new_secret_as_human(h, handle)
    status = await _settled(h, handle, 1)
    done1 = await bounded(r1.result(), "rotation 1")
    assert done1.stage == RotationStage.CUTOVER_PROVEN and done1.new_secret is not None
    key_b = done1.new_secret.key_id
    assert key_ids(h, status) == [key_b]

    # Rotation 2, ninety days later, the human five and a half days late: five reminders, the last two
    # escalated; the old key stays until the paste and the sign-in evidence.
    await h.env.sleep(timedelta(days=90))
    r2 = await h.rotate("life")
    waiting = await wait_until(handle, lambda s: s.rotation is not None and s.rotation.new_secret is not None, "r2")
    await h.env.sleep(timedelta(days=5, hours=12))
    assert waiting.rotation is not None and waiting.rotation.new_secret is not None
    assert key_ids(h, waiting) == sorted([key_b, waiting.rotation.new_secret.key_id])
    await paste_new_secret_as_human(h, handle)
    status = await _settled(h, handle, 2)
    done2 = await bounded(r2.result(), "rotation 2")
    assert done2.stage == RotationStage.CUTOVER_PROVEN and done2.new_secret is not None
    key_c = done2.new_secret.key_id
    assert len(ids(delivered(receiver, OPS), "rotation_pending", f"{r2.id}:reminder")) == 5
    assert len(ids(delivered(receiver, ESCALATION), "rotation_pending", r2.id)) == 2
    assert key_ids(h, status) == [key_c]

    # Rotation 3 starts 25 days before key C expires and the human never comes: daily reminders, critical
    # in the last week, then one loud alarm when C expires. The rotation ends there; the integration
    # keeps the new key D, is Expired, and asks for D to be pasted. C (expired, useless) is removed.
    assert status.secret is not None
    c_expires = status.secret.expires_at
    await sleep_until(h.env, c_expires, -timedelta(days=25))
    assert ids(delivered(receiver, OPS), "secret_expiry", key_c) == [f"life:secret_expiry:{key_c}:30d"]
    r3 = await h.rotate("life")
    await wait_until(handle, lambda s: s.rotation is not None and s.rotation.new_secret is not None, "r3")
    await sleep_until(h.env, c_expires, timedelta(days=2, hours=12))
    expired = await wait_until(handle, lambda s: s.phase == Phase.EXPIRED and s.rotation is None, "expired")
    done3 = await bounded(r3.result(), "rotation 3")
    assert done3.stage == RotationStage.OLD_SECRET_EXPIRED and done3.new_secret is not None
    key_d = done3.new_secret.key_id
    assert expired.secret is not None and expired.secret.key_id == key_d
    assert expired.pending_human_action is not None
    assert expired.pending_human_action.title == instructions.PASTE_AFTER_EXPIRY_TITLE
    assert key_ids(h, expired) == [key_d]
    webhook = delivered(receiver, OPS)
    reminders = [n for n in webhook if n["notification_id"].startswith(f"life:rotation:{r3.id}:reminder")]
    assert len(reminders) == 24
    assert [n["severity"] for n in reminders].count("critical") == 7  # the last week
    assert ids(webhook, "rotation_pending", f"{r3.id}:old_secret_expired") == [
        f"life:rotation:{r3.id}:old_secret_expired"
    ]
    assert ids(webhook, "secret_expiry", key_c) == [f"life:secret_expiry:{key_c}:30d"], "the rotation reminded"
    assert len(ids(webhook, "consent_pending")) == 2, "then the integration, daily"
    assert len(ids(delivered(receiver, ESCALATION), "rotation_pending", r3.id)) == 24 - 3 + 1

    # The admin finally pastes D: Connected on D, no secret expired unannounced, nothing lost.
    back = await connect_pbx_as_human(h, handle)
    assert back.phase == Phase.CONNECTED and back.secret is not None and back.secret.key_id == key_d

    # Over two years the integration's history was cut by continue-as-new and each run stays small.
    assert back.continued_as_new >= 1
    assert back.history_length < OPTIONS.max_history_events + 100
    for rotation in (r1, r2, r3):
        assert len((await rotation.fetch_history()).events) < 500
    await record_history(handle, "two-year-life")


async def _settled(h: Harness, handle: WorkflowHandle[Any, Any], rotations: int) -> IntegrationStatus:
    return await h.skip_until(
        handle,
        lambda s: s.phase == Phase.CONNECTED and s.rotations_completed == rotations and not s.retired_keys,
        f"rotation {rotations} settled",
    )
