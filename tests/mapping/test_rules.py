"""One test per conditional rule of the field catalog."""

import pytest

from integration import catalog
from integration.mapping import MappingContext, MappingError, map_event, object_key
from tests.mapping.cases import fields, load, order_payload, run, sample

ORDER_EVENTS = ["OrderCreated", "OrderPlaced", "OrderCompleted", "OrderShipped", "OrderCancellation"]
BILLING_KEYS = [f.key for f in catalog.FIELDS if f.key.startswith("Order.Billing")]


@pytest.mark.parametrize("event", [*ORDER_EVENTS, "GiftCertificate", "RefundCompleted"])
def test_only_order_completed_sends_billing_fields_and_handling(event):
    sent = fields(run(event, sample(event)))

    if event == "OrderCompleted":
        assert sent["Order.BillingStreet"] == "Box 1234"
        assert sent["Order.Handling"] == "0.00 SEK"
    else:
        assert not set(BILLING_KEYS + ["Order.Handling"]) & set(sent)


@pytest.mark.parametrize("event", ["RefundCompleted", "ReturnCompleted"])
def test_returns_send_base_item_and_refund_fields_but_no_skus_products_or_common_fields(event):
    sent = fields(run(event, sample(event)))

    common = {f.key for f in catalog.FIELDS if f.events == catalog.COMMON_EVENTS}
    assert not common & set(sent)
    assert "Order.Skus" not in sent and "Order.Products" not in sent
    assert sent["Order.Number"] == "10452"
    assert sent["Order.Names"] == ["Wool Socks"]  # only the returned line, not the whole order
    assert sent["Order.RefundValuePcs"] == ["400.00 SEK"]


def test_return_item_values_are_the_return_lines_not_the_order_lines():
    payload = sample("RefundCompleted")
    payload["return"]["lines"][0]["lineValue"] = {"value": 120, "formattedValue": "120.00 SEK"}
    payload["return"]["lines"][0]["quantity"] = 1

    sent = fields(run("RefundCompleted", payload))

    assert sent["Order.RefundValuePcs"] == ["120.00 SEK"]
    assert sent["Order.RefundValuePcsAmount"] == ["120.00"]


@pytest.mark.parametrize(
    ("deducted", "expected"),
    [(0, None), (None, None), (-5, None), ("12.5", "12.50"), (399.8, "399.80")],
)
def test_tax_deduction_only_above_zero(deducted, expected):
    payload = order_payload()
    payload["order"]["totals"]["taxDeducted"] = {"value": deducted, "currency": {"code": "SEK"}}

    sent = fields(run("OrderCompleted", payload))

    assert sent.get("Order.TaxDeductionAmount") == expected
    assert ("Order.TaxDeduction" in sent) == (expected is not None)


@pytest.mark.parametrize("send_cart_link", [True, False])
def test_cart_url_only_when_the_setting_is_on(send_cart_link):
    ctx = MappingContext(send_cart_link=send_cart_link, cart_link_template="https://shop.example/cart/{selection}")

    sent = fields(run("OrderCreated", sample("OrderCreated"), ctx))

    expected = "https://shop.example/cart/a1b2c3d4e5f60718293a4b5c6d7e8f90" if send_cart_link else None
    assert sent.get("Order.CartUrl") == expected


def test_order_created_number_is_the_order_number_once_there_is_one():
    payload = sample("OrderCreated")
    without = fields(run("OrderCreated", payload))
    payload["order"]["number"] = 10999

    with_number = fields(run("OrderCreated", payload))

    assert without["Order.Number"] == "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    assert with_number["Order.Number"] == "10999"


TEMPLATES = {"PostNord": "https://pn.example/?id={tracking}", "default": "https://track.example/{tracking}"}


@pytest.mark.parametrize(
    ("carrier_info", "plugin", "templates", "carrier", "link"),
    [
        ({"carrierName": "PostNord"}, None, TEMPLATES, "PostNord", "https://pn.example/?id=AB 1"),
        ({"carrierName": "DHL"}, None, TEMPLATES, "DHL", "https://track.example/AB 1"),
        (None, {"name": "PostNord"}, TEMPLATES, "PostNord", "https://pn.example/?id=AB 1"),
        ({"carrierName": "DHL"}, None, {"PostNord": TEMPLATES["PostNord"]}, "DHL", None),
    ],
)
def test_carrier_and_tracking_link_with_default_template_fallback(carrier_info, plugin, templates, carrier, link):
    payload = sample("OrderShipped")
    payload["shipment"].update(carrierInformation=carrier_info, shipmentPlugin=plugin, trackingNumber="AB 1")

    sent = fields(run("OrderShipped", payload, MappingContext(tracking_link_templates=templates)))

    assert sent["Order.Carrier"] == carrier
    assert sent["Order.Trackingno"] == "AB 1"
    # the tracking number is URL-quoted inside the link
    assert sent.get("Order.Trackinglink") == (link.replace("AB 1", "AB%201") if link else None)


