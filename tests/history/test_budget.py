"""Rule's call budget per connection: paced calls (one every 60/ceiling seconds), shared by every worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from integration.history import runner
from integration.history.models import HistoryBatch
from integration.rule import budget
from tests.history.conftest import START
from tests.history.test_history_import import import_calls

pytestmark = pytest.mark.django_db


def test_calls_are_paced_at_the_ceiling(connection, settings):
    settings.RULE_CALLS_PER_MINUTE = 120  # one call every half second
    now = timezone.now()
    assert budget.take(connection, now) == 0.0
    # a second worker asking at the same moment waits for the next slot
    assert budget.take(connection, now) == pytest.approx(0.5)
    assert budget.take(connection, now + timedelta(milliseconds=200)) == pytest.approx(0.3)
    assert budget.take(connection, now + timedelta(milliseconds=500)) == 0.0
    # an idle budget does not save up a burst: after a quiet minute, still one call per slot
    later = now + timedelta(minutes=1)
    assert budget.take(connection, later) == 0.0
    assert budget.take(connection, later) == pytest.approx(0.5)


def test_each_connection_has_its_own_budget(settings):
    from tests.factories import ConnectionFactory

    settings.RULE_CALLS_PER_MINUTE = 60
    one, two = ConnectionFactory(), ConnectionFactory()
    now = timezone.now()
    assert budget.take(one, now) == 0.0
    assert budget.take(two, now) == 0.0
    assert budget.take(one, now) == pytest.approx(1.0)


def test_an_import_keeps_to_the_budget(
    importing, history, fake_rule, worker, settings, django_capture_on_commit_callbacks
):
    settings.RULE_CALLS_PER_MINUTE = 20  # one call every 3 s
    with django_capture_on_commit_callbacks(execute=True):
        runner.start(importing, START, ["orders"])
    worker.drain()

    starts = list(HistoryBatch.objects.order_by("number").values_list("started_at", flat=True))
    assert len(starts) == len(import_calls(fake_rule)) >= 3
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert min(gaps) >= 2.95  # each call starts at least 3 s after the one before


def test_an_import_call_answered_after_an_outage_closes_the_breaker(
    importing, history, fake_rule, worker, django_capture_on_commit_callbacks
):
    # Given Rule failed long enough for the breaker to open, and its next check is due
    budget.budget_for(importing)
    now = timezone.now()
    budget.RuleBudget.objects.filter(connection=importing).update(
        breaker_opened_at=now - timedelta(minutes=2), next_probe_at=now, probe_backoff=60, failures_in_row=6
    )
    # When an import runs (its first call is the breaker's check, and Rule answers it)
    with django_capture_on_commit_callbacks(execute=True):
        runner.start(importing, START, ["orders"])
    worker.drain()

    # Then the breaker is closed and the import went on at its pace, not one call per check
    state = budget.budget_for(importing)
    assert (state.breaker_opened_at, state.failures_in_row) == (None, 0)
    assert len(import_calls(fake_rule)) >= 3
