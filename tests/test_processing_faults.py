"""Inbound processing under Centra's faults: nothing is locked while Centra is asked, an outage of hours is waited
out on the delivery schedule, a 429 waits for Centra's Retry-After, two workers never process one event at once."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from backinstock.models import Watcher
from integration import retry
from integration.models import Delivery, InboundEvent
from integration.processing.dispatch import process_inbound_event
from tests.backinstock.helpers import make_watchers
from tests.fixtures.centra import centra_sample


def webhook(connection, kind: str, ref: int) -> InboundEvent:
    return InboundEvent.objects.create(
        connection=connection,
        source=InboundEvent.Source.WEBHOOK,
        dedupe_key=f"webhook:{kind}:{ref}:{time.monotonic_ns()}",
        event_type=kind,
        object_ref=str(ref),
        payload={"type": kind, "action": "update", "id": ref},
    )


def stored(connection, event_type: str, payload: dict, source=InboundEvent.Source.EVENTS) -> InboundEvent:
    return InboundEvent.objects.create(
        connection=connection,
        source=source,
        dedupe_key=f"{event_type}:{time.monotonic_ns()}",
        event_type=event_type,
        payload=payload,
    )


def make_due(row: InboundEvent) -> None:
    InboundEvent.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())


def order_webhook(connection, fake_centra) -> InboundEvent:
    fake_centra.add_order({**centra_sample("orders", 10452), "status": "CONFIRMED"})
    return webhook(connection, "order", 10452)


def subscription(connection, fake_centra) -> InboundEvent:
    fake_centra.set_stock(23400, 0)
    return stored(connection, "BackInStockSubscribe", {"email": "anna@example.com", "item": "12366-23400"})


def catalogue_change(connection, fake_centra) -> InboundEvent:
    make_watchers(connection, "12366-23400", 1)
    fake_centra.set_stock(23400, 30)
    return stored(connection, "DisplayItems", {"key": "DisplayItems", "ids": [12366]}, InboundEvent.Source.WEBHOOK)


# ---------------------------------------------------------------- no transaction during the call


def write_now(inbound_id: int) -> float:
    """From another connection: lock the event's row (PostgreSQL) and write to the database; seconds it took.
    Fails at once (instead of waiting) when another transaction holds the row or SQLite's write lock."""
    started = time.monotonic()
    try:
        if db_connection.vendor == "sqlite":
            with db_connection.cursor() as cursor:
                cursor.execute("PRAGMA busy_timeout = 300")
        with transaction.atomic():
            rows = InboundEvent.objects.filter(pk=inbound_id)
            if db_connection.features.has_select_for_update_nowait:
                rows = rows.select_for_update(nowait=True)
            list(rows)
            InboundEvent.objects.filter(pk=inbound_id).update(duplicate_count=1)
    finally:
        db_connection.close()
    return time.monotonic() - started


@pytest.mark.parametrize(
    "make_event",
    [order_webhook, subscription, catalogue_change],
    ids=["order webhook", "back-in-stock product refresh", "back-in-stock stock check"],
)
def test_nothing_is_locked_while_centra_is_asked(transactional_db, centra_connection, fake_centra, make_event):
    # given an event whose processing asks Centra, and Centra taking 1.5 s to answer
    event = make_event(centra_connection, fake_centra)
    fake_centra.fail("slow", times=None, delay=1.5)
    worker = threading.Thread(target=lambda: (process_inbound_event(event.pk), db_connection.close()))

    # when a worker processes it, and something else writes to the database while Centra is being asked
    worker.start()
    deadline = time.monotonic() + 5
    while not fake_centra.queries and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fake_centra.queries, "the worker never asked Centra"
    took = write_now(event.pk)
    worker.join(timeout=10)

    # then that write went through at once (no row lock, no open transaction on the worker's side) ...
    assert took < 1.0
    # ... and the event was processed with what Centra said
    event.refresh_from_db()
    assert event.status in (InboundEvent.Status.PROCESSED, InboundEvent.Status.IGNORED), event.error
    assert event.lease_until is None


