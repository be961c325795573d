"""One test per conditional rule of the field catalog."""

import json

import pytest

from integration import catalog
from integration.mapping import MappingContext, MappingError, map_event, object_key
from tests.mapping.cases import fields, load, order_payload, run, sample

ORDER_EVENTS = ["OrderCreated", "OrderPlaced", "OrderCompleted", "OrderShipped", "OrderCancellation"]
BILLING_KEYS = [f.key for f in catalog.FIELDS if f.key.startswith("Order.Billing")]


@pytest.mark.parametrize("event", [*ORDER_EVENTS, "GiftCertificate", "RefundCompleted"])
def test_only_completed_and_shipped_orders_send_billing_fields_and_handling(event):
    sent = fields(run(event, sample(event)))

    if event in ("OrderCompleted", "OrderShipped"):
        assert sent["Order.BillingStreet"] == "Box 1234"
        assert sent["Order.BillingZipcode"] == "111 22"
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


def test_refund_values_keep_one_entry_per_returned_line_while_item_lists_stay_distinct():
    payload = sample("RefundCompleted")
    line = payload["return"]["lines"][0]
    payload["return"]["lines"] = [line, {**line, "id": 2}, {**line, "id": 3, "lineValue": {"value": 120}}]

    sent = fields(run("RefundCompleted", payload))

    assert sent["Order.RefundValuePcs"] == ["400.00 SEK", "400.00 SEK", "120.00 SEK"]
    assert sent["Order.RefundValuePcsAmount"] == ["400.00", "400.00", "120.00"]
    assert sent["Order.Names"] == ["Wool Socks"]
    assert sent["Order.ProductCount"] == "3"


def test_a_returned_line_without_a_readable_value_is_left_out_with_a_note():
    payload = sample("RefundCompleted")
    line = payload["return"]["lines"][0]
    payload["return"]["lines"] = [line, {**line, "id": 2, "lineValue": {"value": "n/a"}}]

    request = run("RefundCompleted", payload)

    assert fields(request)["Order.RefundValuePcsAmount"] == ["400.00"]
    assert "Order.RefundValuePcsAmount: returned line 2 has no readable lineValue; left out" in request.notes


@pytest.mark.parametrize(
    ("deducted", "amount", "sends_plain"),
    [(0, "0.00", False), (None, None, False), (-5, "-5.00", False), ("12.5", "12.50", True), (399.8, "399.80", True)],
)
def test_tax_deduction_amount_is_common_and_tax_deduction_only_above_zero(deducted, amount, sends_plain):
    payload = order_payload()
    payload["order"]["totals"]["taxDeducted"] = {"value": deducted, "currency": {"code": "SEK"}}

    sent = fields(run("OrderCompleted", payload))

    # like Order.HandlingAmount: sent whenever Centra gives the value, "0.00" included
    assert sent.get("Order.TaxDeductionAmount") == amount
    assert ("Order.TaxDeduction" in sent) == sends_plain


@pytest.mark.parametrize("send_cart_link", [True, False])
def test_cart_url_only_when_the_setting_is_on(send_cart_link):
    ctx = MappingContext(send_cart_link=send_cart_link, cart_link_template="https://shop.example/cart/{selection}")

    sent = fields(run("OrderCreated", sample("OrderCreated"), ctx))

    expected = "https://shop.example/cart/a1b2c3d4e5f60718293a4b5c6d7e8f90" if send_cart_link else None
    assert sent.get("Order.CartUrl") == expected


@pytest.mark.parametrize(
    ("template", "why"),
    [
        ("", "the connection has no cart link template"),
        ("https://shop.example/cart", "the connection's cart link template has no {selection}"),
    ],
)
def test_cart_url_that_cannot_be_built_leaves_a_note(template, why):
    ctx = MappingContext(send_cart_link=True, cart_link_template=template)

    request = run("OrderCreated", sample("OrderCreated"), ctx)

    assert "Order.CartUrl" not in fields(request)
    assert request.notes == [f"Order.CartUrl left out: 'send cart link' is on but {why}"]


@pytest.mark.parametrize("lines", [[], None, [None, {}], "3 items"])
def test_a_cart_without_items_is_a_mapping_error(lines):
    payload = sample("OrderCreated")
    payload["order"]["lines"] = lines

    with pytest.raises(MappingError, match="the cart has no items"):
        run("OrderCreated", payload)


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


def _shipment_line(order_line: dict, quantity: int, value: float) -> dict:
    money = {"value": value, "formattedValue": f"{value:.2f} SEK"}
    return {"id": 90 + order_line["id"], "quantity": quantity, "lineValue": money, "orderLine": order_line}


