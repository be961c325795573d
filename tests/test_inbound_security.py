"""Both inbound endpoints against the shared bad-input suite (tests/inbound_cases.py), plus each one's own cases:
the JSON events' envelope and every event's body, and the webhook plugin's form and payload quirks."""

from __future__ import annotations

import json
from itertools import count
from urllib.parse import quote, quote_from_bytes, urlencode

import pytest

from tests.inbound_cases import Case, InboundSecurityCases, cases, fresh_id

FORM = "application/x-www-form-urlencoded"
WHEN = "2026-01-01T12:00:00Z"
LONG_EMAIL = "a" * 250 + "@example.com"  # 262 characters: a valid shape, longer than the email columns
_centra_ids = count(1_000_000)


# --- POST /centra/<token>/events --------------------------------------------------------------------------------


def event(type_: str, **body) -> dict:
    return {"id": fresh_id(), "type": type_, "occurredAt": WHEN, **body}


def order(**extra) -> dict:
    return {"number": "10452", "customer": {"email": "anna@example.com"}, **extra}


def post(document) -> callable:
    return lambda ep: ep.send(ep.encode(document() if callable(document) else document))


def post_event(type_: str, **body) -> callable:
    return lambda ep: ep.send(ep.encode(event(type_, **body)))


def post_envelope(**fields) -> callable:
    """A Newsletter event with envelope fields replaced (None removes one)."""

    def send(ep):
        document = event("Newsletter", email="a@example.com") | fields
        return ep.send(ep.encode({k: v for k, v in document.items() if v is not _MISSING}))

    return send


_MISSING = object()

ENVELOPE = cases(
    ("envelope/no id", post_envelope(id=_MISSING), 400, '"field": "id"'),
    ("envelope/no type", post_envelope(type=_MISSING), 400, '"field": "type"'),
    ("envelope/no occurredAt", post_envelope(occurredAt=_MISSING), 400, '"field": "occurredAt"'),
    ("envelope/id null", post_envelope(id=None), 400, '"field": "id"'),
    ("envelope/id a list", post_envelope(id=["a"]), 400, '"field": "id"'),
    ("envelope/id true", post_envelope(id=True), 400, '"field": "id"'),
    ("envelope/id blank", post_envelope(id=""), 400, '"field": "id"'),
    ("envelope/id with spaces", post_envelope(id=" evt-1 "), 400, "whitespace"),
    ("envelope/id 201 characters", post_envelope(id="x" * 201), 400, "200 characters"),
    ("envelope/occurredAt not a time", post_envelope(occurredAt="yesterday"), 400, '"field": "occurredAt"'),
    ("envelope/occurredAt month 13", post_envelope(occurredAt="2026-13-01"), 400, '"field": "occurredAt"'),
    ("envelope/occurredAt a number", post_envelope(occurredAt=1767225600), 400, '"field": "occurredAt"'),
    ("envelope/occurredAt null", post_envelope(occurredAt=None), 400, '"field": "occurredAt"'),
    ("envelope/events empty", post({"events": []}), 400, "non-empty list"),
    ("envelope/events an object", post({"events": {}}), 400, "non-empty list"),
    ("envelope/events a string", post({"events": "x"}), 400, "non-empty list"),
    (
        "envelope/101 events",
        post(lambda: {"events": [event("Newsletter", email="a@example.com") for _ in range(101)]}),
        400,
        "at most 100",
    ),
    ("envelope/an event that is a number", post({"events": [5]}), 400, "JSON object"),
    (
        "envelope/one bad event in a batch",
        post(lambda: {"events": [event("Newsletter", email="a@example.com"), event("Newsletter")]}),
        400,
        '"index": 1',
    ),
)

