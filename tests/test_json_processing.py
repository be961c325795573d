"""JSON catalog events from the signed endpoint to Rule: stored, processed, delivered, exactly as the golden bodies."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from integration import catalog
from integration.mapping import MappingContext
from integration.models import Delivery, InboundEvent
from integration.processing.dispatch import handler_for, process_inbound_event
from integration.processing.json_events import process_json_catalog_event
from tests.factories import ConnectionFactory, InboundEventFactory
from tests.fixtures.common import post_signed_events

GOLDEN = Path(__file__).resolve().parent / "data" / "orders"
JSON_GOLDEN = [
    p.name for p in sorted(GOLDEN.glob("*.json")) if json.loads(p.read_text())["event"] in catalog.json_event_types()
]
SECRET = "whsec-e2e"


def connection_for_case(case: dict, fake_rule):
    """A connection with the golden case's mapping settings, its flow as the case says, pointing at fake Rule
    (in manual-confirmation mode for OrderPlaced, the only mode that sends it)."""
    defaults = {f.name: f.default for f in dataclasses.fields(MappingContext) if f.default is not dataclasses.MISSING}
    defaults["tracking_link_templates"] = {}
    connection = ConnectionFactory(
        rule_api_url=fake_rule.url,
        rule_api_key=fake_rule.api_key,
        signing_secrets=SECRET,
        manual_confirmation=catalog.EVENTS[case["event"]].manual_mode_only,
        **(defaults | case["context"]),
    )
    connection.flows.filter(event=case["event"]).update(enabled=True, **case["flow"])
    return connection


def _as_list(subscribers) -> list[dict]:
    return subscribers if isinstance(subscribers, list) else [subscribers]


def subscriber_posts(fake_rule) -> list[dict]:
    return [r for r in fake_rule.requests if (r["method"], r["path"]) == ("POST", "/api/v2/subscribers")]


@pytest.mark.parametrize("name", JSON_GOLDEN)
def test_a_signed_json_event_reaches_rule_exactly(name, client, fake_rule, task_queue):
    # Given a connection set up like the golden case and its payload sent as a signed JSON event
    case = json.loads((GOLDEN / name).read_text())
    connection = connection_for_case(case, fake_rule)
    event = {"id": f"golden-{name}", "type": case["event"], "occurredAt": "2026-03-14T18:42:05Z", **case["payload"]}
    response = post_signed_events(client, connection, event)
    assert response.status_code == 200, response.json()

    # When the worker processes and delivers it
    task_queue.drain()

    # Then Rule received exactly the reviewed body, once (order events may add the cart tag removal after it)
    [request] = subscriber_posts(fake_rule)
    assert request["json"] == case["expected_body"]
    assert all(r["method"] == "DELETE" and "/tags/" in r["path"] for r in fake_rule.requests[1:])
    inbound = InboundEvent.objects.get()
    assert inbound.status == "processed"
    delivery = inbound.deliveries.get(event=case["event"])
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert delivery.request_body == case["expected_body"]


def test_the_same_order_event_sent_twice_with_new_ids_reaches_rule_once(client, fake_rule, task_queue):
    # Given the storefront sends OrderCompleted for one order twice (a retry with a fresh event id)
    case = json.loads((GOLDEN / "order_completed_us.json").read_text())
    connection = connection_for_case(case, fake_rule)
    for event_id in ("first", "second"):
        event = {"id": event_id, "type": "OrderCompleted", "occurredAt": "2026-03-14T18:42:05Z", **case["payload"]}
        post_signed_events(client, connection, event)
    task_queue.drain()
    assert len(subscriber_posts(fake_rule)) == 1
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {"processed"}


def test_the_longest_carts_the_door_accepts_are_delivered_each(client, fake_rule, task_queue):
    # Given two abandoned carts with the longest email (254) and selection id (200) the door accepts, differing
    # only in the last character of the selection: their delivery keys are longer than the column
    connection = ConnectionFactory(rule_api_url=fake_rule.url, rule_api_key=fake_rule.api_key, signing_secrets=SECRET)
    email = "a" * 64 + "@" + "b" * 60 + "." + "c" * 60 + "." + "d" * 63 + ".com"
    assert len(email) == 254
    for n, selection in enumerate(("s" * 199 + "1", "s" * 199 + "2")):
        event = {
            "id": f"cart-{n}",
            "type": "OrderCreated",
            "occurredAt": "2026-03-14T18:42:05Z",
            "email": email,
            "selection": selection,
            "order": {"lines": [{"productName": "Tee", "quantity": 1}]},
        }
        response = post_signed_events(client, connection, event)
        assert response.status_code == 200, response.json()
    task_queue.drain()
    # Then each cart is its own delivery, and both reach Rule
    keys = list(Delivery.objects.values_list("idempotency_key", flat=True))
    assert len(set(keys)) == 2 and all(len(key) <= 255 for key in keys)
    # (one call when both wait at once: two subscribers of one envelope)
    sent = [s for r in subscriber_posts(fake_rule) for s in _as_list(r["json"]["subscribers"])]
    assert len(sent) == 2 and {s["email"] for s in sent} == {email}
    assert set(InboundEvent.objects.values_list("status", flat=True)) == {"processed"}


@pytest.mark.parametrize("event_type", catalog.json_event_types())
def test_every_json_catalog_event_has_the_handler(event_type):
    assert handler_for(InboundEvent(source="events", event_type=event_type)) is process_json_catalog_event


def test_a_flow_switched_off_after_receiving_is_ignored(db):
    # Given an event stored while its flow was on, and the merchant turns the flow off before it is processed
    from integration.mapping.samples import sample

    inbound = InboundEventFactory(event_type="OrderCompleted", payload=sample("OrderCompleted"))
    inbound.connection.flows.filter(event="OrderCompleted").update(enabled=False)
    assert process_inbound_event(inbound.pk) == InboundEvent.Status.IGNORED
    assert Delivery.objects.count() == 0


def test_an_event_the_mapping_cannot_use_fails_with_the_reason(db):
    # Given an order with no email anywhere, stored before the door refused such orders (or by another path)
    inbound = InboundEventFactory(event_type="OrderCompleted", payload={"order": {"number": "77"}})
    assert process_inbound_event(inbound.pk) == InboundEvent.Status.FAILED
    inbound.refresh_from_db()
    assert "email" in inbound.error.lower()
    assert Delivery.objects.count() == 0


@pytest.mark.parametrize(
    ("source", "event_type"),
    [("events", "BackInStockSubscribe"), ("events", "StockUpdate"), ("webhook", "DisplayItems"), ("webhook", "order")],
)
def test_startup_registers_the_installed_handler_packages(source, event_type):
    # Each app's ready() registered its handlers: backinstock's own types, the core's Centra sync
    assert handler_for(InboundEvent(source=source, event_type=event_type)) is not None
