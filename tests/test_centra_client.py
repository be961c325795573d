"""The Centra GraphQL client against the fake Centra: documents, errors, paging, stock."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from django.utils import timezone

from integration.centra.client import (
    CentraClient,
    CentraQueryError,
    CentraUnavailable,
    verify_token,
)
from integration.inbound.signature import HEADER, verify_signature
from integration.sandbox.fake_centra import send_webhook, webhook_event
from tests.factories import ConnectionFactory
from tests.fixtures.centra import DATA_DIR, centra_sample


@pytest.fixture
def client(fake_centra):
    return CentraClient(fake_centra.url, fake_centra.token)


def test_order_by_number_fetches_every_field_the_mapping_reads(fake_centra, client):
    # given an order stored in Centra
    fake_centra.add_order(centra_sample("orders", 10452))
    # when it is fetched by number
    order = client.order_by_number(10452)
    # then the document carries the catalog's sources, in Centra's shape
    assert order["number"] == 10452 and order["status"] == "CONFIRMED"
    assert order["grandTotal"] == {"value": 2348.0, "formattedValue": "2 348.00 SEK", "currency": {"code": "SEK"}}
    assert order["shippingAddress"]["country"]["code"] == "SE"
    assert order["customer"]["email"] == "anna.svensson@example.com"
    assert order["language"]["code"] == "sv"
    assert order["attributes"][0]["elements"][0] == {"key": "message", "value": "Grattis!"}
    assert order["paymentMethod"]["name"] == "Klarna Checkout"
    assert order["shippingPriceGroup"]["shippingOption"]["name"] == "PostNord MyPack Collect"
    line = order["lines"][1]
    assert line["brand"]["name"] == "Acme Studios" and line["collection"]["name"] == "SS26"
    assert line["folderName"] == "Trousers" and line["productSize"]["SKU"] == "CHI002SA32"
    assert line["lineValue"]["formattedValue"] == "1 400.00 SEK" and line["taxPercent"] == 25.0
    # and Centra was asked with the connection's variables
    assert fake_centra.queries[-1]["variables"] == {"number": 10452}


def test_shipment_and_return_come_with_their_full_order(fake_centra, client):
    fake_centra.add_order(centra_sample("orders", 10452))
    fake_centra.add_shipment(centra_sample("shipments", 3311))
    fake_centra.add_return(centra_sample("returns", 415))

    shipment = client.shipment_by_id(3311)
    ret = client.return_by_id(415)

    assert shipment["isShipped"] is True and shipment["trackingNumber"] == "00370712345678901234"
    assert shipment["carrierInformation"]["carrierName"] == "PostNord"
    assert shipment["order"]["number"] == 10452 and shipment["order"]["lines"][0]["productName"] == "Oxford Shirt"
    assert ret["returnStatus"] == "COMPLETED" and ret["grandTotal"]["value"] == 700.0
    assert ret["order"]["customer"]["email"] == "anna.svensson@example.com"
    assert ret["lines"][0]["orderLine"]["productName"] == "Chino Trousers"


def test_unknown_objects_are_none(fake_centra, client):
    assert client.order_by_number(99999) is None
    assert client.shipment_by_id(1) is None
    assert client.return_by_id(1) is None
    assert client.customer_by_id(1) is None


def test_customer_by_id(fake_centra, client):
    fake_centra.add_customer(centra_sample("customers", 2207))
    customer = client.customer_by_id(2207)
    assert customer["email"] == "anna.svensson@example.com"
    assert customer["billingAddress"]["city"] == "Stockholm"


def test_rate_limit_is_retryable_with_centras_retry_after(fake_centra, client):
    fake_centra.fail("rate_limit", retry_after=7)
    with pytest.raises(CentraUnavailable) as caught:
        client.order_by_number(10452)
    assert caught.value.rate_limited is True
    assert caught.value.retry_after == "7"  # as sent; integration.retry reads it


def test_server_error_and_timeout_and_refused_connection_are_retryable(fake_centra, client):
    fake_centra.fail("server_error")
    with pytest.raises(CentraUnavailable, match="500"):
        client.order_by_number(10452)

    fake_centra.fail("slow", delay=0.5)
    slow_client = CentraClient(fake_centra.url, fake_centra.token, timeout=(1, 0.1))
    with pytest.raises(CentraUnavailable, match="in time"):
        slow_client.order_by_number(10452)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with pytest.raises(CentraUnavailable, match="cannot reach"):
        CentraClient(f"http://127.0.0.1:{closed_port}/graphql", "t").order_by_number(1)


def test_graphql_errors_with_http_200_are_query_errors_with_centras_message(fake_centra, client):
    fake_centra.fail("graphql_error", message="Field 'orders' requires permission Order:read")
    with pytest.raises(CentraQueryError) as caught:
        client.order_by_number(10452)
    assert str(caught.value) == "Field 'orders' requires permission Order:read"


def test_expired_or_wrong_token_is_a_query_error_that_never_shows_the_token(fake_centra, client):
    fake_centra.fail("expired_token")
    with pytest.raises(CentraQueryError) as caught:
        client.order_by_number(10452)
    assert "401" in str(caught.value) and "expired" in str(caught.value)
    assert fake_centra.token not in str(caught.value)

    wrong = CentraClient(fake_centra.url, "not-the-token-123456")
    with pytest.raises(CentraQueryError) as caught:
        wrong.order_by_number(10452)
    assert "not-the-token-123456" not in str(caught.value) and "401" in str(caught.value)


def test_fake_rejects_a_query_the_schema_does_not_allow(fake_centra, client):
    # given a query with a field Centra's schema does not have
    response = requests.post(
        fake_centra.url,
        json={"query": "{ orders { number trackingUrl } }"},
        headers={"Authorization": f"Bearer {fake_centra.token}"},
        timeout=5,
    )
    # then the fake answers like a GraphQL server
    assert response.status_code == 200
    assert response.json()["errors"][0]["message"] == "Cannot query field 'trackingUrl' on type 'Order'."
    assert "data" not in response.json()
    with pytest.raises(CentraQueryError, match="Cannot query field 'trackingUrl'"):
        client.query("{ orders { number trackingUrl } }")


def test_an_inferred_field_rejected_by_the_tenant_is_left_out_and_the_order_still_arrives(fake_centra, client):
    # given a tenant whose schema has no DirectToConsumerOrder.language
    fake_centra.add_order(centra_sample("orders", 10452))
    fake_centra.fail("graphql_error", message='Cannot query field "language" on type "DirectToConsumerOrder".')
    # when the order is fetched
    order = client.order_by_number(10452)
    # then it is asked again without the [I] fields, and later queries skip them at once
    assert order["number"] == 10452 and "language" not in order
    assert "language" in fake_centra.queries[0]["query"] and "language" not in fake_centra.queries[1]["query"]
    client.order_by_number(10452)
    assert len(fake_centra.queries) == 3


def test_changed_orders_are_paged_until_a_short_page(fake_centra, client):
    base = centra_sample("orders", 10452)
    for number in range(20001, 20006):
        fake_centra.add_order({**base, "number": number, "id": f"hash{number}"})
    fake_centra.add_order({**base, "number": 19999, "updatedAt": "2020-01-01T00:00:00+00:00"}, touch=False)
    now = timezone.now()

    numbers = [
        o["number"] for o in client.orders_changed(now - timedelta(minutes=5), now + timedelta(seconds=5), limit=2)
    ]

    assert numbers == [20001, 20002, 20003, 20004, 20005]
    assert [q["variables"]["page"] for q in fake_centra.queries] == [1, 2, 3]


def test_stock_for_items_gives_free_to_allocate_per_size_as_asked(fake_centra, client):
    fake_centra.set_stock(23401, 0)
    fake_centra.set_stock(23402, 14)
    stock = client.stock_for_items([23401, "23402", "12366-23402", 5555])
    assert stock == {23401: 0, "23402": 14, "12366-23402": 14}
    assert "freeToAllocateQuantity" in fake_centra.queries[-1]["query"]


def test_product_for_size_gives_the_back_in_stock_details(fake_centra, client):
    fake_centra.load_dir(DATA_DIR)
    size = client.product_for_size(23401)
    assert size["SKU"] == "OXF001LBM" and size["EAN"] == "7350000000001"
    assert size["productVariant"]["name"] == "Light Blue"
    assert size["productVariant"]["product"]["name"] == "Oxford Shirt"
    assert size["productVariant"]["product"]["brand"]["name"] == "Acme Studios"


@pytest.mark.django_db
def test_verify_token(fake_centra):
    good = ConnectionFactory(centra_api_url=fake_centra.url, centra_api_token=fake_centra.token)
    bad = ConnectionFactory(centra_api_url=fake_centra.url, centra_api_token="expired-token-abcdef")
    missing = ConnectionFactory(centra_api_url=fake_centra.url, centra_api_token="")

    assert verify_token(good) == (True, "Centra API token works (Order:read)")
    ok, message = verify_token(bad)
    assert not ok and "401" in message and "expired-token-abcdef" not in message
    assert verify_token(missing) == (False, "no Centra API token")


def test_fake_control_endpoint_sets_failures_over_http(fake_centra, client):
    control = fake_centra.url.replace("/graphql", "/_fake/control")
    answer = requests.post(control, json={"fail": {"mode": "server_error", "times": 2}}, timeout=5).json()
    assert answer["failures"][0]["mode"] == "server_error"
    for _ in range(2):
        with pytest.raises(CentraUnavailable):
            client.order_by_number(1)
    assert client.order_by_number(1) is None


def test_send_webhook_signs_the_raw_form_body_like_centra():
    received = {}

    class Capture(BaseHTTPRequestHandler):
        def do_POST(self):
            received["body"] = self.rfile.read(int(self.headers["Content-Length"]))
            received["headers"] = dict(self.headers)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        events = [webhook_event("order", 10452), webhook_event("shipment", 3311, "good_to_go")]
        response = send_webhook(f"http://127.0.0.1:{server.server_address[1]}/hook", "whsec-1", events)
    finally:
        server.shutdown()
        server.server_close()

    assert response.status_code == 200
    assert received["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    verify_signature(received["headers"][HEADER], received["body"], ["whsec-1"])
    payload = json.loads(urllib.parse.parse_qs(received["body"].decode())["payload"][0])
    assert [(e["type"], e["action"], e["id"]) for e in payload["events"]] == [
        ("order", "update", 10452),
        ("shipment", "good_to_go", 3311),
    ]