TYPE = cases(
    ("type/null", post_envelope(type=None), 400, '"field": "type"'),
    ("type/a number", post_envelope(type=5), 400, "unknown event type"),
    ("type/a list", post_envelope(type=["Newsletter"]), 400, '"field": "type"'),
    ("type/unknown", post_envelope(type="OrderTeleported"), 400, "unknown event type"),
    ("type/trailing space", post_envelope(type="Newsletter "), 400, "whitespace"),
    ("type/leading tab", post_envelope(type="\tNewsletter"), 400, "whitespace"),
    ("type/lower case", post_envelope(type="newsletter"), 400, "unknown event type"),
    ("type/61 characters", post_envelope(type="N" * 61), 400, "60 characters"),
    ("type/5000 characters", post_envelope(type="N" * 5000), 400, "60 characters"),
    ("type/webhook kind", post_envelope(type="order"), 400, "unknown event type"),
)

ORDER_BODIES = cases(
    ("OrderCompleted/no order", post_event("OrderCompleted"), 400, '"field": "order"'),
    ("OrderCompleted/order null", post_event("OrderCompleted", order=None), 400, '"field": "order"'),
    ("OrderCompleted/order a string", post_event("OrderCompleted", order="10452"), 400, '"field": "order"'),
    ("OrderCompleted/no number", post_event("OrderCompleted", order=order(number=None)), 400, "order.number"),
    ("OrderCompleted/number 65 characters", post_event("OrderCompleted", order=order(number="1" * 65)), 400, "64"),
    ("OrderCompleted/no email anywhere", post_event("OrderCompleted", order={"number": "1"}), 400, "no email"),
    (
        "OrderCompleted/customer email invalid",
        post_event("OrderCompleted", order=order(customer={"email": "not-an-email"})),
        400,
        "order.customer.email",
    ),
    (
        "OrderCompleted/customer email over 254",
        post_event("OrderCompleted", order=order(customer={"email": LONG_EMAIL})),
        400,
        "254 characters",
    ),
    (
        "OrderCompleted/shipping email invalid",
        post_event("OrderCompleted", order=order(shippingAddress={"email": "x@"})),
        400,
        "order.shippingAddress.email",
    ),
    (
        "OrderCompleted/event email invalid",
        post_event("OrderCompleted", order=order(), email="nope"),
        400,
        '"field": "email"',
    ),
    (
        "OrderCompleted/quantity -1",
        post_event("OrderCompleted", order=order(lines=[{"quantity": -1}])),
        400,
        "order.lines.0.quantity",
    ),
    (
        "OrderCompleted/quantity many",
        post_event("OrderCompleted", order=order(lines=[{"quantity": "many"}])),
        400,
        "order.lines.0.quantity",
    ),
    (
        "OrderCompleted/quantity 1.5",
        post_event("OrderCompleted", order=order(lines=[{"quantity": 1.5}])),
        400,
        "order.lines.0.quantity",
    ),
    (
        "OrderCompleted/quantity past 32 bits",
        post_event("OrderCompleted", order=order(lines=[{"quantity": 2**31}])),
        400,
        "order.lines.0.quantity",
    ),
    (
        "OrderCompleted/quantity true",
        post_event("OrderCompleted", order=order(lines=[{"quantity": True}])),
        400,
        "order.lines.0.quantity",
    ),
    ("OrderCompleted/lines an object", post_event("OrderCompleted", order=order(lines={"a": 1})), 400, "order.lines"),
    ("OrderCompleted/a line a string", post_event("OrderCompleted", order=order(lines=["x"])), 400, "order.lines.0"),
    (
        "OrderCompleted/unit price not a number",
        post_event("OrderCompleted", order=order(lines=[{"unitPrice": {"value": "abc"}}])),
        400,
        "order.lines.0.unitPrice",
    ),
    (
        "OrderCompleted/grand total a word",
        post_event("OrderCompleted", order=order(grandTotal="lots")),
        400,
        "order.grandTotal",
    ),
    (
        "OrderCompleted/shipping total true",
        post_event("OrderCompleted", order=order(totals={"shipping": True})),
        400,
        "order.totals.shipping",
    ),
    (
        "OrderCompleted/tax percent a word",
        post_event("OrderCompleted", order=order(lines=[{"taxPercent": "high"}])),
        400,
        "order.lines.0.taxPercent",
    ),
    ("OrderPlaced/no email", post_event("OrderPlaced", order={"number": "1"}), 400, "no email"),
    ("OrderPlaced/customer a string", post_event("OrderPlaced", order=order(customer="anna")), 400, "order.customer"),
    ("OrderCancellation/no email", post_event("OrderCancellation", order={"number": "1"}), 400, "no email"),
    ("OrderCreated/no selection", post_event("OrderCreated", email="a@example.com", order={}), 400, "selection"),
    (
        "OrderCreated/no email",
        post_event("OrderCreated", selection="s", order={"lines": [{"quantity": 1}]}),
        400,
        "no email",
    ),
    (
        "OrderCreated/empty cart",
        post_event("OrderCreated", selection="s", email="a@example.com", order={}),
        400,
        "at least one item",
    ),
    (
        "OrderCreated/cart of empty lines",
        post_event("OrderCreated", selection="s", email="a@example.com", order={"lines": [{}]}),
        400,
        "at least one item",
    ),
    (
        "OrderCreated/email invalid",
        post_event("OrderCreated", selection="s", email="a@", order={}),
        400,
        '"field": "email"',
    ),
    (
        "OrderCreated/email over 254",
        post_event("OrderCreated", selection="s", email=LONG_EMAIL, order={}),
        400,
        "254 characters",
    ),
    (
        "OrderCreated/selection 201 characters",
        post_event("OrderCreated", selection="s" * 201, email="a@example.com", order={}),
        400,
        "selection",
    ),
    (
        "OrderCreated/quantity -1",
        post_event("OrderCreated", selection="s", email="a@example.com", order={"lines": [{"quantity": -1}]}),
        400,
        "order.lines.0.quantity",
    ),
    ("OrderShipped/no shipment", post_event("OrderShipped", email="a@example.com"), 400, '"field": "shipment"'),
    ("OrderShipped/shipment a string", post_event("OrderShipped", shipment="3311"), 400, '"field": "shipment"'),
    (
        "OrderShipped/no email",
        post_event("OrderShipped", shipment={"id": "1", "order": {"number": "1"}}),
        400,
        "no email",
    ),
    (
        "OrderShipped/order without number",
        post_event("OrderShipped", shipment={"id": "1", "order": {"customer": {"email": "a@example.com"}}}),
        400,
        "shipment.order.number",
    ),
    ("RefundCompleted/no return", post_event("RefundCompleted", email="a@example.com"), 400, '"field": "return"'),
    ("RefundCompleted/return a list", post_event("RefundCompleted", **{"return": []}), 400, '"field": "return"'),
    ("RefundCompleted/no email", post_event("RefundCompleted", **{"return": {"id": "4"}}), 400, "no email"),
    (
        "RefundCompleted/returned quantity -2",
        post_event("RefundCompleted", email="a@example.com", **{"return": {"id": "4", "lines": [{"quantity": -2}]}}),
        400,
        "return.lines.0.quantity",
    ),
    (
        "RefundCompleted/refund not a number",
        post_event("RefundCompleted", email="a@example.com", **{"return": {"id": "4", "grandTotal": {"value": "x"}}}),
        400,
        "return.grandTotal",
    ),
    ("ReturnCompleted/no email", post_event("ReturnCompleted", **{"return": {"id": "5"}}), 400, "no email"),
    (
        "GiftCertificate/no certificate",
        post_event("GiftCertificate", order=order()),
        400,
        '"field": "giftCertificate"',
    ),
    (
        "GiftCertificate/recipient email invalid",
        post_event("GiftCertificate", order=order(), giftCertificate={"email": "friend@"}),
        400,
        "giftCertificate.email",
    ),
    (
        "GiftCertificate/no email",
        post_event("GiftCertificate", order={"number": "1"}, giftCertificate={"code": "G"}),
        400,
        "no email",
    ),
)

