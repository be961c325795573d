"""`POST /centra/<token>/webhook`: Centra's webhook plugin, form-encoded `payload=` JSON signed on the raw bytes."""

from __future__ import annotations

import json
import time
from urllib.parse import quote, urlencode

import pytest
from django.urls import reverse
from django_q.models import OrmQ

from integration.inbound.signature import sign
from integration.models import InboundEvent

SECRET = "whsec-test-1"
FORM = "application/x-www-form-urlencoded"
CENTRA_EXAMPLE = {
    "events": [
        {"type": "order", "action": "update", "date": "2026-01-01 12:05:10.000001", "id": 10452},
        {"type": "shipment", "action": "create", "date": "2026-01-01 12:05:10.000002", "id": 3311},
        {"type": "shipment", "action": "good_to_go", "date": "2026-01-01 12:05:10.000003", "id": 3311},
        {"type": "return", "action": "create", "date": "2026-01-02 09:00:00.000000", "id": 415},
    ]
}


def form_body(document) -> bytes:
    """The body exactly as Centra's plugin sends it."""
    return urlencode({"payload": json.dumps(document)}).encode()


def webhook_path(connection) -> str:
    return reverse("centra-webhook", args=[connection.token])


def post_webhook(
    client, connection, raw: bytes, *, secret: str = SECRET, timestamp: int | None = None, content_type: str = FORM
):
    return client.post(
        webhook_path(connection),
        data=raw,
        content_type=content_type,
        headers={"X-Centra-Signature": sign(secret, raw, timestamp=timestamp)},
    )


def queued_ids() -> list[int]:
    """The inbound ids of every queued task (one task per request, carrying the ids of its new events)."""
    return [pk for q in OrmQ.objects.order_by("id") for pk in q.task["args"][0]]


def test_integration_api_events_become_one_row_each(client, connection, django_capture_on_commit_callbacks):
    # Given Centra's documented webhook call
    with django_capture_on_commit_callbacks(execute=True):
        response = post_webhook(client, connection, form_body(CENTRA_EXAMPLE))
    # Then every event is stored and enqueued
    assert response.status_code == 200
    assert response.json() == {"accepted": 4, "duplicates": 0}
    rows = list(InboundEvent.objects.order_by("id"))
    assert [(r.source, r.event_type, r.object_ref, r.status) for r in rows] == [
        ("webhook", "order", "10452", "received"),
        ("webhook", "shipment", "3311", "received"),
        ("webhook", "shipment", "3311", "received"),
        ("webhook", "return", "415", "received"),
    ]
    assert rows[0].payload == CENTRA_EXAMPLE["events"][0]
    # The two shipment events differ only in their action: two keys, each within the column.
    assert len({r.dedupe_key for r in rows}) == 4
    assert all(len(r.dedupe_key) <= 255 for r in rows)
    assert sorted(queued_ids()) == [r.pk for r in rows]


