"""Two years in the life of one integration on the time-skipping server: every expiry reminder, three
rotations (the human on time, late, never), escalation, old keys removed only after the PBX moved,
and bounded history. Reminders arrive over real HTTP at a receiver that checks their signatures."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from models.integration import IntegrationStatus, LifecycleOptions, Phase, RotationStage
from simulators.clock import CallableClock
from simulators.tls import load_or_create_local_ca
from tests.conftest import Harness, harness_for, record_history, wait_until
from tests.receivers import SIGNING_SECRET, Receiver, running_receiver
from tests.workflows.test_onboarding import connect_pbx_as_human, portal_redirect_uris
from tests.workflows.test_rotation import key_ids, paste_new_secret_as_human

DAY = timedelta(days=1)
OPS, ESCALATION = "/webhook?to=ops", "/webhook?to=escalation"
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


async def test_two_years_of_reminders_and_rotations(ts_env: WorkflowEnvironment, tmp_path: Path) -> None:
    ca = load_or_create_local_ca(tmp_path / "receiver-ca")
    async with running_receiver(ca) as receiver:

        def channel(name: str, route: str) -> list[dict[str, str]]:
            return [
                {"type": "webhook", "name": name, "url": receiver.http_url + route, "signing_secret": SIGNING_SECRET}
            ]

        clock = CallableClock(ts_env.get_current_time)
        async with (
            harness_for(
                ts_env,
                tmp_path,
                clock=clock,
                notification_channels=channel("ops", OPS),
                escalation_channels=channel("escalation", ESCALATION),
            ) as h,
            h.worker(),
        ):
            await _live_two_years(h, receiver)

    # Every request a receiver accepted was signed and well-formed; nothing arrived twice.
    webhook, escalated = delivered(receiver, OPS), delivered(receiver, ESCALATION)
    for batch in (webhook, escalated):
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
    r1 = await h.start_rotation("life", 1)
    await paste_new_secret_as_human(h, handle)
    done1 = await r1.result()
    assert done1.stage == RotationStage.COMPLETED and done1.new_secret is not None
    status = await _connected(handle)
    key_b = done1.new_secret.key_id
    assert key_ids(h, status) == [key_b]

    # Rotation 2, ninety days later, the human five and a half days late: five reminders, the last two
    # escalated; the old key stays until the paste and the sign-in evidence.
    await h.env.sleep(timedelta(days=90))
    r2 = await h.start_rotation("life", 2)
    waiting = await wait_until(handle, lambda s: s.rotation is not None and s.rotation.new_secret is not None, "r2")
    await h.env.sleep(timedelta(days=5, hours=12))
    assert key_ids(h, waiting) == sorted([key_b, waiting.rotation.new_secret.key_id])  # type: ignore[union-attr]
    await paste_new_secret_as_human(h, handle)
    done2 = await r2.result()
    assert done2.stage == RotationStage.COMPLETED and done2.new_secret is not None
    key_c = done2.new_secret.key_id
    reminders_r2 = ids(delivered(receiver, OPS), "rotation_pending", r2.id)
    assert len(reminders_r2) == 5
    assert len(ids(delivered(receiver, ESCALATION), "rotation_pending", r2.id)) == 2
    status = await _connected(handle)
    assert key_ids(h, status) == [key_c]

    # Rotation 3 starts 25 days before key C expires and the human never comes: daily reminders,
    # one loud alarm when C expires, and C is never removed (the PBX may still be using it).
    assert status.secret is not None
    await sleep_until(h.env, status.secret.expires_at, -timedelta(days=25))
    assert ids(delivered(receiver, OPS), "secret_expiry", key_c) == [f"life:secret_expiry:{key_c}:30d"]
    r3 = await h.start_rotation("life", 3)
    await wait_until(handle, lambda s: s.rotation is not None and s.rotation.new_secret is not None, "r3")
    await h.env.sleep(timedelta(days=40, hours=12))
    status = await handle.query("status")
    status = IntegrationStatus.model_validate(status) if isinstance(status, dict) else status
    assert status.phase == Phase.ROTATING and status.rotation is not None, (status.last_rotation, status.warnings)
    assert status.rotation.stage == RotationStage.WAITING_FOR_PBX
    assert status.rotation.new_secret is not None
    assert key_ids(h, status) == sorted([key_c, status.rotation.new_secret.key_id])
    webhook = delivered(receiver, OPS)
    assert len(ids(webhook, "rotation_pending", f"{r3.id}:reminder")) == 40
    assert ids(webhook, "rotation_pending", f"{r3.id}:old_secret_expired") == [
        f"life:rotation:{r3.id}:old_secret_expired"
    ]
    assert ids(webhook, "secret_expiry", key_c) == [f"life:secret_expiry:{key_c}:30d"], "rotation owns reminders now"
    assert len(ids(delivered(receiver, ESCALATION), "rotation_pending", r3.id)) == 40 - 3 + 1

    # Over two years the integration's history was cut by continue-as-new and each run stays small.
    assert status.continued_as_new >= 1
    assert status.history_length < OPTIONS.max_history_events + 100
    for rotation in (r1, r2, r3):
        assert len((await rotation.fetch_history()).events) < 500
    await record_history(handle, "two-year-life")


async def _connected(handle: WorkflowHandle[Any, Any]) -> IntegrationStatus:
    return await wait_until(handle, lambda s: s.phase == Phase.CONNECTED and s.rotation is None, "connected again")