PERSON_BODIES = cases(
    ("Newsletter/no email", post_event("Newsletter"), 400, '"field": "email"'),
    ("Newsletter/email invalid", post_event("Newsletter", email="not-an-email"), 400, '"field": "email"'),
    ("Newsletter/email over 254", post_event("Newsletter", email=LONG_EMAIL), 400, "254 characters"),
    ("Newsletter/email 320 characters", post_event("Newsletter", email="a" * 64 + "@" + "b" * 251 + ".se"), 400, "254"),
    ("Newsletter/email a number", post_event("Newsletter", email=5), 400, '"field": "email"'),
    (
        "Newsletter/language 17 characters",
        post_event("Newsletter", email="a@example.com", language="x" * 17),
        400,
        "16",
    ),
    (
        "Newsletter/address email invalid",
        post_event("Newsletter", email="a@example.com", address={"email": "bad"}),
        400,
        "address.email",
    ),
    ("CustomerRegistered/no customer", post_event("CustomerRegistered"), 400, '"field": "customer"'),
    ("CustomerRegistered/no email", post_event("CustomerRegistered", customer={"id": 3}), 400, "customer.email"),
    (
        "CustomerRegistered/email over 254",
        post_event("CustomerRegistered", customer={"email": LONG_EMAIL}),
        400,
        "254 characters",
    ),
    (
        "PasswordReset/no link",
        post_event("PasswordReset", customer={"email": "a@example.com"}),
        400,
        "passwordRestoreLink",
    ),
    (
        "PasswordReset/link not a URL",
        post_event("PasswordReset", customer={"email": "a@example.com"}, passwordRestoreLink="not a url"),
        400,
        "passwordRestoreLink",
    ),
)

