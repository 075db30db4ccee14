"""Pure model logic: the daily slot that spreads a fleet's checks, redirect URI rules."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from models.integration import RedirectUris, daily_slot

DAY = timedelta(days=1)
BURST = datetime(2026, 11, 30, 12, 0, 7, tzinfo=UTC)


def test_a_burst_onboarded_together_checks_spread_over_the_day() -> None:
    slots = [daily_slot(f"pbx-{number}", BURST, DAY) for number in range(10_000)]
    assert all(BURST < slot <= BURST + DAY for slot in slots)
    per_hour = Counter(slot.hour for slot in slots)
    assert len(per_hour) == 24
    assert max(per_hour.values()) < 10_000 / 24 * 1.25, per_hour
    per_minute = Counter((slot.hour, slot.minute) for slot in slots)
    assert max(per_minute.values()) < 25, "no minute carries a noticeable share of the fleet"


def test_an_integration_keeps_its_time_of_day() -> None:
    first = daily_slot("acme-hq", BURST, DAY)
    second = daily_slot("acme-hq", first, DAY)
    assert second - first == DAY
    assert daily_slot("acme-hq", first - timedelta(seconds=1), DAY) == first
    assert daily_slot("acme-hq", BURST + timedelta(days=30), DAY).time() == first.time()


def test_slots_follow_the_interval() -> None:
    week = timedelta(days=7)
    slot = daily_slot("acme-hq", BURST, week)
    assert BURST < slot <= BURST + week
    assert daily_slot("acme-hq", slot, week) - slot == week


def test_redirect_uri_problems_are_named() -> None:
    problems = RedirectUris(
        redirect_uri="http://pbx.example.com/cb", sso_redirect_uri="http://pbx.example.com/cb"
    ).problems()
    assert problems[0].startswith("redirect URI: 'http://pbx.example.com/cb' is not an https:// URL")
    assert "SSO redirect URI: must differ from the redirect URI" in problems
