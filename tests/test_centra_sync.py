"""Native Centra webhooks: a stored webhook row is fetched from the fake Centra and becomes catalog events."""

from __future__ import annotations

import uuid

import pytest
from django.utils import timezone

from integration.delivery import engine as delivery
from integration.models import Connection, Delivery, InboundEvent
from integration.processing.dispatch import process_inbound_event
from tests.fixtures.centra import centra_sample


def webhook(connection, kind: str, ref: int | str, action: str = "update") -> InboundEvent:
    """A row as the webhook endpoint stores it."""
    return InboundEvent.objects.create(
        connection=connection,
        source=InboundEvent.Source.WEBHOOK,
        dedupe_key=f"webhook:{kind}:{action}:{ref}:{uuid.uuid4().hex}",
        event_type=kind,
        object_ref=str(ref),
        payload={"type": kind, "action": action, "date": "2026-01-01 12:05:10.000001", "id": int(ref)},
    )


def process(connection, kind: str, ref: int | str, action: str = "update") -> InboundEvent:
    row = webhook(connection, kind, ref, action)
    process_inbound_event(row.pk)
    row.refresh_from_db()
    return row


def make_due(row: InboundEvent) -> None:
    """Move the clock for this event: its next try is now."""
    InboundEvent.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())


def events(connection) -> list[str]:
    return sorted(Delivery.objects.filter(connection=connection).values_list("event", flat=True))


def enable(connection, *names: str) -> None:
    connection.flows.filter(event__in=names).update(enabled=True)


def set_order(fake_centra, status: str, number: int = 10452) -> dict:
    return fake_centra.add_order({**centra_sample("orders", 10452), "number": number, "status": status})


@pytest.fixture
def shop(centra_connection):
    enable(centra_connection, "OrderCancellation", "ReturnCompleted", "CustomerRegistered")
    return centra_connection


@pytest.fixture
def manual_shop(shop):
    Connection.objects.filter(pk=shop.pk).update(manual_confirmation=True)
    shop.refresh_from_db()
    return shop


# ---------------------------------------------------------------- orders, auto-confirm mode


@pytest.mark.parametrize("status", ["PENDING", "CONFIRMED", "PROCESSING", "SHIPPED", "ARCHIVED"])
def test_auto_mode_any_status_but_cancelled_is_order_completed(shop, fake_centra, status):
    set_order(fake_centra, status)
    row = process(shop, "order", 10452)
    assert row.status == InboundEvent.Status.PROCESSED and row.error == ""
    assert events(shop) == ["OrderCompleted"]
    d = Delivery.objects.get(connection=shop)
    assert d.idempotency_key == "OrderCompleted:order:10452" and d.inbound_event == row
    assert d.trigger == Delivery.Trigger.EVENT and d.email == "anna.svensson@example.com"


def test_a_cancelled_order_is_order_cancellation(shop, fake_centra):
    set_order(fake_centra, "CANCELLED")
    process(shop, "order", 10452)
    assert events(shop) == ["OrderCancellation"]


def test_no_order_completed_after_a_cancellation(shop, fake_centra):
    # given an order cancelled (and told to Rule)
    set_order(fake_centra, "CANCELLED")
    process(shop, "order", 10452)
    # when an old "confirmed" state comes back (e.g. reconciliation reads a stale copy)
    from integration.processing.centra_sync import apply_state

    apply_state(
        shop,
        "order",
        {**centra_sample("orders", 10452), "status": "CONFIRMED"},
        inbound=None,
        trigger=Delivery.Trigger.RECONCILE,
    )
    # then no OrderCompleted is sent after the cancellation
    assert events(shop) == ["OrderCancellation"]


def test_order_completed_then_cancelled_sends_both_in_that_order(shop, fake_centra):
    set_order(fake_centra, "CONFIRMED")
    process(shop, "order", 10452)
    set_order(fake_centra, "CANCELLED")
    process(shop, "order", 10452)
    assert list(
        Delivery.objects.filter(connection=shop).order_by("created_at", "id").values_list("event", flat=True)
    ) == ["OrderCompleted", "OrderCancellation"]


def test_an_order_cancellation_with_its_flow_off_sends_nothing(centra_connection, fake_centra):
    # the catalog default: OrderCancellation off
    set_order(fake_centra, "CANCELLED")
    row = process(centra_connection, "order", 10452)
    assert row.status == InboundEvent.Status.PROCESSED and events(centra_connection) == []