BACK_IN_STOCK_BODIES = cases(
    ("BackInStockSubscribe/no email", post_event("BackInStockSubscribe", item="1-2"), 400, '"field": "email"'),
    ("BackInStockSubscribe/no item", post_event("BackInStockSubscribe", email="a@example.com"), 400, '"field": "item"'),
    (
        "BackInStockSubscribe/item 65 characters",
        post_event("BackInStockSubscribe", email="a@example.com", item="1" * 65),
        400,
        "64 characters",
    ),
    (
        "BackInStockSubscribe/sku 121 characters",
        post_event("BackInStockSubscribe", email="a@example.com", item="1-2", sku="s" * 121),
        400,
        "120 characters",
    ),
    (
        "BackInStockSubscribe/country SEK",
        post_event("BackInStockSubscribe", email="a@example.com", item="1-2", shipTo={"countryCode": "SEK"}),
        400,
        "shipTo.countryCode",
    ),
    (
        "BackInStockSubscribe/email over 254",
        post_event("BackInStockSubscribe", email=LONG_EMAIL, item="1-2"),
        400,
        "254 characters",
    ),
    ("BackInStockUnsubscribe/no item", post_event("BackInStockUnsubscribe", email="a@example.com"), 400, "item"),
    ("StockUpdate/no items", post_event("StockUpdate"), 400, '"field": "items"'),
    ("StockUpdate/items empty", post_event("StockUpdate", items=[]), 400, '"field": "items"'),
    ("StockUpdate/items an object", post_event("StockUpdate", items={"item": "1"}), 400, '"field": "items"'),
    (
        "StockUpdate/available 10**30",
        lambda ep: ep.send(ep.with_raw_stock(str(10**30))),
        400,
        "out of range",
    ),
    (
        "StockUpdate/available 2**31",
        post_event("StockUpdate", items=[{"item": "1", "available": 2**31}]),
        400,
        "items.0",
    ),
    ("StockUpdate/available -1", post_event("StockUpdate", items=[{"item": "1", "available": -1}]), 400, "items.0"),
    (
        "StockUpdate/available many",
        post_event("StockUpdate", items=[{"item": "1", "available": "many"}]),
        400,
        "items.0.available",
    ),
    ("StockUpdate/no item", post_event("StockUpdate", items=[{"available": 3}]), 400, "items.0.item"),
)


