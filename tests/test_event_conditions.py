"""When an event reaches Rule and what a setting that would lose a field does: the article read line by line.

Each test drives the real parts (the signed endpoint, the worker's tasks, the fake Rule and fake Centra, the
admin and the `connection` command) and checks what a merchant would see.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils.html import escape

from integration.events import completed_return_event
from integration.mapping.samples import sample
from integration.models import Connection, Delivery, InboundEvent
from integration.processing.dispatch import process_inbound_event
from integration.sandbox.fake_centra import send_webhook, webhook_event
from tests.factories import InboundEventFactory
from tests.fixtures.centra import centra_sample
from tests.fixtures.common import post_signed_events
from tests.test_admin import change_url, form_data

RULE_KEY = "rule-key-conditions-0123456789"
SECRET = "whsec-conditions"
CART_LINK = "https://shop.example/abandoned-cart/{selection}"
ORDER_PLACED_AUTO_MODE = (
    "OrderPlaced is sent only in manual-confirmation mode; this connection auto-confirms orders (turn on "
    "'manual confirmation' if Centra's auto-confirm is off)"
)


# --------------------------------------------------------------------------------------------- cart link setting


@pytest.mark.django_db
def test_the_command_refuses_send_cart_link_without_a_template():
    with pytest.raises(CommandError) as exc:
        call_command(
            "connection", "upsert", "cart-shop", "--rule-api-key", RULE_KEY, "--secret", SECRET, "--send-cart-link"
        )

    assert "'Send cart link' is on but there is no cart link template" in str(exc.value)
    assert not Connection.objects.filter(name="cart-shop").exists()


@pytest.mark.django_db
def test_the_command_refuses_a_cart_link_template_without_selection():
    with pytest.raises(CommandError) as exc:
        call_command(
            "connection",
            "upsert",
            "cart-shop",
            "--rule-api-key",
            RULE_KEY,
            "--secret",
            SECRET,
            "--cart-link-template",
            "https://shop.example/cart",
        )

    assert "needs {selection}" in str(exc.value)


@pytest.mark.django_db
def test_the_command_turns_the_cart_link_on_with_a_template_and_off_on_request():
    out = StringIO()
    call_command(
        "connection",
        "upsert",
        "cart-shop",
        "--rule-api-key",
        RULE_KEY,
        "--secret",
        SECRET,
        "--cart-link-template",
        CART_LINK,
        stdout=out,
    )
    created = json.loads(out.getvalue())
    call_command("connection", "upsert", "cart-shop", "--no-send-cart-link", stdout=StringIO())

    assert created["send_cart_link"] is True and created["cart_link_template"] == CART_LINK
    conn = Connection.objects.get(name="cart-shop")
    assert conn.send_cart_link is False and conn.cart_link_template == CART_LINK


@pytest.mark.django_db
def test_a_new_connection_without_a_template_has_the_cart_link_off():
    out = StringIO()
    call_command("connection", "upsert", "plain-shop", "--rule-api-key", RULE_KEY, "--secret", SECRET, stdout=out)

    assert json.loads(out.getvalue())["send_cart_link"] is False


def test_the_connection_page_refuses_send_cart_link_without_a_template(admin_client, rule_connection):
    page = admin_client.get(change_url(rule_connection))
    # the page says what the setting needs before anyone saves it
    assert "Needs a cart link template: refused without one." in page.content.decode()
    data = form_data(page)
    data.update(send_cart_link="on", cart_link_template="")

    response = admin_client.post(change_url(rule_connection), data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "'Send cart link' is on but there is no cart link template" in errors["cart_link_template"][0]
    rule_connection.refresh_from_db()
    assert rule_connection.cart_link_template == CART_LINK


def test_the_connection_page_saves_the_cart_link_off_without_a_template(admin_client, rule_connection):
    data = form_data(admin_client.get(change_url(rule_connection)))
    data.pop("send_cart_link", None)
    data["cart_link_template"] = ""

    response = admin_client.post(change_url(rule_connection), data)

    assert response.status_code == 302
    rule_connection.refresh_from_db()
    assert (rule_connection.send_cart_link, rule_connection.cart_link_template) == (False, "")


def test_the_migration_switches_off_cart_links_that_never_had_a_template(migrator_apps):
    Connection_ = migrator_apps.before.get_model("integration", "Connection")
    Connection_.objects.create(name="no-template", token="t1", send_cart_link=True, cart_link_template="  ")
    Connection_.objects.create(name="with-template", token="t2", send_cart_link=True, cart_link_template=CART_LINK)

    after = migrator_apps.migrate().get_model("integration", "Connection")

    assert dict(after.objects.values_list("name", "send_cart_link")) == {"no-template": False, "with-template": True}


@pytest.fixture
def migrator_apps(transactional_db):
    """The app registry at 0006 (before the cart link migration), and a way to migrate to 0007."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = (
        ("integration", "0006_console_health_and_rejected_calls"),
        (
            "integration",
            "0007_cart_link_needs_a_template",
        ),
    )

    class Migrator:
        def __init__(self) -> None:
            executor = MigrationExecutor(connection)
            executor.migrate([before])
            self.before = executor.loader.project_state([before]).apps

        def migrate(self):
            executor = MigrationExecutor(connection)
            executor.loader.build_graph()
            executor.migrate([after])
            return executor.loader.project_state([after]).apps

    yield Migrator()
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())