def test_shipped_accepts_the_order_beside_the_shipment():
    shipment = sample("OrderShipped")["shipment"]
    order = shipment.pop("order")

    nested = fields(run("OrderShipped", sample("OrderShipped")))
    beside = fields(run("OrderShipped", {"shipment": shipment, "order": order}))

    assert beside == nested
    assert beside["Order.Number"] == "10452"


@pytest.mark.parametrize(
    ("setting", "comment", "expected"),
    [
        ("Sorry, sold out.", "Customer asked", "Sorry, sold out."),
        ("", "Customer asked", "Customer asked"),
        ("", None, None),
    ],
)
def test_additional_message_is_the_setting_else_the_order_comment(setting, comment, expected):
    payload = sample("OrderCancellation")
    payload["order"]["otherComment"] = comment
    ctx = MappingContext(cancellation_message=setting, shop_url="https://shop.example")

    sent = fields(run("OrderCancellation", payload, ctx))

    assert sent.get("Order.AdditionalMessage") == expected
    assert sent["Order.CompanyUrl"] == "https://shop.example"


def test_empty_values_are_never_sent():
    payload = order_payload(
        paymentMethod={"name": ""},
        otherComment=None,
        attributes=[{"type": {"name": "gift"}, "elements": [{"key": "note", "value": "  "}]}],
    )
    payload["order"]["shippingAddress"].update(companyName="", address2=None, city="  ")
    payload["order"]["lines"][0]["collection"] = None
    payload["order"]["lines"][1]["collection"] = {"name": ""}

    sent = fields(run("OrderCompleted", payload))

    for key in ("Order.PaymentMethod", "Order.Company", "Order.City", "Order.gift_note", "Order.Collections"):
        assert key not in sent
    assert sent["Order.Street"] == "Sveavägen 44"
    assert all(value not in ("", [], {}, None) for value in sent.values())


@pytest.mark.parametrize(
    ("customer", "shipping", "billing", "expected"),
    [
        ("c@example.com", "s@example.com", "b@example.com", "c@example.com"),
        (None, "s@example.com", "b@example.com", "s@example.com"),
        ("", None, "b@example.com", "b@example.com"),
        ("not-an-email", None, "b@example.com", "b@example.com"),
    ],
)
def test_email_fallbacks(customer, shipping, billing, expected):
    payload = order_payload()
    payload["order"]["customer"]["email"] = customer
    payload["order"]["shippingAddress"]["email"] = shipping
    payload["order"]["billingAddress"]["email"] = billing

    assert run("OrderCompleted", payload).email == expected


def test_no_email_is_a_mapping_error():
    payload = order_payload(customer=None)
    payload["order"]["shippingAddress"]["email"] = None
    payload["order"]["billingAddress"]["email"] = ""

    with pytest.raises(MappingError, match="no email"):
        map_event("OrderCompleted", payload, MappingContext())


def test_non_order_events_use_the_event_email():
    payload = sample("Newsletter")

    with pytest.raises(MappingError, match="no email"):
        map_event("Newsletter", {**payload, "email": None}, MappingContext())
    assert map_event("Newsletter", payload, MappingContext()).email == "erik.berg@example.com"


@pytest.mark.parametrize(
    ("number", "country", "expected"),
    [
        ("070-123 45 67", "SE", "+46701234567"),
        ("0046 70 123 45 67", "SE", "+46701234567"),
        ("412 34 567", "NO", "+4741234567"),
        ("+49 151 23456789", "SE", "+4915123456789"),
        ("12345", "SE", None),
        ("call me", "SE", None),
        ("070-123 45 67", None, None),  # without a country a national number cannot be read
    ],
)
def test_phone_number_is_e164_from_the_address_country_or_omitted(number, country, expected):
    payload = order_payload(country=None)
    payload["order"]["shippingAddress"].update(phoneNumber=number, country={"code": country} if country else None)
    payload["order"]["billingAddress"].update(phoneNumber=None)

    request = run("OrderCompleted", payload)

    assert request.body["subscribers"].get("phone_number") == expected
    assert fields(request)["Order.Tele"] == number  # the field keeps the number as the shopper wrote it


@pytest.mark.parametrize(
    ("language", "default", "expected"),
    [
        ({"code": "sv-SE"}, "", "sv"),
        ({"code": "sv_SE"}, "", "sv"),
        ({"code": "SV"}, "en", "sv"),
        ("de", "", "de"),
        (None, "en", "en"),
        (None, "", None),
        ({"code": "swedish"}, "fi-FI", "fi"),
    ],
)
def test_language_is_iso_639_1_else_the_connection_default(language, default, expected):
    payload = order_payload(language=language)

    request = run("OrderCompleted", payload, MappingContext(default_language=default))

    assert request.body["subscribers"].get("language") == expected


def test_product_alert_language_comes_from_language_code():
    payload = {**sample("ProductAlertWaiting"), "languageCode": "nb_NO"}

    assert run("ProductAlertWaiting", payload).body["subscribers"]["language"] == "nb"


