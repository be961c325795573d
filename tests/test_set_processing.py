"""Set-based processing (dispatch.process_inbound_events, outbox.create_deliveries): a chunk of stored events gives
exactly the deliveries and outcomes that processing them one by one gives."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import TestCase
from django.utils import timezone

from integration import catalog, tombstones
from integration.delivery import engine
from integration.delivery.outbox import DeliverySpec, create_deliveries
from integration.models import Delivery, InboundEvent
from integration.processing import dispatch, emit
from integration.processing.dispatch import process_inbound_event, process_inbound_events
from tests.factories import ConnectionFactory, InboundEventFactory

GOLDEN = Path(__file__).resolve().parent / "data" / "orders"


def golden_events() -> list[tuple[str, dict]]:
    """(type, payload) of every realistic JSON document in tests/data/orders."""
    found = []
    for path in sorted(GOLDEN.glob("*.json")):
        case = json.loads(path.read_text())
        if case["event"] in catalog.json_event_types():
            found.append((case["event"], case["payload"]))
    return found


def store_mix(connections) -> list[int]:
    """A realistic backlog: every golden document on every connection, the same order twice (one delivery per
    object), a payload the mapping cannot read (fails with the reason) and an event whose flow is off."""
    ids = []
    for conn in connections:
        for event_type, payload in golden_events():
            ids.append(InboundEventFactory(connection=conn, event_type=event_type, payload=payload).pk)
            if event_type == "OrderCompleted":  # the same object again: each logical event reaches Rule once
                ids.append(InboundEventFactory(connection=conn, event_type=event_type, payload=payload).pk)
        ids.append(
            InboundEventFactory(connection=conn, event_type="OrderCompleted", payload=["not", "an", "object"]).pk
        )
    connections[0].flows.filter(event="Newsletter").update(enabled=False)
    return ids


def outcome() -> tuple[list, list]:
    """Every delivery (what Rule will get) and every event's outcome, independent of ids and timing."""
    deliveries = sorted(
        (
            d.connection_id,
            d.event,
            d.idempotency_key,
            d.email,
            d.order_number,
            json.dumps(d.request_body, sort_keys=True),
            d.status,
            d.trigger,
            d.notes,
            d.inbound_event.dedupe_key if d.inbound_event else None,
        )
        for d in Delivery.objects.select_related("inbound_event")
    )
    events = sorted(
        (e.dedupe_key, e.status, e.error, e.lease_until is None, e.process_attempts, e.processed_at is not None)
        for e in InboundEvent.objects.all()
    )
    return deliveries, events


def reset(ids):
    Delivery.objects.all().delete()
    InboundEvent.objects.filter(pk__in=ids).update(
        status=InboundEvent.Status.RECEIVED, error="", processed_at=None, lease_until=None, process_attempts=0
    )


@pytest.mark.django_db
def test_a_chunk_gives_exactly_the_deliveries_and_outcomes_of_one_by_one_processing():
    connections = [ConnectionFactory(), ConnectionFactory(manual_confirmation=True)]
    ids = store_mix(connections)

    with TestCase.captureOnCommitCallbacks(execute=False):
        for pk in ids:
            process_inbound_event(pk)
    one_by_one = outcome()
    reset(ids)
    with TestCase.captureOnCommitCallbacks(execute=False):
        counts = process_inbound_events(ids)
    chunked = outcome()

    assert chunked == one_by_one
    deliveries, events = chunked
    # and the mix was what it claims: deliveries on both connections, a duplicate, a failure, an ignored event
    assert {d[0] for d in deliveries} == {c.pk for c in connections}
    statuses = [e[1] for e in events]
    assert statuses.count("failed") == 2 and "ignored" in statuses
    assert counts["processed"] == statuses.count("processed")
    assert len(deliveries) < statuses.count("processed")  # the repeated order made no second delivery


@pytest.mark.django_db
def test_new_deliveries_are_announced_once_committed(monkeypatch):
    announced = []
    monkeypatch.setattr(engine, "announce", lambda ids: announced.append(list(ids)))
    conn = ConnectionFactory()
    ids = [InboundEventFactory(connection=conn, event_type=t, payload=p).pk for t, p in golden_events()]

    with TestCase.captureOnCommitCallbacks(execute=True):
        process_inbound_events(ids)
        assert announced == []  # nothing is announced before the commit

    assert announced == [sorted(Delivery.objects.values_list("pk", flat=True))]
    assert len(announced[0]) >= 5