# --------------------------------------------------------------------------------------------- abandoned carts


def abandoned_cart(lines: list) -> dict:
    """A storefront's abandoned-checkout signal: the shopper typed an email, the cart is as given."""
    cart = sample("OrderCreated")
    cart["order"]["lines"] = lines
    return {"id": "cart-sel-a1b2c3", "type": "OrderCreated", "occurredAt": "2026-12-02T08:15:00Z", **cart}


def test_an_empty_cart_is_refused_with_the_problem_named_and_nothing_stored(client, rule_connection):
    response = post_signed_events(client, rule_connection, abandoned_cart([]))

    assert response.status_code == 400
    assert response.json() == {
        "error": "1 problem(s) in the events; nothing was stored",
        "errors": [
            {
                "index": 0,
                "id": "cart-sel-a1b2c3",
                "field": "order.lines",
                "message": "a cart needs at least one item: OrderCreated is sent when one or more items have been "
                "added",
            }
        ],
    }
    assert not InboundEvent.objects.exists()


def test_an_empty_cart_stored_before_the_check_fails_with_the_reason_and_never_reaches_rule(rule_connection, fake_rule):
    # an event accepted by an earlier version of the service, still waiting to be processed
    body = {k: v for k, v in abandoned_cart([]).items() if k not in ("id", "type", "occurredAt")}
    inbound = InboundEventFactory(connection=rule_connection, event_type="OrderCreated", payload=body)

    status = process_inbound_event(inbound.pk)

    inbound.refresh_from_db()
    assert (status, inbound.error) == ("failed", "OrderCreated: the cart has no items (order.lines is empty)")
    assert not Delivery.objects.exists() and fake_rule.requests == []


# --------------------------------------------------------------------------------------------- shipments (native)


def _sent(fake_rule, tag: str) -> list[dict]:
    """The fields of every subscriber sent with this tag (alone, or in a shared call)."""
    return [
        {f["key"]: f["value"] for f in subscriber["fields"]}
        for r in fake_rule.requests
        if r["method"] == "POST" and r["json"] and r["json"].get("tags") == [tag]
        for subscriber in (
            r["json"]["subscribers"] if isinstance(r["json"]["subscribers"], list) else [r["json"]["subscribers"]]
        )
    ]


@pytest.mark.django_db(transaction=True)
def test_each_shipment_of_a_two_line_order_sends_its_own_order_shipped_with_its_own_items(
    live_server, centra_connection, fake_centra, fake_rule, task_queue
):
    # given order 10452 (an Oxford shirt and two chinos) shipped in two parcels, the chinos a day later
    fake_centra.add_order({**centra_sample("orders", 10452), "status": "SHIPPED"})
    full = centra_sample("shipments", 3311)
    shirt, chinos = full["lines"]
    fake_centra.add_shipment({**full, "id": 3312, "number": "10452-1", "lines": [shirt]})
    fake_centra.add_shipment(
        {**full, "id": 3313, "number": "10452-2", "trackingNumber": "00370799999999999999", "lines": [chinos]}
    )

    # when Centra's webhook plugin announces both shipments (the first one twice: Centra repeats itself)
    events = [webhook_event("shipment", 3312, "good_to_go"), webhook_event("shipment", 3313, "good_to_go")]
    send_webhook(centra_connection.webhook_url(base=live_server.url), "whsec-test-1", events)
    send_webhook(centra_connection.webhook_url(base=live_server.url), "whsec-test-1", [webhook_event("shipment", 3312)])
    task_queue.drain()

    # then Rule got one OrderShipped per shipment, each listing what that parcel holds
    sent = sorted(_sent(fake_rule, "OrderShipped"), key=lambda f: f["Order.Trackingno"])
    assert [(f["Order.Trackingno"], f["Order.Names"], f["Order.IndividualProductCount"]) for f in sent] == [
        ("00370712345678901234", ["Oxford Shirt"], "1"),
        ("00370799999999999999", ["Chino Trousers"], "2"),
    ]
    assert [json.loads(f["Order.Products"])[0]["sku"] for f in sent] == ["OXF001LBM", "CHI002SA32"]
    # both carry the order's totals and billing, as OrderCompleted does
    assert {f["Order.TotalAmount"] for f in sent} == {"2348.00"}
    assert all(f["Order.BillingCity"] and "Order.Handling" in f for f in sent)
    assert Delivery.objects.filter(event="OrderShipped").count() == 2