def test_types_we_do_not_use_are_stored_ignored(client, connection, django_capture_on_commit_callbacks):
    document = {
        "events": [
            {"type": "account", "action": "update", "date": "2026-01-01 12:00:00", "id": 3},
            {"type": "customer", "action": "create", "date": "2026-01-01 12:00:00", "id": 4},
        ]
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = post_webhook(client, connection, form_body(document))
    assert response.json() == {"accepted": 2, "duplicates": 0}
    statuses = dict(InboundEvent.objects.values_list("event_type", "status"))
    assert statuses == {"account": "ignored", "customer": "received"}
    assert queued_ids() == [InboundEvent.objects.get(event_type="customer").pk]


def test_a_retried_call_is_counted_as_duplicates(client, connection):
    post_webhook(client, connection, form_body(CENTRA_EXAMPLE))
    response = post_webhook(client, connection, form_body(CENTRA_EXAMPLE))
    assert response.json() == {"accepted": 0, "duplicates": 4}
    assert InboundEvent.objects.count() == 4
    assert set(InboundEvent.objects.values_list("duplicate_count", flat=True)) == {1}


def test_a_batch_of_100_is_accepted_and_101_refused(client, connection):
    events = [{"type": "order", "action": "update", "date": "2026-01-01 12:00:00", "id": n} for n in range(101)]
    too_many = post_webhook(client, connection, form_body({"events": events}))
    assert too_many.status_code == 400
    assert InboundEvent.objects.count() == 0
    response = post_webhook(client, connection, form_body({"events": events[:100]}))
    assert response.json() == {"accepted": 100, "duplicates": 0}


def test_catalogue_keys_become_one_row_per_key(client, connection, django_capture_on_commit_callbacks):
    # Given a Storefront API webhook naming changed display items, products and categories
    document = {"DisplayItems": ["52", "7"], "Products": ["3"], "Categories": ["9"]}
    raw = form_body(document)
    signed_at = int(time.time())
    with django_capture_on_commit_callbacks(execute=True):
        response = post_webhook(client, connection, raw, timestamp=signed_at)
    assert response.json() == {"accepted": 3, "duplicates": 0}
    rows = {r.event_type: r for r in InboundEvent.objects.all()}
    assert rows["DisplayItems"].payload == {"key": "DisplayItems", "ids": ["52", "7"]}
    assert (rows["DisplayItems"].status, rows["Products"].status, rows["Categories"].status) == (
        "received",
        "received",
        "ignored",
    )
    assert sorted(queued_ids()) == sorted([rows["DisplayItems"].pk, rows["Products"].pk])


def test_the_same_ids_in_another_order_are_the_same_catalogue_event(client, connection):
    signed_at = int(time.time())
    post_webhook(client, connection, form_body({"DisplayItems": ["52", "7"]}), timestamp=signed_at)
    response = post_webhook(client, connection, form_body({"DisplayItems": ["7", "52"]}), timestamp=signed_at)
    assert response.json() == {"accepted": 0, "duplicates": 1}


def test_the_signature_is_checked_on_the_raw_bytes(client, connection):
    # Given a body signed as sent, then re-encoded (same form data, different bytes) on the way
    raw = form_body(CENTRA_EXAMPLE)
    header = sign(SECRET, raw)
    reencoded = ("payload=" + quote(json.dumps(CENTRA_EXAMPLE), safe="")).encode()
    assert reencoded != raw
    response = client.post(
        webhook_path(connection), data=reencoded, content_type=FORM, headers={"X-Centra-Signature": header}
    )
    assert response.status_code == 401
    assert InboundEvent.objects.count() == 0


def test_centras_test_vector_body_reaches_the_parser(client, connection):
    # Centra's documented body, signed now with the connection's secret: parsed after the check, then refused
    # because it is neither Integration API nor a catalogue-key document of lists.
    response = post_webhook(client, connection, b"payload=%7B%22x%22%3A%22test%22%7D")
    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "'x'", "message": "must be a list of ids, got str"}]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"other=1", "missing"),
        (b"payload=", "missing"),
        (b"payload=%7Bnot-json", "not valid JSON"),
        (b"payload=%5B1%5D", "non-empty JSON object"),
        (b"payload=%7B%22events%22%3A%5B%7B%22id%22%3ANaN%7D%5D%7D", "NaN"),
        (b"payload=%7B%22DisplayItems%22%3A%5B%22a%5Cu0000%22%5D%7D", "NUL"),
    ],
)
def test_a_missing_or_broken_payload_is_400(client, connection, raw, message):
    response = post_webhook(client, connection, raw)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_events_without_type_or_id_are_400_naming_each(client, connection):
    document = {"events": [{"type": "order", "id": 1}, {"action": "update", "id": 2}, {"type": "order"}]}
    response = post_webhook(client, connection, form_body(document))
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in response.json()["errors"]] == [(1, "type"), (2, "id")]


def test_an_unsigned_call_is_401(client, connection):
    response = client.post(webhook_path(connection), data=form_body(CENTRA_EXAMPLE), content_type=FORM)
    assert response.status_code == 401


def test_a_stale_call_is_401(client, connection):
    response = post_webhook(client, connection, form_body(CENTRA_EXAMPLE), timestamp=int(time.time()) - 3600)
    assert response.status_code == 401


def test_a_connection_with_no_secret_never_accepts(client, connection):
    connection.signing_secrets = ""
    connection.save()
    response = post_webhook(client, connection, form_body(CENTRA_EXAMPLE), secret="")
    assert response.status_code == 401
    assert InboundEvent.objects.count() == 0


def test_an_unknown_token_is_404(client, connection):
    raw = form_body(CENTRA_EXAMPLE)
    response = client.post(
        "/centra/nope/webhook", data=raw, content_type=FORM, headers={"X-Centra-Signature": sign(SECRET, raw)}
    )
    assert response.status_code == 404


def test_get_is_405(client, connection):
    assert client.get(webhook_path(connection)).status_code == 405


def test_json_is_415_on_the_webhook(client, connection):
    response = post_webhook(client, connection, json.dumps(CENTRA_EXAMPLE).encode(), content_type="application/json")
    assert response.status_code == 415


def test_over_the_size_limit_is_413(client, connection, settings):
    settings.INBOUND_MAX_BODY_BYTES = 200
    response = post_webhook(client, connection, form_body(CENTRA_EXAMPLE))
    assert response.status_code == 413


def test_a_database_failure_is_503(client, connection):
    from tests.test_inbound_events import failing_inserts

    with failing_inserts(InboundEvent._meta.db_table):
        response = post_webhook(client, connection, form_body(CENTRA_EXAMPLE))
    assert response.status_code == 503
    assert response.headers["Retry-After"]
