"""The one retry policy: when a failed call to Rule (a delivery) or to Centra (processing an inbound event) is tried
again, and what a partner's Retry-After means.

- The schedule: after the 1st, 2nd, ... counted attempt wait 30 s, 2 min, 10 min, 30 min, 2 h, 6 h, 12 h (+-20 %
  jitter, so a fleet of retries does not arrive at once); 8 attempts in all, about 21 hours, then the work fails
  with its last error. A Centra or Rule outage of hours therefore loses nothing. `RETRY_SCHEDULE` (seconds,
  comma-separated) replaces the steps; only the fault suite sets it.
- A Retry-After (Rule's or Centra's 429) is honoured as given: seconds, an HTTP date, or Rule's local Stockholm
  timestamp `YYYY-MM-DD HH:MM:SS`; never shorter than twice the first step (60 s), never longer than 24 h. Waiting
  for a Retry-After does not use the budget.
- A claim (a worker's lease on a delivery or an event) lasts WORK_LEASE_SECONDS; a worker that dies mid-call
  leaves it to expire, and the work is due again.
"""

from __future__ import annotations

import email.utils
import random
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings

RETRY_DELAYS: tuple[int, ...] = tuple(settings.RETRY_SCHEDULE)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.2
FIRST_WAIT = timedelta(seconds=RETRY_DELAYS[0])
MIN_HOLD = 2 * FIRST_WAIT
MAX_HOLD = timedelta(hours=24)  # a nonsensical Retry-After must not silence a connection for weeks
LEASE = timedelta(seconds=settings.WORK_LEASE_SECONDS)
RULE_TIME_ZONE = ZoneInfo("Europe/Stockholm")

_STOCKHOLM_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}$")


def retry_delay(counted_attempts: int, rng: random.Random | None = None) -> timedelta:
    """The wait after the n-th counted attempt: the schedule's step with +-20 % jitter."""
    base = RETRY_DELAYS[min(max(counted_attempts, 1), len(RETRY_DELAYS)) - 1]
    factor = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return timedelta(seconds=base * factor)


def gives_up(counted_attempts: int) -> bool:
    """True once the budget is spent: no further attempt after this many counted ones."""
    return counted_attempts >= MAX_ATTEMPTS


def parse_retry_after(value: str | None, now: datetime) -> datetime:
    """When a 429 lets us call again: seconds, an HTTP date or Rule's Stockholm `YYYY-MM-DD HH:MM:SS`; anything
    else (missing, unreadable) waits the minimum. Clamped to [now + MIN_HOLD, now + MAX_HOLD]."""
    until = None
    value = (value or "").strip()
    if value.isdigit():
        until = now + timedelta(seconds=int(value))
    elif _STOCKHOLM_STAMP.match(value):
        local = datetime.strptime(value.replace("T", " "), "%Y-%m-%d %H:%M:%S")
        until = local.replace(tzinfo=RULE_TIME_ZONE)
    elif value:
        try:
            until = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            until = None
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=UTC)
    if until is None:
        until = now
    return min(max(until, now + MIN_HOLD), now + MAX_HOLD)
