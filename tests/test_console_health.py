"""A connection's health (integration.ops.health) and the hourly delivery counts it reads, against the fake Rule."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from integration.delivery import engine as delivery
from integration.models import Connection, DeliveryHour
from integration.ops import delivery_stats, health
from tests.factories import ConnectionFactory, DeliveryFactory, InboundEventFactory

pytestmark = pytest.mark.django_db

BODY = {
    "update_on_duplicate": True,
    "automation": "reset",
    "tags": ["OrderCompleted"],
    "subscribers": {"email": "anna@example.com", "fields": [{"key": "Order.Number", "value": "10452"}]},
}


def send(connection, n: int = 1, start: int = 0) -> list[str]:
    """Create and deliver n deliveries through the real engine; the outcomes."""
    outcomes = []
    for i in range(start, start + n):
        created = delivery.create_delivery(
            connection=connection,
            event="OrderShipped",
            body=BODY,
            email="anna@example.com",
            idempotency_key=f"OrderShipped:shipment:{i}",
        )
        outcomes.append(delivery.deliver(created.pk))
    return outcomes


def with_recent_event(connection, **kwargs):
    return InboundEventFactory(connection=connection, **kwargs)


def test_deliveries_are_counted_per_hour_as_they_finish(rule_connection, fake_rule):
    assert send(rule_connection, 3) == ["succeeded"] * 3
    fake_rule.fail(503, times=2)
    assert send(rule_connection, 2, start=10) == ["retry", "retry"]
    fake_rule.fail(400, times=1, body={"error": "BadRequest", "message": "email is invalid"})
    assert send(rule_connection, 1, start=20) == ["failed"]

    series = delivery_stats.hourly_series([rule_connection.pk], 24)[rule_connection.pk]
    assert series.totals() == {"succeeded": 3, "retrying": 2, "failed": 1}
    assert (series.succeeded[-1], series.retrying[-1], series.failed[-1]) == (3, 2, 1)
    assert sum(series.succeeded[:-1]) == 0
    last = delivery_stats.last_succeeded([rule_connection.pk])[rule_connection.pk]
    assert last is not None and timezone.now() - last < timedelta(minutes=1)


def test_rebuild_counts_what_the_engine_counted(rule_connection, fake_rule):
    send(rule_connection, 2)
    fake_rule.fail(503, times=1)
    send(rule_connection, 1, start=5)
    counted = list(DeliveryHour.objects.values_list("hour", "succeeded", "retrying", "failed"))
    DeliveryHour.objects.all().delete()
    assert delivery_stats.rebuild() == 1
    assert list(DeliveryHour.objects.values_list("hour", "succeeded", "retrying", "failed")) == counted


def test_a_connection_receiving_and_delivering_is_healthy(rule_connection):
    with_recent_event(rule_connection)
    send(rule_connection, 1)
    result = health.connection_health(rule_connection)
    assert (result.state, result.label, result.action) == ("healthy", "Healthy", "")


def test_rule_refusing_the_key_pauses_with_rules_reason_and_asks_to_verify_the_key(rule_connection, fake_rule):
    with_recent_event(rule_connection)
    fake_rule.fail(401, times=1)
    assert send(rule_connection, 1) == ["paused"]
    rule_connection.refresh_from_db()
    result = health.connection_health(rule_connection)
    assert result.state == "paused" and result.tone == "bad" and result.alerting
    assert "Rule refused the API key" in result.reason
    assert result.action == "verify_rule_key"
    assert result.since is not None and timezone.now() - result.since < timedelta(minutes=1)

    delivery.resume_connection(rule_connection)
    rule_connection.refresh_from_db()
    assert rule_connection.paused_at is None
    assert health.connection_health(rule_connection).state == "healthy"


def test_paused_by_a_person_offers_resume():
    conn = ConnectionFactory()
    with_recent_event(conn)
    delivery.pause_connection(conn, "paused by admin")
    result = health.connection_health(conn)
    assert (result.state, result.action, result.action_label) == ("paused", "resume", "Resume")


def test_no_signing_secret_is_said_loudly():
    conn = ConnectionFactory(signing_secrets="")
    result = health.connection_health(conn)
    assert result.state == "no_secret" and result.tone == "bad"
    assert "refused" in result.reason and result.action == "set_signing_secret"


def test_held_by_a_429_until_rules_time(rule_connection, fake_rule):
    with_recent_event(rule_connection)
    fake_rule.fail(429, times=1, retry_after="120")
    assert send(rule_connection, 1) == ["rate_limited"]
    rule_connection.refresh_from_db()
    result = health.connection_health(rule_connection)
    assert result.state == "held" and result.until == rule_connection.hold_until
    assert result.until > timezone.now() + timedelta(seconds=100)


@override_settings(ALERT_FAILURES_PER_HOUR=3)
def test_failing_when_failures_in_the_last_hour_reach_the_threshold(rule_connection, fake_rule):
    with_recent_event(rule_connection)
    fake_rule.fail(503, times=2)
    send(rule_connection, 2)
    assert health.connection_health(rule_connection).state == "healthy"
    send(rule_connection, 1, start=3)  # a success between: not 3 failures in a row (no breaker, no "Rule is down")
    fake_rule.fail(503, times=1)
    send(rule_connection, 1, start=5)
    result = health.connection_health(rule_connection)
    assert result.state == "failing" and result.action == "view_failed"
    assert result.reason.startswith("3 failed or retried attempts")


@override_settings(ALERT_FAILURES_PER_HOUR=1)
def test_failures_older_than_the_window_do_not_count():
    conn = ConnectionFactory()
    with_recent_event(conn)
    delivery_stats.record(conn.pk, "failed", timezone.now() - timedelta(hours=3))
    assert health.connection_health(conn).state == "healthy"
    delivery_stats.record(conn.pk, "failed")
    assert health.connection_health(conn).state == "failing"


def test_centra_errors_point_at_the_token():
    conn = ConnectionFactory(last_reconcile_error="401 Unauthorized: token rejected")
    with_recent_event(conn)
    result = health.connection_health(conn)
    assert result.state == "centra_error" and "token rejected" in result.reason
    assert result.action == "verify_centra_token"


def test_no_traffic_for_longer_than_usual():
    conn = ConnectionFactory()
    assert health.connection_health(conn).reason == "No event received yet."
    now = timezone.now()
    # An event every 10 minutes for a day, then silence for 3 hours.
    for i in range(144):
        InboundEventFactory(connection=conn, received_at=now - timedelta(hours=3, minutes=10 * i))
    result = health.connection_health(conn)
    assert result.state == "quiet" and result.tone == "idle"
    assert result.reason.startswith("No event for 3 h") and "usually one every 10 min" in result.reason
    InboundEventFactory(connection=conn, received_at=now - timedelta(minutes=5))
    assert health.connection_health(conn).state == "healthy"


def test_a_quiet_shop_is_not_flagged_for_its_usual_silence():
    conn = ConnectionFactory()
    now = timezone.now()
    for i in range(7):  # one event a day
        InboundEventFactory(connection=conn, received_at=now - timedelta(hours=20 + 24 * i))
    assert health.connection_health(conn).state == "healthy"


def test_the_worst_problem_wins():
    conn = ConnectionFactory(signing_secrets="", last_reconcile_error="boom")
    assert health.connection_health(conn).state == "no_secret"
    delivery.pause_connection(conn, "paused by admin")
    assert health.connection_health(conn).state == "paused"


def test_overview_reads_hours_and_backlog_without_scanning(rule_connection, fake_rule):
    with_recent_event(rule_connection)
    send(rule_connection, 2)
    DeliveryFactory(
        connection=rule_connection, idempotency_key="waiting", next_attempt_at=timezone.now() - timedelta(minutes=1)
    )
    other = ConnectionFactory(status=Connection.Status.PAUSED, paused_reason="paused by admin")
    rows = {row.connection.name: row for row in health.overview()}
    mine = rows[rule_connection.name]
    assert mine.health.state == "healthy"
    assert mine.backlog_due == 1
    assert mine.day.totals()["succeeded"] == 2 and mine.week.hours == 168 and mine.day.hours == 24
    assert mine.last_success_at is not None and mine.last_event_at is not None
    assert rows[other.name].health.state == "paused" and rows[other.name].backlog_due == 0


def test_purge_drops_hour_counts_older_than_the_retention():
    from integration.ops.retention import purge

    conn = ConnectionFactory()
    delivery_stats.record(conn.pk, "succeeded", timezone.now() - timedelta(days=100))
    delivery_stats.record(conn.pk, "succeeded")
    assert purge(days=90)["delivery_hours_deleted"] == 1
    assert DeliveryHour.objects.count() == 1