# --------------------------------------------------------------------------------------------- OrderPlaced mode


def order_placed_event(event_id: str = "evt-10452-placed") -> dict:
    return {"id": event_id, "type": "OrderPlaced", "occurredAt": "2026-11-29T11:00:05Z", **sample("OrderPlaced")}


def test_order_placed_in_auto_confirm_mode_is_stored_as_ignored_with_the_reason_and_never_sent(
    client, rule_connection, fake_rule, task_queue, django_capture_on_commit_callbacks
):
    # given a connection in auto-confirm mode (the default) and OrderPlaced switched on
    assert rule_connection.manual_confirmation is False

    # when the shop posts an OrderPlaced event
    with django_capture_on_commit_callbacks(execute=True):
        response = post_signed_events(client, rule_connection, order_placed_event())
    task_queue.drain()

    # then it is accepted and kept, shown as ignored with the reason, and Rule hears nothing
    assert response.status_code == 200 and response.json() == {"accepted": 1, "duplicates": 0}
    inbound = InboundEvent.objects.get()
    assert inbound.status == InboundEvent.Status.IGNORED
    assert inbound.error == ORDER_PLACED_AUTO_MODE
    assert not Delivery.objects.exists() and fake_rule.requests == []


def test_the_inbound_event_page_shows_why_order_placed_was_ignored(client, admin_client, rule_connection):
    post_signed_events(client, rule_connection, order_placed_event())

    page = admin_client.get(change_url(InboundEvent.objects.get())).content.decode()

    assert "ignored" in page
    assert escape(ORDER_PLACED_AUTO_MODE) in page


def test_order_placed_stored_before_the_mode_changed_is_ignored_when_processed(rule_connection, fake_rule):
    # an OrderPlaced accepted in manual mode, processed after the merchant switched to auto-confirm
    inbound = InboundEventFactory(
        connection=rule_connection, event_type="OrderPlaced", payload=sample("OrderPlaced"), dedupe_key="events:p1"
    )

    status = process_inbound_event(inbound.pk)

    inbound.refresh_from_db()
    assert (status, inbound.error) == (InboundEvent.Status.IGNORED, ORDER_PLACED_AUTO_MODE)
    assert not Delivery.objects.exists()


def test_order_placed_in_manual_confirmation_mode_reaches_rule(
    client, rule_connection, fake_rule, task_queue, django_capture_on_commit_callbacks
):
    Connection.objects.filter(pk=rule_connection.pk).update(manual_confirmation=True)

    with django_capture_on_commit_callbacks(execute=True):
        post_signed_events(client, rule_connection, order_placed_event())
    task_queue.drain()

    [fields] = _sent(fake_rule, "OrderPlaced")
    assert fields["Order.Number"] == "10452"
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED


# --------------------------------------------------------------------------------------------- completed returns


def test_a_zero_refund_return_from_centra_starts_refund_completed_by_default(centra_connection, fake_centra, fake_rule):
    # given the default flows (RefundCompleted on, ReturnCompleted off) and an exchange: nothing refunded
    fake_centra.add_order({**centra_sample("orders", 10452), "status": "SHIPPED"})
    fake_centra.add_return(centra_sample("returns", 416))

    # when Centra says the return changed
    row = _webhook_row(centra_connection, "return", 416)
    process_inbound_event(row.pk)

    # then the return reaches Rule as RefundCompleted, its zero refund stated
    delivery = Delivery.objects.get()
    assert (delivery.event, delivery.idempotency_key) == ("RefundCompleted", "RefundCompleted:return:416")
    fields = {f["key"]: f["value"] for f in delivery.request_body["subscribers"]["fields"]}
    assert fields["Order.RefundValueTotal"] == "0.00 SEK" and fields["Order.RefundValueTotalAmount"] == "0.00"


