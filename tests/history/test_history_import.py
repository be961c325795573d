"""The history import end to end: a generated Centra history read from the fake Centra over HTTP, sent to the
fake Rule in batches, with the steps run from the task queue as a worker runs them."""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest
from django.utils import timezone

from integration.history import runner
from integration.history.models import HistoryBatch, HistoryImport, HistoryItem
from integration.inbound.signature import HEADER, sign
from integration.models import Delivery, InboundEvent
from integration.processing import emit
from integration.processing.dispatch import process_inbound_event
from integration.sandbox.fake_centra import webhook_event
from tests.history.conftest import START

pytestmark = pytest.mark.django_db


def import_calls(fake_rule) -> list[dict]:
    """The bodies of every batch call Rule received (the import's calls; live ones carry one subscriber)."""
    return [
        r["json"]
        for r in fake_rule.requests
        if r["path"] == "/api/v2/subscribers" and isinstance(r["json"].get("subscribers"), list)
    ]


def fields_of(entry: dict) -> dict:
    return {f["key"]: f["value"] for f in entry.get("fields", [])}


def expected_event(history, number: int) -> str | None:
    """What the merchant expects an order to arrive as, read straight from the generated history's state:
    cancelled orders not at all, a completed return as RefundCompleted (refunded or not: ReturnCompleted's flow is
    off by default), a shipped order as OrderShipped, the rest as OrderCompleted."""
    state = history.state(number)
    if state.status == "CANCELLED":
        return None
    if state.return_status == "COMPLETED":
        return "RefundCompleted"
    return "OrderShipped" if state.shipped else "OrderCompleted"


def start(connection, capture, kinds=("orders",)) -> HistoryImport:
    with capture(execute=True):
        return runner.start(connection, START, list(kinds), started_by="test")


def test_every_order_is_imported_once_with_its_flows_tag_and_fields_and_no_automation(
    importing, history, fake_rule, worker, django_capture_on_commit_callbacks
):
    run = start(importing, django_capture_on_commit_callbacks)
    worker.drain()

    run.refresh_from_db()
    assert run.status == HistoryImport.Status.FINISHED
    calls = import_calls(fake_rule)
    # Rule's bulk rules: at most 1,000 a call, no automation, and Rule accepted every call
    assert all(c["automation"] is False and c["sync_subscribers"] is False for c in calls)
    assert all(len(c["subscribers"]) <= 1000 for c in calls)
    assert all(r["status"] == 200 for r in fake_rule.requests)
    assert fake_rule.automations_started == []
    # each order exactly once, with the tag its state stands for (tags-only entries are counted by email and tag)
    expected = Counter()
    newest: dict[str, int] = {}
    for number in history.numbers():
        event = expected_event(history, number)
        if event is not None:
            email = history.order(number)["customer"]["email"]
            expected[(email, event)] += 1
            newest[email] = number
    got = Counter((s["email"], c["tags"][0]) for c in calls for s in c["subscribers"])
    assert got == expected
    numbers = [fields_of(s)["Order.Number"] for c in calls for s in c["subscribers"] if s.get("fields")]
    assert len(numbers) == len(set(numbers))
    # the fields are exactly what the live flow sends for the same order (one of each event checked in full)
    by_number = {
        fields_of(s)["Order.Number"]: (c["tags"][0], s) for c in calls for s in c["subscribers"] if s.get("fields")
    }
    for event in ("OrderCompleted", "OrderShipped", "RefundCompleted"):
        number, (_, entry) = next((n, v) for n, v in by_number.items() if v[0] == event)
        order = history.order(int(number))
        if event == "OrderCompleted":
            payload = {"order": order}
        elif event == "OrderShipped":
            payload = {"shipment": {**order["shipments"][-1], "order": order}}
        else:
            payload = {"return": {**history.returns(int(number))[0], "order": order}}
        live = emit.render(importing, event, payload).body
        assert live["tags"] == [event] and live["automation"] == "reset"
        assert entry == live["subscribers"]
    # and in Rule every customer ends with the fields of their newest order (older ones never overwrite them)
    for email, number in list(newest.items())[:300]:
        assert fake_rule.subscriber(email)["fields"]["Order.Number"]["value"] == str(number)
    # calls: well under one per 500 orders
    assert run.calls == len(calls) <= len(history.numbers()) / 500
    assert run.sent == sum(expected.values())
    assert run.skip_reasons == {"cancelled order": len(history.numbers()) - run.sent}