# ---------------------------------------------------------------- orders, manual-confirmation mode


def test_manual_mode_pending_is_order_placed_then_confirmed_is_order_completed(manual_shop, fake_centra):
    set_order(fake_centra, "PENDING")
    process(manual_shop, "order", 10452)
    assert events(manual_shop) == ["OrderPlaced"]

    set_order(fake_centra, "CONFIRMED")
    process(manual_shop, "order", 10452)
    assert events(manual_shop) == ["OrderCompleted", "OrderPlaced"]


@pytest.mark.parametrize("status", ["CONFIRMED", "PROCESSING", "SHIPPED"])
def test_manual_mode_completed_statuses(manual_shop, fake_centra, status):
    set_order(fake_centra, status)
    process(manual_shop, "order", 10452)
    assert events(manual_shop) == ["OrderCompleted"]


def test_manual_mode_archived_means_nothing_new(manual_shop, fake_centra):
    set_order(fake_centra, "ARCHIVED")
    assert process(manual_shop, "order", 10452).status == InboundEvent.Status.PROCESSED
    assert events(manual_shop) == []


def test_manual_mode_no_order_placed_once_completed_or_cancelled_exists(manual_shop, fake_centra):
    from integration.processing.centra_sync import apply_state

    # given the order was confirmed before its "placed" webhook was processed
    set_order(fake_centra, "CONFIRMED")
    process(manual_shop, "order", 10452)
    # when the stale PENDING state is applied
    apply_state(
        manual_shop,
        "order",
        {**centra_sample("orders", 10452), "status": "PENDING"},
        inbound=None,
        trigger=Delivery.Trigger.RECONCILE,
    )
    # then OrderPlaced is not sent after OrderCompleted
    assert events(manual_shop) == ["OrderCompleted"]

    set_order(fake_centra, "CANCELLED", number=10453)
    process(manual_shop, "order", 10453)
    apply_state(
        manual_shop,
        "order",
        {**centra_sample("orders", 10452), "number": 10453, "status": "PENDING"},
        inbound=None,
        trigger=Delivery.Trigger.RECONCILE,
    )
    assert Delivery.objects.filter(connection=manual_shop, order_number="10453").count() == 1


# ---------------------------------------------------------------- repeated and reordered webhooks


def test_repeated_order_webhooks_send_each_event_once(shop, fake_centra):
    set_order(fake_centra, "CONFIRMED")
    rows = [process(shop, "order", 10452) for _ in range(4)]
    assert all(r.status == InboundEvent.Status.PROCESSED for r in rows)
    assert events(shop) == ["OrderCompleted"]


def test_reordered_webhooks_follow_the_current_state(manual_shop, fake_centra):
    # given Centra sent "created" (PENDING) and "confirmed" but they arrive after the order was confirmed
    created, confirmed = webhook(manual_shop, "order", 10452, "create"), webhook(manual_shop, "order", 10452)
    set_order(fake_centra, "CONFIRMED")
    # when they are processed in the wrong order
    process_inbound_event(confirmed.pk)
    process_inbound_event(created.pk)
    # then the current state decides: OrderCompleted once, and no stale OrderPlaced after it
    assert events(manual_shop) == ["OrderCompleted"]


# ---------------------------------------------------------------- shipments, returns, customers


def test_a_shipped_shipment_is_order_shipped_once_with_its_full_order(shop, fake_centra, fake_rule):
    set_order(fake_centra, "SHIPPED")
    shipment = centra_sample("shipments", 3311)
    fake_centra.add_shipment({**shipment, "isShipped": False})
    process(shop, "shipment", 3311, "create")
    assert events(shop) == []  # not shipped yet

    fake_centra.add_shipment(shipment)
    process(shop, "shipment", 3311, "good_to_go")
    process(shop, "shipment", 3311)
    d = Delivery.objects.get(connection=shop, event="OrderShipped")
    assert d.idempotency_key == "OrderShipped:shipment:3311"

    # and Rule receives the tracking number and the order's number
    delivery.deliver(d.pk)
    sent = fake_rule.requests[-1]["json"]
    fields = {f["key"]: f["value"] for f in sent["subscribers"]["fields"]}
    assert sent["subscribers"]["email"] == "anna.svensson@example.com" and sent["tags"] == ["OrderShipped"]
    assert fields["Order.Number"] == "10452" and fields["Order.Trackingno"] == "00370712345678901234"
    assert fields["Order.Trackinglink"] == "https://tracking.postnord.com/?id=00370712345678901234"