class TestEventsEndpoint(InboundSecurityCases):
    url_name = "centra-events"
    content_type = "application/json"
    other_content_type = FORM

    def document(self) -> dict:
        return event("Newsletter", email="reader@example.com")

    def encode(self, document: dict) -> bytes:
        return json.dumps(document).encode()

    def raw_text_body_bytes(self, raw_json: bytes) -> bytes:
        return raw_json

    def with_raw_value(self, value_text: str) -> bytes:
        return (
            f'{{"id": "{fresh_id()}", "type": "Newsletter", "occurredAt": "{WHEN}", '
            f'"email": "reader@example.com", "extra": {value_text}}}'
        ).encode()

    def with_raw_stock(self, available: str) -> bytes:
        return (
            f'{{"id": "{fresh_id()}", "type": "StockUpdate", "occurredAt": "{WHEN}", '
            f'"items": [{{"item": "1-2", "available": {available}}}]}}'
        ).encode()

    @pytest.mark.parametrize("case", [*ENVELOPE, *TYPE, *ORDER_BODIES, *PERSON_BODIES, *BACK_IN_STOCK_BODIES])
    def test_events_case(self, case: Case):
        self.check(case)


# --- POST /centra/<token>/webhook -------------------------------------------------------------------------------


def centra_event(**fields) -> dict:
    base = {"type": "order", "action": "update", "date": "2026-01-01 12:05:10.000001", "id": next(_centra_ids)}
    return {k: v for k, v in (base | fields).items() if v is not _MISSING}


def post_form(raw: bytes) -> callable:
    return lambda ep: ep.send(raw)


def post_payload(document) -> callable:
    return lambda ep: ep.send(ep.encode(document() if callable(document) else document))


def post_centra_events(*events: dict) -> callable:
    return post_payload(lambda: {"events": list(events)})


FORM_QUIRKS = cases(
    ("form/no payload field", post_form(b"other=1"), 400, "missing"),
    ("form/payload empty", post_form(b"payload="), 400, "missing"),
    ("form/payload blank", post_form(b"payload=+++"), 400, "missing"),
    ("form/payload twice", post_form(b"payload=%7B%7D&payload=%7B%7D"), 400, "once"),
    ("form/invalid utf-8 escape", post_form(b"payload=%FF%FE"), 400, "UTF-8"),
    ("form/raw JSON body", post_form(b'{"events": []}'), 400, "missing"),
    ("form/payload not JSON", post_form(b"payload=%7Bnot"), 400, "not valid JSON"),
    ("form/payload a list", post_payload(["a"]), 400, "non-empty JSON object"),
    ("form/payload empty object", post_payload({}), 400, "non-empty JSON object"),
    ("form/NUL in the form", post_form(b"payload=%7B%22DisplayItems%22%3A%5B%22a%5Cu0000%22%5D%7D"), 400, "NUL"),
    ("form/events not a list", post_payload({"events": {"type": "order"}}), 400, "must be a list"),
    ("form/events and catalogue keys", post_payload({"events": [], "DisplayItems": ["1"]}), 400, "not both"),
    ("form/101 events", post_payload(lambda: {"events": [centra_event() for _ in range(101)]}), 400, "at most 100"),
)