def test_customers_and_newsletter_subscribers_arrive_with_their_tags(
    importing, history, fake_rule, worker, django_capture_on_commit_callbacks
):
    importing.flows.filter(event="CustomerRegistered").update(enabled=True, tags=["Customer", "Imported"])
    run = start(importing, django_capture_on_commit_callbacks, kinds=("customers", "newsletter"))
    worker.drain()

    calls = import_calls(fake_rule)
    customers = [s for c in calls if c["tags"] == ["Customer", "Imported"] for s in c["subscribers"]]
    assert len(customers) == history.customer_count
    anna = history.customer(1)
    [entry] = [s for s in customers if s["email"] == anna["email"]]
    assert fields_of(entry)["Customer.Firstname"] == anna["firstName"]
    newsletter = [s for c in calls if c["tags"] == ["Newsletter"] for s in c["subscribers"]]
    active = [history.newsletter(i) for i in range(1, history.newsletter_count + 1)]
    assert sorted(s["email"] for s in newsletter) == sorted(n["email"] for n in active if n["isActive"])
    run.refresh_from_db()
    assert run.skip_reasons == {"unsubscribed": sum(1 for n in active if not n["isActive"])}
    assert fake_rule.automations_started == []


def test_a_live_event_during_an_import_waits_for_one_batch_at_most(
    importing, history, fake_rule, worker, client, django_capture_on_commit_callbacks
):
    importing.signing_secrets = "whsec-history"
    importing.save()
    start(importing, django_capture_on_commit_callbacks)
    worker.run_one()  # the import is under way: its first batch is in Rule
    assert len(import_calls(fake_rule)) == 1

    # a shopper completes an order now
    raw = json.dumps(
        {
            "id": f"live-{uuid.uuid4().hex}",
            "type": "OrderCompleted",
            "occurredAt": "2026-12-01T10:00:00Z",
            "order": {"number": 990001, "customer": {"email": "live.shopper@example.com"}, "status": "CONFIRMED"},
        }
    ).encode()
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            importing.events_url(base=""),
            data=raw,
            content_type="application/json",
            headers={HEADER: sign("whsec-history", raw)},
        )
    assert answer.status_code == 200, answer.content
    calls_before = len(import_calls(fake_rule))
    worker.drain()

    paths = [
        "import" if isinstance(r["json"].get("subscribers"), list) else r["json"]["subscribers"]["email"]
        for r in fake_rule.requests
        if r["method"] == "POST"
    ]
    live_at = paths.index("live.shopper@example.com")
    assert paths[:live_at].count("import") - calls_before <= 1
    # the live order starts its automation as always; the import still finishes
    assert any(tag == "OrderCompleted" for _, tag in fake_rule.automations_started)
    assert HistoryImport.objects.get().status == HistoryImport.Status.FINISHED


def test_an_imported_order_triggers_its_live_flow_only_for_what_happens_afterwards(
    importing, history, fake_rule, fake_centra, worker, django_capture_on_commit_callbacks
):
    start(importing, django_capture_on_commit_callbacks)
    worker.drain()
    imported = Delivery.objects.count()
    shipped = next(n for n in history.numbers() if expected_event(history, n) == "OrderShipped")
    waiting = next(n for n in history.numbers() if expected_event(history, n) == "OrderCompleted")

    # Centra says the shipped order changed (an address fix): nothing goes again
    row = webhook(importing, "order", shipped)
    process_inbound_event(row.pk)
    # the order that was waiting is shipped next week: its OrderShipped goes live, with its automation
    order = history.order(waiting)
    fake_centra.add_order(order)
    fake_centra.add_shipment(
        {**history_shipment(order), "id": 777001, "number": f"{waiting}-1", "order": {"number": waiting}}
    )
    with django_capture_on_commit_callbacks(execute=True):
        process_inbound_event(webhook(importing, "shipment", 777001).pk)
    worker.drain()

    deliveries = list(Delivery.objects.values_list("event", "order_number", "status"))
    assert len(deliveries) == imported + 1
    assert ("OrderShipped", str(waiting), "succeeded") in deliveries
    assert not Delivery.objects.filter(order_number=str(shipped)).exists()


def history_shipment(order: dict) -> dict:
    return {
        "isShipped": True,
        "isGoodToGo": True,
        "trackingNumber": "00370999",
        "carrierInformation": {"carrierName": "PostNord", "serviceName": "MyPack"},
        "lines": [],
    }


def webhook(connection, kind: str, ref: int) -> InboundEvent:
    event = webhook_event(kind, ref)
    return InboundEvent.objects.create(
        connection=connection,
        source=InboundEvent.Source.WEBHOOK,
        dedupe_key=f"webhook:{kind}:{ref}:{uuid.uuid4().hex}",
        event_type=kind,
        object_ref=str(ref),
        payload=event,
    )


