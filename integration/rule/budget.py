"""Rule's call budget per connection: a ceiling of calls per minute, paced (one call every 60/ceiling seconds)
rather than spent in bursts.

The state is one row per connection holding the earliest moment the next call may start (the generic cell rate
algorithm's "theoretical arrival time"). Taking a slot is a conditional UPDATE on that moment, so any number of
worker processes share one budget without a lock. Callers ask `take(connection)`: 0.0 means "go now" (the
slot is theirs), anything else is the seconds to wait (nothing was taken).

The default ceiling, 60 calls a minute (RULE_CALLS_PER_MINUTE): Rule publishes no v2 figure; its own SDK saw an
allowance header of 2,000 requests (window unconfirmed), and one call a second stays under it even if that
window were half an hour, while a 1,000-subscriber import call makes 60 a minute worth 60,000 subscribers.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from integration.models import Connection

ATTEMPTS = 5


def default_ceiling() -> int:
    return int(getattr(settings, "RULE_CALLS_PER_MINUTE", 60))


class RuleBudget(models.Model):
    """A connection's ceiling of Rule calls per minute and the moment its next call may start."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="rule_budget")
    calls_per_minute = models.PositiveIntegerField(default=default_ceiling)
    next_slot_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.connection.name}: {self.calls_per_minute} Rule calls a minute"

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=60 / max(self.calls_per_minute, 1))


def budget_for(connection: Connection | int) -> RuleBudget:
    connection_id = connection if isinstance(connection, int) else connection.pk
    budget, _ = RuleBudget.objects.get_or_create(connection_id=connection_id)
    return budget


def take(connection: Connection | int, now: datetime | None = None) -> float:
    """Take the next call slot: 0.0 when the call may start now, else the seconds until a slot is free."""
    for _ in range(ATTEMPTS):
        now = now or timezone.now()
        budget = budget_for(connection)
        previous = budget.next_slot_at
        start = max(previous or now, now)
        if start > now:
            return (start - now).total_seconds()
        rows = RuleBudget.objects.filter(pk=budget.pk)
        rows = rows.filter(next_slot_at__isnull=True) if previous is None else rows.filter(next_slot_at=previous)
        if rows.update(next_slot_at=start + budget.interval, updated_at=now):
            return 0.0
        now = None  # another worker took it first: look again
    return budget.interval.total_seconds()


def calls_per_minute(connection: Connection | int) -> int:
    return budget_for(connection).calls_per_minute