@pytest.mark.parametrize(("return_id", "expected"), [(416, "ReturnCompleted"), (415, "RefundCompleted")])
def test_with_return_completed_on_the_two_are_told_apart(centra_connection, fake_centra, return_id, expected):
    centra_connection.flows.filter(event="ReturnCompleted").update(enabled=True)
    fake_centra.add_order({**centra_sample("orders", 10452), "status": "SHIPPED"})
    fake_centra.add_return(centra_sample("returns", return_id))

    process_inbound_event(_webhook_row(centra_connection, "return", return_id).pk)
    process_inbound_event(_webhook_row(centra_connection, "return", return_id).pk)

    assert list(Delivery.objects.values_list("event", flat=True)) == [expected]


@pytest.mark.parametrize(
    ("sent_as", "refund", "return_completed_on", "expected"),
    [
        ("ReturnCompleted", 0, False, "RefundCompleted"),
        ("RefundCompleted", 0, False, "RefundCompleted"),
        ("RefundCompleted", 0, True, "ReturnCompleted"),
        ("ReturnCompleted", 0, True, "ReturnCompleted"),
        ("ReturnCompleted", 400, True, "RefundCompleted"),
    ],
)
def test_a_json_return_follows_the_same_rule(
    client,
    rule_connection,
    task_queue,
    django_capture_on_commit_callbacks,
    sent_as,
    refund,
    return_completed_on,
    expected,
):
    rule_connection.flows.filter(event="ReturnCompleted").update(enabled=return_completed_on)
    body = sample("RefundCompleted")
    body["return"]["grandTotal"] = {"value": refund, "formattedValue": f"{refund:.2f} SEK", "currency": {"code": "SEK"}}

    with django_capture_on_commit_callbacks(execute=True):
        response = post_signed_events(
            client, rule_connection, {"id": "ret-415", "type": sent_as, "occurredAt": "2026-12-05T09:00:00Z", **body}
        )
    task_queue.drain()

    assert response.status_code == 200
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED
    assert list(Delivery.objects.values_list("event", flat=True)) == [expected]


@pytest.mark.parametrize(
    ("grand_total", "sent_as", "enabled", "expected"),
    [
        ({"value": 0}, None, frozenset(), "RefundCompleted"),
        ({"value": 0}, None, frozenset({"ReturnCompleted"}), "ReturnCompleted"),
        ({"value": "-0.00"}, None, frozenset({"ReturnCompleted"}), "ReturnCompleted"),
        ({"value": 12.5}, None, frozenset({"ReturnCompleted"}), "RefundCompleted"),
        ({"value": "n/a"}, None, frozenset({"ReturnCompleted"}), "RefundCompleted"),
        (None, "ReturnCompleted", frozenset({"ReturnCompleted"}), "ReturnCompleted"),
        ("free", "RefundCompleted", frozenset({"ReturnCompleted"}), "RefundCompleted"),
    ],
)
def test_which_event_a_completed_return_starts(grand_total, sent_as, enabled, expected):
    # odd refunded values never crash the decision; unreadable ones count as refunded unless sent as a return
    assert completed_return_event({"grandTotal": grand_total}, enabled, sent_as) == expected


def _webhook_row(connection, kind: str, ref: int) -> InboundEvent:
    return InboundEvent.objects.create(
        connection=connection,
        source=InboundEvent.Source.WEBHOOK,
        dedupe_key=f"webhook:{kind}:update:{ref}:{InboundEvent.objects.count()}",
        event_type=kind,
        object_ref=str(ref),
        payload={"type": kind, "action": "update", "date": "2026-12-05 09:00:00.000001", "id": ref},
    )


# --------------------------------------------------------------------------------------------- gift certificates


def test_a_gift_certificate_value_that_cannot_be_read_is_sent_as_text_and_noted_on_the_delivery(
    client, rule_connection, fake_rule, task_queue, django_capture_on_commit_callbacks
):
    rule_connection.flows.filter(event="GiftCertificate").update(enabled=True)
    body = sample("GiftCertificate")
    body["giftCertificate"].update(value="Fem hundra kronor", valueAsNumber=None)

    with django_capture_on_commit_callbacks(execute=True):
        post_signed_events(
            client, rule_connection, {"id": "gc-1", "type": "GiftCertificate", "occurredAt": "2026-12-14", **body}
        )
    task_queue.drain()

    [fields] = _sent(fake_rule, "GiftCertificate")
    assert fields["GiftCertificate.Value"] == "Fem hundra kronor"
    assert "GiftCertificate.ValueAsNumber" not in fields
    delivery = Delivery.objects.get()
    assert delivery.notes == "GiftCertificate.ValueAsNumber left out: no amount could be read from the gift certificate"
    assert delivery.attempts.get().note.startswith(delivery.notes)