def test_an_order_delivered_live_is_not_imported_again(
    importing, history, fake_rule, worker, django_capture_on_commit_callbacks
):
    number = next(n for n in history.numbers() if expected_event(history, n) == "OrderShipped")
    with django_capture_on_commit_callbacks(execute=True):
        process_inbound_event(webhook(importing, "order", number).pk)  # the live path delivered its OrderCompleted
    worker.drain()
    assert Delivery.objects.filter(order_number=str(number), status="succeeded").exists()

    start(importing, django_capture_on_commit_callbacks)
    worker.drain()

    numbers = [fields_of(s).get("Order.Number") for c in import_calls(fake_rule) for s in c["subscribers"]]
    assert str(number) not in numbers
    assert HistoryImport.objects.get().skip_reasons.get("already delivered live") == 1


def test_cancel_stops_within_one_batch_and_keeps_the_record(
    importing, history, fake_rule, worker, django_capture_on_commit_callbacks
):
    run = start(importing, django_capture_on_commit_callbacks)
    worker.run_one()
    with django_capture_on_commit_callbacks(execute=True):
        assert runner.cancel(run)
    worker.drain()

    assert len(import_calls(fake_rule)) == 1
    run.refresh_from_db()
    assert run.status == HistoryImport.Status.CANCELLED and run.sent == 1000 and run.finished_at
    assert not HistoryItem.objects.filter(status__in=["pending", "claimed"]).exists()
    # what was sent stays known as imported: a new import skips it
    run2 = start(importing, django_capture_on_commit_callbacks)
    worker.drain()
    run2.refresh_from_db()
    assert run2.status == HistoryImport.Status.FINISHED
    assert run2.skip_reasons["imported before"] == 1000
    assert run.sent + run2.sent == sum(1 for n in history.numbers() if expected_event(history, n))


def test_pause_and_resume(importing, history, fake_rule, worker, django_capture_on_commit_callbacks):
    run = start(importing, django_capture_on_commit_callbacks)
    worker.run_one()
    with django_capture_on_commit_callbacks(execute=True):
        runner.pause(run)
    worker.drain()
    assert len(import_calls(fake_rule)) == 1 and run.status == HistoryImport.Status.PAUSED
    with django_capture_on_commit_callbacks(execute=True):
        assert runner.resume(run)
    worker.drain()
    run.refresh_from_db()
    assert run.status == HistoryImport.Status.FINISHED
    assert run.sent == sum(1 for n in history.numbers() if expected_event(history, n))


def test_rule_refusing_one_subscriber_fails_only_that_one(
    importing, history, fake_rule, worker, django_capture_on_commit_callbacks
):
    run = start(importing, django_capture_on_commit_callbacks)
    fake_rule.fail(
        400, body={"error": "BadRequest", "message": "Invalid email", "fields": {"subscribers.3.email": ["invalid"]}}
    )
    worker.drain()

    run.refresh_from_db()
    assert run.status == HistoryImport.Status.FINISHED and run.failed == 1
    failed = HistoryItem.objects.get(primary=True, status="failed")
    assert "Invalid email" in failed.error
    assert HistoryBatch.objects.get(number=1).size == 999


def test_a_rule_outage_waits_and_then_sends_the_same_batch(
    importing, history, fake_rule, worker, django_capture_on_commit_callbacks
):
    run = start(importing, django_capture_on_commit_callbacks)
    fake_rule.fail(503, times=1)
    worker.drain()
    run.refresh_from_db()
    assert run.status == HistoryImport.Status.RUNNING and run.next_step_at and "503" in run.last_error
    HistoryImport.objects.filter(pk=run.pk).update(next_step_at=None)  # the wait is over: the tick enqueues it
    with django_capture_on_commit_callbacks(execute=True):
        assert runner.tick() == 1
    worker.drain()
    run.refresh_from_db()
    assert run.status == HistoryImport.Status.FINISHED
    batch = HistoryBatch.objects.get(number=1)
    assert batch.attempts == 2 and batch.status == "sent"
    assert len(import_calls(fake_rule)) == run.calls  # the call answered 503 counted too


def test_live_work_goes_first_but_cannot_hold_the_import_forever(
    importing, history, fake_rule, worker, django_capture_on_commit_callbacks
):
    run = start(importing, django_capture_on_commit_callbacks)
    # a delivery is due and never leaves (its connection's worker is elsewhere): the import waits a few steps only
    Delivery.objects.create(
        connection=importing,
        event="OrderCompleted",
        idempotency_key="OrderCompleted:order:elsewhere",
        email="elsewhere@example.com",
        request_body={},
        next_attempt_at=timezone.now(),
    )
    outcomes = [worker.run_one()[1] for _ in range(runner.MAX_LIVE_YIELDS + 1)]
    assert outcomes[: runner.MAX_LIVE_YIELDS] == ["live traffic first"] * runner.MAX_LIVE_YIELDS
    assert outcomes[-1].startswith("sent batch 1")
    run.refresh_from_db()
    assert run.live_yields == 0 and len(import_calls(fake_rule)) == 1
