"""Shoppers subscribe and unsubscribe; Rule hears ProductAlertWaiting once per watch."""

import pytest

from backinstock.models import Watcher
from integration.models import Delivery, InboundEvent
from tests.backinstock.helpers import WAITING_TAG, fields_of, process

pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIBE = {
    "email": "Anna@Example.com",
    "item": "12366-23400",
    "sku": "WC-100-M",
    "languageCode": "sv",
    "shipTo": {"countryCode": "se", "stateCode": ""},
    "product": {
        "name": "Wool Coat",
        "uri": "https://shop.example/wool-coat",
        "image": "https://cdn.example/wc.jpg",
        "brand": "Acme",
        "variant": "Black",
        "size": "M",
        "sku": "WC-100",
        "sizeSku": "WC-100-M",
        "ean": "7350000000017",
        "price": "1 999.00 SEK",
        "priceAmount": "1999.00",
        "currency": "SEK",
    },
}


def waiting_requests(fake_rule) -> list[dict]:
    return [r["json"] for r in fake_rule.requests if WAITING_TAG in ((r["json"] or {}).get("tags") or [])]


def test_a_subscription_creates_a_watcher_and_tells_rule_the_shopper_is_waiting(rule_connection, fake_rule, task_queue):
    # when the storefront sends a subscription
    event = process(rule_connection, "BackInStockSubscribe", SUBSCRIBE)
    task_queue.drain()

    # then one watcher waits for that size, with the shopper's language and country
    assert event.status == InboundEvent.Status.PROCESSED
    watcher = Watcher.objects.get()
    assert (watcher.email, watcher.item, watcher.status) == ("anna@example.com", "12366-23400", "waiting")
    assert (watcher.language, watcher.country, watcher.sku) == ("sv", "SE", "WC-100-M")
    # and Rule got the waiting tag with the product's fields
    [body] = waiting_requests(fake_rule)
    subscriber = body["subscribers"]
    assert subscriber["email"] == "anna@example.com"
    assert subscriber["language"] == "sv"
    fields = fields_of(subscriber)
    assert fields["ProductAlert.DisplayName"] == "Wool Coat"
    assert fields["ProductAlert.DisplayUri"] == "https://shop.example/wool-coat"
    assert fields["ProductAlert.SizeSKU"] == "WC-100-M"
    assert fields["ProductAlert.EAN"] == "7350000000017"
    assert fields["ProductAlert.CurrencyInRegion"] == "SEK"
    delivery = Delivery.objects.get(event="ProductAlertWaiting")
    assert delivery.idempotency_key == f"ProductAlertWaiting:watch:{watcher.pk}"


def test_subscribing_again_while_waiting_changes_nothing(rule_connection, fake_rule, task_queue):
    # given a shopper already waiting
    process(rule_connection, "BackInStockSubscribe", SUBSCRIBE)
    # when the same subscription arrives again (new event id, same email in other case, same item)
    again = process(rule_connection, "BackInStockSubscribe", {**SUBSCRIBE, "email": "anna@example.COM"})
    task_queue.drain()

    # then there is still one watcher and Rule heard about it once
    assert again.status == InboundEvent.Status.IGNORED
    assert Watcher.objects.count() == 1
    assert len(waiting_requests(fake_rule)) == 1


def test_the_same_shopper_may_wait_again_after_an_alert(rule_connection):
    # given a watcher who was alerted
    process(rule_connection, "BackInStockSubscribe", SUBSCRIBE)
    Watcher.objects.update(status=Watcher.Status.ALERTED)
    # when they subscribe to the same size again
    event = process(rule_connection, "BackInStockSubscribe", SUBSCRIBE)
    # then a new waiting watcher exists beside the old one
    assert event.status == InboundEvent.Status.PROCESSED
    assert sorted(Watcher.objects.values_list("status", flat=True)) == ["alerted", "waiting"]


def test_a_subscription_without_an_item_fails_with_the_reason(rule_connection):
    event = process(rule_connection, "BackInStockSubscribe", {**SUBSCRIBE, "item": ""})
    assert event.status == InboundEvent.Status.FAILED
    assert "item" in event.error
    assert not Watcher.objects.exists()


def test_unsubscribe_stops_waiting_for_that_item_only(rule_connection):
    # given a shopper waiting for two sizes
    process(rule_connection, "BackInStockSubscribe", SUBSCRIBE)
    process(rule_connection, "BackInStockSubscribe", {**SUBSCRIBE, "item": "12366-23401"})
    # when they unsubscribe from one
    event = process(rule_connection, "BackInStockUnsubscribe", {"email": "anna@example.com", "item": "12366-23400"})
    # then only that one stops
    assert event.status == InboundEvent.Status.PROCESSED
    statuses = dict(Watcher.objects.values_list("item", "status"))
    assert statuses == {"12366-23400": "unsubscribed", "12366-23401": "waiting"}
    # and unsubscribing again has nothing left to do
    again = process(rule_connection, "BackInStockUnsubscribe", {"email": "anna@example.com", "item": "12366-23400"})
    assert again.status == InboundEvent.Status.IGNORED


def test_product_fields_are_refreshed_from_centra_when_a_token_is_set(
    centra_connection, fake_centra, fake_rule, task_queue
):
    # given Centra knows the size under its current name
    fake_centra.set_stock(
        23400,
        0,
        product={
            "SKU": "WC-100-M-2",
            "EAN": "7350000000024",
            "description": "Medium",
            "productVariant": {
                "id": 7,
                "name": "Charcoal",
                "product": {
                    "id": 3,
                    "name": "Wool Coat II",
                    "productNumber": "WC-100",
                    "brand": {"id": 1, "name": "Acme"},
                },
            },
        },
    )
    # when a shopper subscribes with older details
    process(centra_connection, "BackInStockSubscribe", SUBSCRIBE)
    task_queue.drain()

    # then the watcher and Rule's fields carry Centra's current details, the rest as sent
    watcher = Watcher.objects.get()
    assert watcher.product["name"] == "Wool Coat II"
    assert watcher.product["variant"] == "Charcoal"
    fields = fields_of(waiting_requests(fake_rule)[0]["subscribers"])
    assert fields["ProductAlert.DisplayName"] == "Wool Coat II"
    assert fields["ProductAlert.Size"] == "Medium"
    assert fields["ProductAlert.SizeSKU"] == "WC-100-M-2"
    assert fields["ProductAlert.DisplayUri"] == "https://shop.example/wool-coat"


def test_centra_being_down_does_not_block_a_subscription(centra_connection, fake_centra, fake_rule, task_queue):
    # given Centra answers 500
    fake_centra.fail("server_error", times=None)
    # when a shopper subscribes
    event = process(centra_connection, "BackInStockSubscribe", SUBSCRIBE)
    task_queue.drain()
    # then they wait with the details they sent, and Rule heard about it
    assert event.status == InboundEvent.Status.PROCESSED
    assert Watcher.objects.get().product["name"] == "Wool Coat"
    assert len(waiting_requests(fake_rule)) == 1