@pytest.mark.parametrize(
    ("order_date", "time_zone", "expected"),
    [
        ("2026-11-29T11:00:00+00:00", "Europe/Stockholm", "2026-11-29 12:00:00"),
        ("2026-07-01T23:30:00Z", "Europe/Stockholm", "2026-07-02 01:30:00"),
        ("2026-03-14T18:42:05-04:00", "Europe/London", "2026-03-14 22:42:05"),
        ("2026-01-01 12:05:10.000001", "Europe/Stockholm", "2026-01-01 13:05:10"),  # no zone: read as UTC
        ("2026-01-01T12:00:00+01:00", "Not/AZone", "2026-01-01 11:00:00"),  # unknown zone: UTC
    ],
)
def test_dates_are_converted_to_the_connection_time_zone(order_date, time_zone, expected):
    payload = order_payload(orderDate=order_date)

    sent = fields(run("OrderCompleted", payload, MappingContext(time_zone=time_zone)))

    assert sent["Order.Date"] == expected


def test_order_date_falls_back_to_created_at():
    payload = order_payload(orderDate=None, createdAt="2026-05-05T10:00:00+00:00")

    assert fields(run("OrderCompleted", payload, MappingContext(time_zone="UTC")))["Order.Date"] == (
        "2026-05-05 10:00:00"
    )


def test_gift_certificate_dates_are_rule_dates():
    case = load("gift_certificate.json")
    request = run("GiftCertificate", case["payload"], MappingContext(time_zone="Europe/Stockholm"))

    types = {f["key"]: f.get("type") for f in request.body["subscribers"]["fields"]}
    assert types["GiftCertificate.Date"] == types["GiftCertificate.DueDate"] == "date"
    assert fields(request)["GiftCertificate.DueDate"] == "2027-12-20"


def test_custom_attributes_become_order_type_element_fields():
    payload = order_payload(
        attributes=[
            {
                "type": {"name": "giftWrap"},
                "elements": [
                    {"key": "message", "value": "Hi"},
                    {"key": "paper", "value": "3", "selectionValue": "Gold"},
                ],
            },
            {"type": {"name": "source"}, "elements": [{"key": "campaign", "value": 2026}]},
            {"type": None, "elements": [{"key": "orphan", "value": "x"}]},
        ]
    )

    sent = fields(run("OrderCompleted", payload))

    assert {k: v for k, v in sent.items() if "_" in k} == {
        "Order.giftWrap_message": "Hi",
        "Order.giftWrap_paper": "Gold",
        "Order.source_campaign": "2026",
    }


def test_vat_is_included_plus_added_in_the_order_money_style():
    payload = order_payload()
    payload["order"]["totals"].update(
        taxIncluded={"value": 199.8, "formattedValue": "199.80 SEK"},
        taxAdded={"value": "1050", "formattedValue": "1 050.00 SEK"},
    )

    sent = fields(run("OrderCompleted", payload))

    assert sent["Order.Vat"] == "1 249.80 SEK"
    assert sent["Order.VatAmount"] == "1249.80"


@pytest.mark.parametrize(
    ("rates", "values", "expected"),
    [
        ((25, 25), (998, 400), "25"),
        ((12.5, "12.5"), (10, 20), "12.5"),
        ((25, 12), (100, 300), "12"),
        ((6, 25.0), (500, 499.99), "6"),
    ],
)
def test_vat_percent_shared_else_the_rate_of_the_largest_line(rates, values, expected):
    payload = order_payload()
    for line, rate, value in zip(payload["order"]["lines"], rates, values, strict=True):
        line["taxPercent"] = rate
        line["lineValue"] = {"value": value, "formattedValue": f"{value} SEK"}

    assert fields(run("OrderCompleted", payload))["Order.Vatpercent"] == expected


def test_items_are_distinct_in_line_order():
    payload = order_payload()
    first, second = payload["order"]["lines"]
    payload["order"]["lines"] = [second, first, {**second, "size": "43-46"}]

    sent = fields(run("OrderCompleted", payload))

    assert sent["Order.Names"] == ["Wool Socks", "Merino Scarf"]
    assert sent["Order.Sizes"] == ["39-42", "One Size", "43-46"]
    assert sent["Order.ProductCount"] == "3"
    assert sent["Order.IndividualProductCount"] == "4"


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ("OrderCompleted", "order:10452"),
        ("OrderShipped", "shipment:3311"),
        ("RefundCompleted", "return:415"),
        ("OrderCreated", "cart:anna.lindqvist@example.com:a1b2c3d4e5f60718293a4b5c6d7e8f90"),
        ("Newsletter", None),
    ],
)
def test_object_key_names_the_object_an_event_is_about(event, expected):
    assert object_key(event, sample(event)) == expected


def test_unknown_event_is_a_mapping_error():
    with pytest.raises(MappingError, match="unknown event"):
        map_event("OrderTeleported", {"order": {}}, MappingContext())