def test_a_completed_return_with_money_back_is_refund_completed(shop, fake_centra):
    set_order(fake_centra, "SHIPPED")
    ret = centra_sample("returns", 415)
    fake_centra.add_return({**ret, "returnStatus": "PENDING"})
    process(shop, "return", 415, "create")
    assert events(shop) == []

    fake_centra.add_return(ret)
    process(shop, "return", 415)
    process(shop, "return", 415)
    assert events(shop) == ["RefundCompleted"]
    assert Delivery.objects.get(connection=shop).idempotency_key == "RefundCompleted:return:415"


def test_a_completed_return_with_nothing_refunded_is_return_completed(shop, fake_centra):
    set_order(fake_centra, "SHIPPED")
    fake_centra.add_return(centra_sample("returns", 416))
    process(shop, "return", 416)
    assert events(shop) == ["ReturnCompleted"]


def test_a_new_customer_is_customer_registered_and_an_update_is_ignored(shop, fake_centra):
    fake_centra.add_customer(centra_sample("customers", 2207))
    created = process(shop, "customer", 2207, "create")
    updated = process(shop, "customer", 2207, "update")
    assert created.status == InboundEvent.Status.PROCESSED and updated.status == InboundEvent.Status.IGNORED
    assert events(shop) == ["CustomerRegistered"]
    assert Delivery.objects.get(connection=shop).email == "anna.svensson@example.com"


def test_webhook_types_we_do_not_turn_into_events_are_ignored(shop, fake_centra):
    row = process(shop, "account", 5)
    assert row.status == InboundEvent.Status.IGNORED and fake_centra.queries == []


# ---------------------------------------------------------------- Centra's errors


def test_centra_rate_limit_or_outage_keeps_the_event_received(shop, fake_centra):
    set_order(fake_centra, "CONFIRMED")
    fake_centra.fail("rate_limit", retry_after=9)
    row = process(shop, "order", 10452)
    assert row.status == InboundEvent.Status.RECEIVED and "429" in row.error
    assert row.process_attempts == 0  # waiting for Centra's Retry-After uses no budget

    make_due(row)
    fake_centra.fail("server_error")
    process_inbound_event(row.pk)
    row.refresh_from_db()
    assert row.status == InboundEvent.Status.RECEIVED and "500" in row.error
    assert row.process_attempts == 1
    assert events(shop) == []

    # when Centra is back, the next try (once due) succeeds
    make_due(row)
    process_inbound_event(row.pk)
    row.refresh_from_db()
    assert row.status == InboundEvent.Status.PROCESSED and events(shop) == ["OrderCompleted"]


def test_an_expired_token_fails_the_event_and_shows_on_the_connection(shop, fake_centra):
    set_order(fake_centra, "CONFIRMED")
    fake_centra.fail("expired_token", message="Unauthorized: API token has expired")
    row = process(shop, "order", 10452)
    shop.refresh_from_db()
    assert row.status == InboundEvent.Status.FAILED
    assert row.error == "Centra answered 401: Unauthorized: API token has expired"
    assert shop.centra_last_error == row.error and fake_centra.token not in row.error

    # and the next successful fetch clears it
    process(shop, "order", 10452)
    shop.refresh_from_db()
    assert shop.centra_last_error == ""


def test_a_graphql_error_is_shown_verbatim(shop, fake_centra):
    fake_centra.fail("graphql_error", message="Missing permission Order.shippingAddress:read")
    row = process(shop, "order", 10452)
    shop.refresh_from_db()
    assert row.status == InboundEvent.Status.FAILED
    assert row.error == shop.centra_last_error == "Missing permission Order.shippingAddress:read"


def test_no_token_and_not_found_are_permanent(shop, fake_centra):
    row = process(shop, "order", 424242)
    assert row.status == InboundEvent.Status.FAILED and row.error == "Centra has no order 424242"

    Connection.objects.filter(pk=shop.pk).update(centra_api_token="")
    row = process(shop, "order", 10452)
    assert row.status == InboundEvent.Status.FAILED and row.error == "no Centra API token"
