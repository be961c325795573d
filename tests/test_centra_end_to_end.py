"""End to end: the fake Centra signs and sends a webhook to the running service, the service fetches the order
from the fake Centra, and the fake Rule receives the subscriber update."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from integration.models import Delivery, InboundEvent
from integration.sandbox.fake_centra import send_webhook, webhook_event
from tests.fixtures.centra import centra_sample


@pytest.mark.django_db(transaction=True)
def test_a_signed_centra_webhook_becomes_the_right_rule_request(
    live_server, centra_connection, fake_centra, fake_rule, task_queue
):
    # given an order in Centra and a webhook endpoint secret shared with the service
    fake_centra.add_order(centra_sample("orders", 10452))
    url = centra_connection.webhook_url(base=live_server.url)

    # when Centra's webhook plugin posts an order update (twice: Centra retries)
    events = [webhook_event("order", 10452)]
    first = send_webhook(url, "whsec-test-1", events)
    second = send_webhook(url, "whsec-test-1", events)
    task_queue.drain()

    # then the service accepted it once, fetched the order, and Rule got one OrderCompleted update
    assert first.status_code == 200 and first.json() == {"accepted": 1, "duplicates": 0}
    assert second.json() == {"accepted": 0, "duplicates": 1}
    inbound = InboundEvent.objects.get(connection=centra_connection, source="webhook")
    assert inbound.status == InboundEvent.Status.PROCESSED and inbound.object_ref == "10452"
    assert any("OrderByNumber" in q["query"] and q["variables"] == {"number": 10452} for q in fake_centra.queries)

    posts = [r for r in fake_rule.requests if r["method"] == "POST" and r["path"].endswith("/subscribers")]
    assert len(posts) == 1
    body = posts[0]["json"]
    fields = {f["key"]: f["value"] for f in body["subscribers"]["fields"]}
    assert body["tags"] == ["OrderCompleted"] and body["update_on_duplicate"] is True
    assert body["subscribers"]["email"] == "anna.svensson@example.com"
    assert body["subscribers"]["phone_number"] == "+46701234567"
    assert fields["Order.Number"] == "10452"
    assert fields["Order.Total"] == "2 348.00 SEK" and fields["Order.TotalAmount"] == "2348.00"
    assert fields["Order.Currency"] == "SEK" and fields["Order.Country"] == "SE"
    assert fields["Order.Street"] == "Sveavägen 12, lgh 1102"
    assert fields["Order.PaymentMethod"] == "Klarna Checkout"
    assert fields["Order.DeliveryMethod"] == "PostNord MyPack Collect"
    assert fields["Order.Skus"] == ["OXF001LBM", "CHI002SA32"]
    assert Delivery.objects.get(connection=centra_connection, event="OrderCompleted").status == "succeeded"


@pytest.mark.django_db(transaction=True)
def test_the_fakecentra_command_sends_a_signed_shipment_webhook(
    live_server, centra_connection, fake_centra, fake_rule, task_queue
):
    fake_centra.add_order({**centra_sample("orders", 10452), "status": "SHIPPED"})
    fake_centra.add_shipment(centra_sample("shipments", 3311))
    out = StringIO()

    call_command(
        "fakecentra",
        "--send-webhook",
        centra_connection.webhook_url(base=live_server.url),
        "--secret",
        "whsec-test-1",
        "--events",
        json.dumps([webhook_event("shipment", 3311, "good_to_go")]),
        stdout=out,
    )
    task_queue.drain()

    status, _, answer = out.getvalue().strip().partition(" ")
    assert status == "200" and json.loads(answer) == {"accepted": 1, "duplicates": 0}
    shipped = [r["json"] for r in fake_rule.requests if r["json"] and r["json"].get("tags") == ["OrderShipped"]]
    assert len(shipped) == 1
    fields = {f["key"]: f["value"] for f in shipped[0]["subscribers"]["fields"]}
    assert fields["Order.Number"] == "10452" and fields["Order.Carrier"] == "PostNord"
    assert fields["Order.Trackingno"] == "00370712345678901234"


@pytest.mark.django_db(transaction=True)
def test_a_webhook_signed_with_the_wrong_secret_is_refused_and_nothing_is_fetched(
    live_server, centra_connection, fake_centra
):
    response = send_webhook(
        centra_connection.webhook_url(base=live_server.url), "not-the-secret", [webhook_event("order", 10452)]
    )
    assert response.status_code == 401
    assert not InboundEvent.objects.exists() and fake_centra.queries == []