@pytest.mark.django_db
def test_create_deliveries_skips_known_and_repeated_keys_silently(connection):
    def spec(key, email="anna@example.com"):
        return DeliverySpec(
            connection_id=connection.pk,
            event="OrderCompleted",
            body={"x": key},
            email=email,
            idempotency_key=key,
            notes=["a note"],
        )

    with TestCase.captureOnCommitCallbacks(execute=False):
        first = create_deliveries([spec("k1"), spec("k2")])
        second = create_deliveries([spec("k2", "other@example.com"), spec("k3"), spec("k3", "third@example.com")])

    assert set(first) == {(connection.pk, "k1"), (connection.pk, "k2")}
    assert set(second) == {(connection.pk, "k3")}
    rows = {d.idempotency_key: d for d in Delivery.objects.all()}
    assert sorted(rows) == ["k1", "k2", "k3"]
    assert rows["k2"].email == "anna@example.com" and rows["k3"].email == "anna@example.com"
    assert rows["k1"].status == "pending" and rows["k1"].notes == "a note" and rows["k1"].next_attempt_at


@pytest.mark.django_db
def test_one_event_failing_in_planning_leaves_the_others_of_its_chunk_processed(monkeypatch):
    conn = ConnectionFactory()
    good = [
        InboundEventFactory(connection=conn, event_type="Newsletter", payload={"email": f"n{n}@example.com"})
        for n in range(5)
    ]
    bad = InboundEventFactory(connection=conn, event_type="Newsletter", payload={"email": "crash@example.com"})
    real_map = emit.map_event

    def flaky_map(event, payload, ctx):  # a passing fault (e.g. a bug hit by one odd document)
        if payload.get("email") == "crash@example.com":
            raise RuntimeError("boom")
        return real_map(event, payload, ctx)

    monkeypatch.setattr(emit, "map_event", flaky_map)
    with TestCase.captureOnCommitCallbacks(execute=False):
        counts = process_inbound_events([bad.pk, *(e.pk for e in good)])

    assert counts == {"processed": 5, "received": 1}
    bad.refresh_from_db()
    assert bad.status == "received" and "RuntimeError: boom" in bad.error
    assert bad.next_attempt_at > timezone.now() and bad.lease_until is None
    assert Delivery.objects.count() == 5


@pytest.mark.django_db
def test_a_forgotten_subscriber_is_ignored_in_a_chunk_as_alone(connection):
    payload = {"email": "gone@example.com", "language": "sv"}
    tombstones.bury("gone@example.com", connection, timezone.now())
    old = InboundEventFactory(
        connection=connection, event_type="Newsletter", payload=payload, occurred_at=timezone.now() - timedelta(days=1)
    )
    kept = InboundEventFactory(connection=connection, event_type="Newsletter", payload={"email": "here@example.com"})

    with TestCase.captureOnCommitCallbacks(execute=False):
        assert process_inbound_events([old.pk, kept.pk]) == {"ignored": 1, "processed": 1}

    old.refresh_from_db()
    assert old.status == "ignored" and old.error.startswith("dropped: about a subscriber erased")
    assert list(Delivery.objects.values_list("email", flat=True)) == ["here@example.com"]


@pytest.mark.django_db
def test_a_chunk_claim_is_exclusive_until_its_lease_runs_out(connection):
    ids = [
        InboundEventFactory(connection=connection, event_type="Newsletter", payload={"email": f"r{n}@example.com"}).pk
        for n in range(5)
    ]

    first = dispatch._claim_many(ids)
    assert [e.pk for e in first] == ids
    assert dispatch._claim_many(ids) == []  # a second worker gets none of them
    with TestCase.captureOnCommitCallbacks(execute=False):
        assert process_inbound_events(ids) == {"not due": 5}

    InboundEvent.objects.filter(pk__in=ids[:2]).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert [e.pk for e in dispatch._claim_many(ids)] == ids[:2]  # an expired lease: taken over

    # the first worker's outcome is recorded only for the events it still holds
    with TestCase.captureOnCommitCallbacks(execute=False):
        counts = dispatch._process_planned([(e, dispatch._plans[dispatch.handler_for(e)]) for e in first])
    assert counts == {"processed": 3, "not due": 2}
    assert Delivery.objects.count() == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    "postgresql" not in settings.DATABASES["default"]["ENGINE"], reason="two concurrent database sessions"
)
def test_two_workers_on_the_same_chunk_process_each_event_once():
    conn = ConnectionFactory()
    ids = [
        InboundEventFactory(connection=conn, event_type="Newsletter", payload={"email": f"w{n}@example.com"}).pk
        for n in range(60)
    ]
    start, results = threading.Barrier(2), []

    def worker():
        from django.db import connection as thread_connection

        try:
            start.wait()
            results.append(process_inbound_events(ids))
        finally:
            thread_connection.close()

    engine_announce = engine.announce
    engine.announce = lambda ids: None
    try:
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        engine.announce = engine_announce

    assert sum(r.get("processed", 0) for r in results) == 60
    assert Delivery.objects.count() == 60
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert set(InboundEvent.objects.values_list("process_attempts", flat=True)) == {1}