CENTRA_EVENTS = cases(
    ("webhook event/a number", post_centra_events(5), 400, '"index": 0'),
    ("webhook event/no type", lambda ep: post_centra_events(centra_event(type=_MISSING))(ep), 400, '"field": "type"'),
    ("webhook event/no id", lambda ep: post_centra_events(centra_event(id=_MISSING))(ep), 400, '"field": "id"'),
    ("webhook event/id null", lambda ep: post_centra_events(centra_event(id=None))(ep), 400, '"field": "id"'),
    ("webhook event/id true", lambda ep: post_centra_events(centra_event(id=True))(ep), 400, '"field": "id"'),
    ("webhook event/id an object", lambda ep: post_centra_events(centra_event(id={"a": 1}))(ep), 400, '"field": "id"'),
    ("webhook event/order id a word", lambda ep: post_centra_events(centra_event(id="abc"))(ep), 400, "numeric id"),
    ("webhook event/order id 1.5", lambda ep: post_centra_events(centra_event(id=1.5))(ep), 400, "numeric id"),
    (
        "webhook event/shipment id negative",
        lambda ep: post_centra_events(centra_event(type="shipment", id=-3))(ep),
        400,
        "numeric id",
    ),
    (
        "webhook event/id 121 characters",
        lambda ep: post_centra_events(centra_event(type="account", id="1" * 121))(ep),
        400,
        "120 characters",
    ),
    (
        "webhook event/type trailing space",
        lambda ep: post_centra_events(centra_event(type="order "))(ep),
        400,
        "whitespace",
    ),
    (
        "webhook event/type leading tab",
        lambda ep: post_centra_events(centra_event(type="\torder"))(ep),
        400,
        "whitespace",
    ),
    (
        "webhook event/type 5000 characters",
        lambda ep: post_centra_events(centra_event(type="o" * 5000))(ep),
        400,
        "60 characters",
    ),
    (
        "webhook event/type a list",
        lambda ep: post_centra_events(centra_event(type=["order"]))(ep),
        400,
        '"field": "type"',
    ),
    ("webhook event/type blank", lambda ep: post_centra_events(centra_event(type=""))(ep), 400, '"field": "type"'),
    (
        "webhook event/action 61 characters",
        lambda ep: post_centra_events(centra_event(action="a" * 61))(ep),
        400,
        '"field": "action"',
    ),
    ("webhook event/action an object", lambda ep: post_centra_events(centra_event(action={}))(ep), 400, "action"),
    ("webhook event/date a list", lambda ep: post_centra_events(centra_event(date=[1]))(ep), 400, '"field": "date"'),
)

CATALOGUE = cases(
    ("catalogue/ids a string", post_payload({"DisplayItems": "52"}), 400, "must be a list of ids"),
    ("catalogue/ids null", post_payload({"DisplayItems": None}), 400, "DisplayItems"),
    ("catalogue/an id an object", post_payload({"DisplayItems": [{"id": 1}]}), 400, "DisplayItems"),
    ("catalogue/an id 65 characters", post_payload({"DisplayItems": ["1" * 65]}), 400, "64 characters"),
    ("catalogue/key 61 characters", post_payload({"K" * 61: ["1"]}), 400, "60 characters"),
    ("catalogue/key with a space", post_payload({" DisplayItems": ["1"]}), 400, "whitespace"),
    ("catalogue/key blank", post_payload({"": ["1"]}), 400, "blank"),
)


class TestWebhookEndpoint(InboundSecurityCases):
    url_name = "centra-webhook"
    content_type = FORM
    other_content_type = "application/json"

    def document(self) -> dict:
        return {"events": [centra_event()]}

    def encode(self, document: dict) -> bytes:
        return urlencode({"payload": json.dumps(document)}).encode()

    def raw_text_body_bytes(self, raw_json: bytes) -> bytes:
        return b"payload=" + quote_from_bytes(raw_json, safe="").encode()

    def with_raw_value(self, value_text: str) -> bytes:
        text = (
            f'{{"events": [{{"type": "order", "action": "update", "date": "2026-01-01 12:00:00", '
            f'"id": {next(_centra_ids)}, "extra": {value_text}}}]}}'
        )
        return b"payload=" + quote(text, safe="").encode()

    @pytest.mark.parametrize("case", [*FORM_QUIRKS, *CENTRA_EVENTS, *CATALOGUE])
    def test_webhook_case(self, case: Case):
        self.check(case)
