"""The one retry policy (integration/retry.py): the schedule, its jitter, and every form of Retry-After."""

import random
from datetime import UTC, timedelta
from email.utils import format_datetime
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from integration import retry


def test_the_retry_schedule_with_jitter():
    rng = random.Random(7)
    expected = [30, 120, 600, 1800, 7200, 21600, 43200]
    assert list(retry.RETRY_DELAYS) == expected
    for attempt, base in enumerate(expected, start=1):
        samples = [retry.retry_delay(attempt, rng).total_seconds() for _ in range(200)]
        assert all(base * 0.8 <= s <= base * 1.2 for s in samples)
        assert max(samples) - min(samples) > base * 0.2  # really jittered, not a fixed delay
    assert sum(expected) / 3600 == pytest.approx(21.0, abs=0.5)


def test_the_budget_is_eight_attempts():
    assert retry.MAX_ATTEMPTS == 8
    assert not retry.gives_up(7) and retry.gives_up(8)


@pytest.mark.parametrize(
    "form",
    ["seconds", "http-date", "http-date-without-zone", "stockholm", "stockholm-iso"],
)
def test_retry_after_in_every_form_partners_send(form):
    now = timezone.now().replace(microsecond=0)
    until = now + timedelta(minutes=10)
    stockholm = until.astimezone(ZoneInfo("Europe/Stockholm"))
    value = {
        "seconds": "600",  # Centra's 429, and HTTP's usual form
        "http-date": format_datetime(until.astimezone(UTC), usegmt=True),
        "http-date-without-zone": until.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S"),
        "stockholm": stockholm.strftime("%Y-%m-%d %H:%M:%S"),  # Rule's 429: local Stockholm time
        "stockholm-iso": stockholm.strftime("%Y-%m-%dT%H:%M:%S"),
    }[form]
    assert retry.parse_retry_after(value, now) == until


def test_a_stockholm_timestamp_is_read_in_summer_time_too():
    # 14:00 in Stockholm in July is 12:00 UTC (CEST, +02:00)
    now = timezone.datetime(2026, 7, 1, 11, 0, tzinfo=UTC)
    assert retry.parse_retry_after("2026-07-01 14:00:00", now) == timezone.datetime(2026, 7, 1, 12, 0, tzinfo=UTC)


def test_retry_after_is_at_least_a_minute_and_at_most_a_day():
    now = timezone.now()
    assert retry.parse_retry_after("5", now) == now + timedelta(seconds=60)
    assert retry.parse_retry_after("", now) == now + timedelta(seconds=60)
    assert retry.parse_retry_after(None, now) == now + timedelta(seconds=60)
    assert retry.parse_retry_after("not a date", now) == now + timedelta(seconds=60)
    assert retry.parse_retry_after("120", now) == now + timedelta(seconds=120)
    assert retry.parse_retry_after(str(90 * 24 * 3600), now) == now + timedelta(hours=24)
    assert retry.parse_retry_after("1999-01-01 00:00:00", now) == now + timedelta(seconds=60)