# ---------------------------------------------------------------- Centra down: the delivery schedule


def test_a_centra_outage_of_hours_is_waited_out_on_the_delivery_schedule(centra_connection, fake_centra):
    # given Centra answering 500 to the first seven tries (an outage of about 21 hours on the schedule)
    event = order_webhook(centra_connection, fake_centra)
    fake_centra.fail("server_error", times=len(retry.RETRY_DELAYS))

    waits = []
    for attempt in range(1, len(retry.RETRY_DELAYS) + 1):
        before = timezone.now()
        assert process_inbound_event(event.pk) == InboundEvent.Status.RECEIVED
        event.refresh_from_db()
        assert (event.process_attempts, "500" in event.error) == (attempt, True)
        waits.append((event.next_attempt_at - before).total_seconds())
        # not tried again before its time
        assert process_inbound_event(event.pk) == "not due"
        make_due(event)

    # then each wait was the schedule's step (with jitter), as deliveries wait for Rule
    for wait, step in zip(waits, retry.RETRY_DELAYS, strict=True):
        assert step * 0.8 - 1 <= wait <= step * 1.2 + 1
    # and when Centra is back, the eighth try delivers the event: nothing was lost
    assert process_inbound_event(event.pk) == InboundEvent.Status.PROCESSED
    assert list(Delivery.objects.values_list("event", flat=True)) == ["OrderCompleted"]


def test_an_event_fails_with_its_last_error_once_the_budget_is_spent(centra_connection, fake_centra):
    event = order_webhook(centra_connection, fake_centra)
    fake_centra.fail("server_error", times=None)
    for _ in range(retry.MAX_ATTEMPTS):
        process_inbound_event(event.pk)
        make_due(event)
    event.refresh_from_db()
    assert event.status == InboundEvent.Status.FAILED
    assert event.error.startswith(f"gave up after {retry.MAX_ATTEMPTS} attempts: Centra answered 500")


def test_centras_429_waits_for_its_retry_after_without_using_the_budget(centra_connection, fake_centra):
    # given Centra rate limiting with Retry-After: 600
    event = order_webhook(centra_connection, fake_centra)
    fake_centra.fail("rate_limit", retry_after=600)

    assert process_inbound_event(event.pk) == InboundEvent.Status.RECEIVED

    # then the event waits ten minutes, its budget untouched, and nobody asks Centra again before that
    event.refresh_from_db()
    assert event.process_attempts == 0
    assert 595 <= (event.next_attempt_at - timezone.now()).total_seconds() <= 600
    asked = len(fake_centra.queries)
    assert process_inbound_event(event.pk) == "not due"
    assert len(fake_centra.queries) == asked
    make_due(event)
    assert process_inbound_event(event.pk) == InboundEvent.Status.PROCESSED


def test_an_event_held_by_another_worker_is_left_to_it_until_its_lease_runs_out(centra_connection, fake_centra):
    event = order_webhook(centra_connection, fake_centra)
    InboundEvent.objects.filter(pk=event.pk).update(lease_until=timezone.now() + timedelta(seconds=30))
    assert process_inbound_event(event.pk) == "not due"
    assert fake_centra.queries == []

    # the worker holding it died: once the lease is over, the event is processed (and counted once more)
    InboundEvent.objects.filter(pk=event.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert process_inbound_event(event.pk) == InboundEvent.Status.PROCESSED
    event.refresh_from_db()
    assert (event.process_attempts, event.lease_until) == (1, None)


def test_a_product_refresh_centra_cannot_answer_never_blocks_the_subscription(rule_connection):
    # a connection with Centra configured but unreachable
    rule_connection.centra_api_url, rule_connection.centra_api_token = "http://127.0.0.1:9/graphql", "t"
    rule_connection.save()
    event = stored(rule_connection, "BackInStockSubscribe", {"email": "anna@example.com", "item": "12366-23400"})
    assert process_inbound_event(event.pk) == InboundEvent.Status.PROCESSED
    assert Watcher.objects.get().item == "12366-23400"