def test_a_partial_shipment_lists_only_its_own_lines():
    payload = sample("OrderShipped")
    scarf, socks = payload["shipment"]["order"]["lines"]
    payload["shipment"]["lines"] = [_shipment_line(scarf, 1, 499.0)]  # one of the two scarves, no socks yet

    sent = fields(run("OrderShipped", payload))

    assert sent["Order.Names"] == ["Merino Scarf"]
    assert sent["Order.Skus"] == ["NW-SCARF-GRN-OS"]
    assert sent["Order.ProductCount"] == "1"
    assert sent["Order.IndividualProductCount"] == "1"
    products = json.loads(sent["Order.Products"])
    assert [(p["name"], p["quantity"], p["lineValueAmount"]) for p in products] == [("Merino Scarf", 1, "499.00")]
    # the order's totals stay the order's
    assert sent["Order.TotalAmount"] == "1347.00"


@pytest.mark.parametrize("lines", [None, []])
def test_a_shipment_without_lines_lists_the_orders_lines(lines):
    payload = sample("OrderShipped")
    payload["shipment"]["lines"] = lines

    sent = fields(run("OrderShipped", payload))

    assert sent["Order.Names"] == ["Merino Scarf", "Wool Socks"]
    assert sent["Order.IndividualProductCount"] == "3"


def test_a_shipment_line_that_is_not_an_object_is_left_out_with_a_note():
    payload = sample("OrderShipped")
    socks = payload["shipment"]["order"]["lines"][1]
    payload["shipment"]["lines"] = ["line-7", _shipment_line(socks, 1, 400.0)]

    request = run("OrderShipped", payload)

    assert fields(request)["Order.Names"] == ["Wool Socks"]
    assert request.notes == ["shipment line 1 left out of the item fields: it is not an object ('line-7')"]


@pytest.mark.parametrize(
    ("setting", "comment", "expected"),
    [
        ("Sorry, sold out.", "Customer asked", "Sorry, sold out."),
        ("", "Please leave the parcel at the door.", None),
        ("  ", "Customer asked", None),
        ("", None, None),
    ],
)
def test_additional_message_is_the_configured_message_or_nothing(setting, comment, expected):
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


@pytest.mark.parametrize(
    ("value", "as_number", "expected_value", "expected_number"),
    [
        ({"value": 500, "formattedValue": "500.00 SEK"}, None, "500.00 SEK", "500.00"),
        (500, None, "500.00 SEK", "500.00"),
        ("500", None, "500.00 SEK", "500.00"),
        ("500.00 SEK", None, "500.00 SEK", "500.00"),
        ("1 299,50 kr", None, "1 299,50 kr", "1299.50"),
        ("€25", None, "€25", "25.00"),
        ("500.00 SEK", "450", "500.00 SEK", "450.00"),
        ({"value": 500, "formattedValue": "500.00 SEK"}, "  ", "500.00 SEK", "500.00"),
    ],
)
def test_gift_certificate_value_as_money_number_or_text(value, as_number, expected_value, expected_number):
    payload = sample("GiftCertificate")
    payload["giftCertificate"].update(value=value, valueAsNumber=as_number)

    request = run("GiftCertificate", payload)

    assert fields(request)["GiftCertificate.Value"] == expected_value
    assert fields(request)["GiftCertificate.ValueAsNumber"] == expected_number
    assert request.notes == []


def test_a_gift_certificate_value_that_cannot_be_read_is_kept_as_text_with_a_note():
    payload = sample("GiftCertificate")
    payload["giftCertificate"].update(value="Five hundred crowns", valueAsNumber="n/a")

    request = run("GiftCertificate", payload)

    assert fields(request)["GiftCertificate.Value"] == "Five hundred crowns"
    assert "GiftCertificate.ValueAsNumber" not in fields(request)
    assert request.notes == [
        "giftCertificate.valueAsNumber 'n/a' is not a number; not used",
        "GiftCertificate.ValueAsNumber left out: no amount could be read from the gift certificate",
    ]


def test_a_gift_certificate_monetary_value_without_a_number_leaves_a_note():
    payload = sample("GiftCertificate")
    payload["giftCertificate"].update(value={"currency": {"code": "SEK"}}, valueAsNumber=None)

    request = run("GiftCertificate", payload)

    assert "GiftCertificate.Value" not in fields(request)
    assert request.notes[0].startswith("GiftCertificate.Value left out: giftCertificate.value {")


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
