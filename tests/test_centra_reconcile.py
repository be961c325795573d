"""Reconciliation: what Centra changed since the cursor is caught up once; the schedule and the command."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_q.models import Schedule

from integration.centra import client as client_module
from integration.centra.client import CentraQueryError, CentraUnavailable
from integration.models import Connection, Delivery, InboundEvent
from integration.processing.dispatch import process_inbound_event
from integration.processing.reconcile import SCHEDULE_FUNC, SCHEDULE_NAME, reconcile_connection, reconcile_due
from tests.factories import ConnectionFactory
from tests.fixtures.centra import centra_sample


def long_ago(days: int = 3) -> str:
    return (timezone.now() - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def deliveries(connection) -> list[tuple[str, str]]:
    return sorted(Delivery.objects.filter(connection=connection).values_list("event", "trigger"))


def test_reconciliation_catches_an_order_whose_webhook_never_came(centra_connection, fake_centra):
    # given an order confirmed in Centra, and no webhook about it
    fake_centra.add_order(centra_sample("orders", 10452))
    # when the connection is reconciled
    counts = reconcile_connection(centra_connection)
    # then OrderCompleted is stored as a reconcile delivery, traced to a reconcile inbound row
    assert counts["orders"] == 1 and counts["deliveries"] == 1
    assert deliveries(centra_connection) == [("OrderCompleted", "reconcile")]
    inbound = InboundEvent.objects.get(connection=centra_connection, source=InboundEvent.Source.RECONCILE)
    assert inbound.status == InboundEvent.Status.PROCESSED and inbound.object_ref == "10452"
    assert Delivery.objects.get(connection=centra_connection).inbound_event == inbound


def test_reconciliation_does_not_resend_what_a_webhook_already_sent(centra_connection, fake_centra):
    fake_centra.add_order(centra_sample("orders", 10452))
    row = InboundEvent.objects.create(
        connection=centra_connection,
        source="webhook",
        dedupe_key="w1",
        event_type="order",
        object_ref="10452",
        payload={"type": "order", "action": "update", "id": 10452},
    )
    process_inbound_event(row.pk)

    counts = reconcile_connection(centra_connection)
    again = reconcile_connection(centra_connection, since=timezone.now() - timedelta(hours=1))

    assert counts["orders"] == 1 and counts["deliveries"] == 0 and again["deliveries"] == 0
    assert deliveries(centra_connection) == [("OrderCompleted", "event")]
    assert not InboundEvent.objects.filter(source=InboundEvent.Source.RECONCILE).exists()


def test_shipments_and_returns_are_caught_up_too(centra_connection, fake_centra):
    # given an order shipped and refunded long ago, whose webhooks were all lost; the return completed now
    fake_centra.add_order({**centra_sample("orders", 10452), "status": "SHIPPED"})
    fake_centra.add_shipment(centra_sample("shipments", 3311))
    fake_centra.add_return({**centra_sample("returns", 415), "createdAt": long_ago()})
    counts = reconcile_connection(centra_connection)
    assert (counts["orders"], counts["shipments"], counts["returns"], counts["deliveries"]) == (1, 1, 1, 3)
    assert deliveries(centra_connection) == [
        ("OrderCompleted", "reconcile"),
        ("OrderShipped", "reconcile"),
        ("RefundCompleted", "reconcile"),
    ]


def test_first_run_looks_back_24_hours_and_the_cursor_moves_to_the_run_start(centra_connection, fake_centra):
    # given one order changed just now and one three days ago
    fake_centra.add_order({**centra_sample("orders", 10452), "updatedAt": long_ago(0)}, touch=False)
    old = {**centra_sample("orders", 10452), "number": 10400, "updatedAt": long_ago(3)}
    fake_centra.add_order(old, touch=False)
    before = timezone.now()

    counts = reconcile_connection(centra_connection)

    centra_connection.refresh_from_db()
    assert counts["orders"] == 1
    asked_from = timezone.datetime.fromisoformat(fake_centra.queries[0]["variables"]["from"])
    assert abs((asked_from - (before - timedelta(hours=24))).total_seconds()) < 2  # Centra takes whole seconds
    assert before <= centra_connection.reconcile_cursor <= timezone.now()
    assert centra_connection.last_reconcile_at == centra_connection.reconcile_cursor
    assert centra_connection.last_reconcile_error == ""

    # when it runs again, it starts at the cursor minus the 5-minute overlap
    fake_centra.queries.clear()
    reconcile_connection(centra_connection)
    asked_from = timezone.datetime.fromisoformat(fake_centra.queries[0]["variables"]["from"])
    expected = centra_connection.reconcile_cursor - timedelta(minutes=5)
    assert abs((asked_from - expected).total_seconds()) < 2


def test_changed_objects_are_read_page_by_page(centra_connection, fake_centra, monkeypatch):
    monkeypatch.setattr(client_module, "PAGE_SIZE", 2)
    base = centra_sample("orders", 10452)
    for number in range(30001, 30006):
        fake_centra.add_order({**base, "number": number, "id": f"h{number}"})

    counts = reconcile_connection(centra_connection)

    assert counts["orders"] == 5 and counts["deliveries"] == 5
    pages = [q["variables"]["page"] for q in fake_centra.queries if "OrdersChanged" in q["query"]]
    assert pages == [1, 2, 3]


def test_a_centra_error_is_recorded_and_the_cursor_stays(centra_connection, fake_centra):
    fake_centra.fail("expired_token", message="Unauthorized: API token has expired")
    with pytest.raises(CentraQueryError):
        reconcile_connection(centra_connection)
    centra_connection.refresh_from_db()
    assert centra_connection.reconcile_cursor is None
    assert centra_connection.last_reconcile_error == "Centra answered 401: Unauthorized: API token has expired"
    assert centra_connection.centra_last_error == centra_connection.last_reconcile_error

    fake_centra.fail("rate_limit", retry_after=5)
    with pytest.raises(CentraUnavailable):
        reconcile_connection(centra_connection)
    centra_connection.refresh_from_db()
    assert "429" in centra_connection.last_reconcile_error and centra_connection.reconcile_cursor is None

    reconcile_connection(centra_connection)
    centra_connection.refresh_from_db()
    assert centra_connection.last_reconcile_error == "" and centra_connection.reconcile_cursor is not None


def test_reconcile_due_runs_each_due_connection_with_a_token(centra_connection, fake_centra):
    now = timezone.now()
    recent = ConnectionFactory(
        centra_api_url=fake_centra.url, centra_api_token=fake_centra.token, last_reconcile_at=now - timedelta(minutes=3)
    )
    no_token = ConnectionFactory(centra_api_url=fake_centra.url, centra_api_token="")
    paused = ConnectionFactory(
        centra_api_url=fake_centra.url, centra_api_token=fake_centra.token, status=Connection.Status.PAUSED
    )
    stale = ConnectionFactory(
        centra_api_url=fake_centra.url,
        centra_api_token="wrong-token-123",
        last_reconcile_at=now - timedelta(minutes=11),
    )
    fake_centra.add_order(centra_sample("orders", 10452))

    results = reconcile_due()

    assert set(results) == {centra_connection.name, stale.name}
    assert results[centra_connection.name]["deliveries"] == 1
    assert results[stale.name].startswith("error: Centra answered 401")
    for other in (recent, no_token, paused):
        other.refresh_from_db()
    assert no_token.last_reconcile_at is None and paused.last_reconcile_at is None
    assert recent.last_reconcile_at == now - timedelta(minutes=3)
    # and right after, nothing is due
    assert reconcile_due() == {}


def test_the_reconcile_schedule_exists_once_even_when_migrating_again(db):
    from importlib import import_module

    migration = import_module("integration.migrations.0004_reconcile_schedule")
    migration.create(django_apps, None)
    schedules = Schedule.objects.filter(name=SCHEDULE_NAME)
    assert schedules.count() == 1
    assert schedules.get().func == SCHEDULE_FUNC and schedules.get().minutes == 1


def test_the_reconcile_command_backfills_and_prints_counts(centra_connection, fake_centra):
    fake_centra.add_order({**centra_sample("orders", 10452), "updatedAt": long_ago(3)}, touch=False)
    out = StringIO()
    since = (timezone.now() - timedelta(days=4)).date().isoformat()

    call_command("reconcile", centra_connection.name, "--since", since, stdout=out)

    counts = json.loads(out.getvalue())
    assert counts["orders"] == 1 and counts["deliveries"] == 1 and counts["since"].startswith(since)
    with pytest.raises(CommandError, match="No connection named"):
        call_command("reconcile", "nope")
    with pytest.raises(CommandError, match="not a date"):
        call_command("reconcile", centra_connection.name, "--since", "yesterday")
