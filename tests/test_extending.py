"""docs/extending.md, proven: an event declared in a few lines is validated at /events, mapped, previewed and
delivered to Rule, with nothing else in the service changed (no list to extend, no schema migration)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework import serializers

from integration import catalog
from integration.catalog import TEXT, EventSpec, field_spec
from integration.mapping import Subscriber
from integration.models import Delivery, Flow, InboundEvent
from tests.factories import ConnectionFactory
from tests.fixtures.common import post_signed_events

# --- the whole declaration of a throw-away event --------------------------------------------------------------


class WishlistSharedSerializer(serializers.Serializer):
    email = serializers.EmailField()
    wishlist = serializers.CharField(max_length=64)


def map_wishlist_shared(event: str, payload: dict, ctx) -> Subscriber:
    return Subscriber(email=payload["email"], fields={"Wishlist.Name": payload["wishlist"]})


WISHLIST_SHARED = EventSpec(
    "WishlistShared",
    ("WishlistShared",),
    True,
    "a shopper shares a wishlist",
    mapper=map_wishlist_shared,
    sample={"email": "anna@example.com", "wishlist": "Birthday"},
    serializer=WishlistSharedSerializer,
    object_key=lambda payload: f"wishlist:{payload['wishlist']}",
)
WISHLIST_FIELDS = [field_spec("Wishlist.Name", TEXT, "event wishlist", {"WishlistShared"})]

# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture
def wishlist_shared():
    catalog.declare(WISHLIST_SHARED, fields=WISHLIST_FIELDS)
    try:
        yield WISHLIST_SHARED
    finally:
        catalog.undeclare("WishlistShared")


def wishlist_event(event_id: str, **body) -> dict:
    return {"id": event_id, "type": "WishlistShared", "occurredAt": "2026-12-01T10:00:00Z", **body}


def test_a_declared_event_is_validated_delivered_and_previewed(
    wishlist_shared, client, admin_client, fake_rule, task_queue
):
    # Given a connection made before the event existed: it has no flow for it, and none is created behind a read
    connection = ConnectionFactory(rule_api_url=fake_rule.url, rule_api_key=fake_rule.api_key)
    connection.flows.filter(event="WishlistShared").delete()

    # When the shop posts one invalid and one valid event of the new type
    refused = post_signed_events(client, connection, wishlist_event("w-0", wishlist="Birthday"))
    accepted = post_signed_events(
        client, connection, wishlist_event("w-1", email="anna@example.com", wishlist="Birthday")
    )

    # Then the invalid one is refused naming the missing field, the valid one is stored with its reference
    assert refused.status_code == 400
    assert [(e["field"], e["message"]) for e in refused.json()["errors"]] == [("email", "This field is required.")]
    assert accepted.status_code == 200 and accepted.json() == {"accepted": 1, "duplicates": 0}
    stored = InboundEvent.objects.get()
    assert (stored.event_type, stored.email) == ("WishlistShared", "anna@example.com")

    # And the worker maps it and Rule receives the subscriber with the event's default tag and its field
    task_queue.drain()
    stored.refresh_from_db()
    assert stored.status == InboundEvent.Status.PROCESSED
    delivery = Delivery.objects.get()
    assert (delivery.event, delivery.status, delivery.idempotency_key) == (
        "WishlistShared",
        Delivery.Status.SUCCEEDED,
        "WishlistShared:wishlist:Birthday",
    )
    [sent] = [r for r in fake_rule.requests if r["path"].endswith("/subscribers")]
    assert sent["json"]["tags"] == ["WishlistShared"]
    assert sent["json"]["subscribers"]["email"] == "anna@example.com"
    assert sent["json"]["subscribers"]["fields"] == [{"key": "Wishlist.Name", "value": "Birthday"}]

    # And the admin previews the declared sample for it, without storing a flow
    page = admin_client.get(
        reverse("admin:integration_preview"), {"connection": connection.pk, "event": "WishlistShared"}
    )
    assert page.status_code == 200
    assert "Wishlist.Name" in page.content.decode() and "Birthday" in page.content.decode()
    assert not Flow.objects.filter(connection=connection, event="WishlistShared").exists()


def test_a_declared_event_gets_a_flow_with_its_defaults_on_a_new_connection(wishlist_shared, db):
    connection = ConnectionFactory()
    flow = connection.flows.get(event="WishlistShared")
    assert (flow.enabled, flow.tags) == (True, ["WishlistShared"])
    flow.full_clean()  # the event is a valid choice without a migration


def test_without_the_declaration_the_type_is_refused(client, connection):
    response = post_signed_events(client, connection, wishlist_event("w-2", email="anna@example.com", wishlist="x"))
    assert response.status_code == 400
    assert "WishlistShared" not in response.json()["known_types"]


def test_the_migration_step_gives_existing_connections_the_new_flow_once(wishlist_shared, db):
    from django.apps import apps

    from integration.flows import create_flows_operation

    # Given a connection created before the event was declared
    connection = ConnectionFactory()
    connection.flows.filter(event="WishlistShared").delete()
    operation = create_flows_operation("WishlistShared")

    # When the data migration runs (twice: it is safe to repeat)
    operation.code(apps, None)
    operation.code(apps, None)

    # Then the connection has the event's flow with its declared defaults, once
    [flow] = connection.flows.filter(event="WishlistShared")
    assert (flow.enabled, flow.tags, flow.automation) == (True, ["WishlistShared"], "reset")
