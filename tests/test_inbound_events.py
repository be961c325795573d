"""`POST /centra/<token>/events`: what a storefront sending signed JSON events gets back, and what is stored."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import contextmanager

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.db import OperationalError, connections
from django.db import connection as db_connection
from django.urls import reverse
from django_q.models import OrmQ

from integration.inbound.signature import sign
from integration.inbound.validation import known_types
from integration.models import InboundEvent

SECRET = "whsec-test-1"  # the ConnectionFactory's signing secret


def order_completed(event_id: str = "evt-1", number: str = "10452", **extra) -> dict:
    return {
        "id": event_id,
        "type": "OrderCompleted",
        "occurredAt": "2026-01-01T12:00:00Z",
        "order": {"number": number, "status": "CONFIRMED", "customer": {"email": "anna@example.com"}},
        **extra,
    }


def post_events(client, connection, document, *, secret: str = SECRET, headers: dict | None = None, body=None):
    raw = body if body is not None else json.dumps(document).encode()
    all_headers = {"X-Centra-Signature": sign(secret, raw)} | (headers or {})
    return client.post(events_path(connection), data=raw, content_type="application/json", headers=all_headers)


def events_path(connection) -> str:
    return reverse("centra-events", args=[connection.token])


def queued_tasks() -> list[tuple[str, tuple]]:
    """What the ORM broker holds: (function, args) per task."""
    return [(q.task["func"], tuple(q.task["args"])) for q in OrmQ.objects.order_by("id")]


@contextmanager
def failing_inserts(table: str):
    """The database refuses writes to `table`, as a full disk or a lost primary would."""

    def refuse(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("INSERT") and table in sql:
            raise OperationalError("database is unavailable")
        return execute(sql, params, many, context)

    with db_connection.execute_wrapper(refuse):
        yield


# --- accepted -------------------------------------------------------------------------------------------------


def test_a_signed_event_is_stored_and_enqueued_only_on_commit(client, connection, django_capture_on_commit_callbacks):
    # Given a signed OrderCompleted event
    # When it is posted
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_events(client, connection, order_completed())
        # Then nothing is enqueued before the transaction commits
        assert queued_tasks() == []
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    for callback in callbacks:
        callback()
    stored = InboundEvent.objects.get()
    assert queued_tasks() == [("integration.tasks.process_inbound_batch", ([stored.pk],))]
    assert stored.source == "events"
    assert stored.event_type == "OrderCompleted"
    assert stored.dedupe_key == "events:evt-1"
    assert stored.status == "received"
    assert stored.object_ref == "10452"
    assert stored.email == "anna@example.com"
    assert stored.occurred_at.isoformat() == "2026-01-01T12:00:00+00:00"
    assert stored.payload == {"order": order_completed()["order"]}


def test_an_occurred_at_without_offset_is_taken_as_utc(client, connection):
    response = post_events(client, connection, order_completed() | {"occurredAt": "2026-01-01T12:00:00"})
    assert response.status_code == 200
    assert InboundEvent.objects.get().occurred_at.isoformat() == "2026-01-01T12:00:00+00:00"


def test_keys_we_do_not_read_are_accepted_and_kept(client, connection):
    event = order_completed(storeExtra={"loyalty": 3})
    event["order"]["somethingNew"] = [1, 2]
    response = post_events(client, connection, event)
    assert response.status_code == 200
    payload = InboundEvent.objects.get().payload
    assert payload["storeExtra"] == {"loyalty": 3}
    assert payload["order"]["somethingNew"] == [1, 2]


VALID_EVENTS = [
    {"type": "OrderCreated", "email": "cart@example.com", "selection": "sel-9", "order": {"lines": [{"id": 1}]}},
    {
        "type": "OrderCreated",
        "selection": "sel-8",
        "order": {"shippingAddress": {"email": "ship@example.com"}, "lines": [{"quantity": 2}]},
    },
    {"type": "OrderPlaced", "order": {"number": 11, "customer": {"email": "o@example.com"}}},
    {"type": "OrderCancellation", "order": {"number": "12", "billingAddress": {"email": "b@example.com"}}},
    {"type": "OrderShipped", "shipment": {"id": "3311", "order": {"number": "13"}}, "email": "s@example.com"},
    {
        "type": "RefundCompleted",
        "return": {"id": "415", "order": {"number": "14", "customer": {"email": "r@example.com"}}},
    },
    {"type": "ReturnCompleted", "return": {"id": "416", "customer": {"email": "r@example.com"}}},
    {"type": "Newsletter", "email": "news@example.com", "language": "sv", "address": {}},
    {"type": "CustomerRegistered", "customer": {"id": 7, "email": "c@example.com"}},
    {
        "type": "PasswordReset",
        "customer": {"email": "p@example.com"},
        "passwordRestoreLink": "https://shop.example/reset/abc",
    },
    {
        "type": "GiftCertificate",
        "order": {"number": "15"},
        "giftCertificate": {"code": "GIFT", "email": "friend@example.com"},
    },
    {
        "type": "BackInStockSubscribe",
        "email": "w@example.com",
        "item": "12366-23400",
        "sku": "SKU1",
        "languageCode": "sv",
        "shipTo": {"countryCode": "SE", "stateCode": None},
        "product": {"name": "Tee"},
    },
    {"type": "BackInStockUnsubscribe", "email": "w@example.com", "item": "12366-23400"},
    {
        "type": "StockUpdate",
        "items": [{"item": "12366-23400", "sku": "SKU1", "available": 0}, {"item": "1-2", "available": 12}],
    },
]


def test_every_event_type_in_one_batch_is_stored(client, connection):
    events = [{"id": f"evt-{i}", "occurredAt": "2026-01-01T12:00:00+01:00", **e} for i, e in enumerate(VALID_EVENTS)]
    response = post_events(client, connection, {"events": events})
    assert response.status_code == 200, response.json()
    assert response.json() == {"accepted": len(events), "duplicates": 0}
    refs = dict(InboundEvent.objects.values_list("dedupe_key", "object_ref"))
    assert refs["events:evt-0"] == "sel-9"
    assert refs["events:evt-2"] == "11"
    assert refs["events:evt-4"] == "13"
    assert refs["events:evt-5"] == "14"
    assert refs["events:evt-6"] == "416"
    assert refs["events:evt-11"] == "12366-23400"
    emails = dict(InboundEvent.objects.values_list("dedupe_key", "email"))
    assert emails["events:evt-1"] == "ship@example.com"
    assert emails["events:evt-9"] == "p@example.com"


def test_a_batch_of_100_is_accepted(client, connection):
    events = [order_completed(f"evt-{i}", number=str(i)) for i in range(100)]
    response = post_events(client, connection, {"events": events})
    assert response.status_code == 200
    assert response.json() == {"accepted": 100, "duplicates": 0}
    assert InboundEvent.objects.count() == 100


def test_a_batch_of_101_is_refused_and_nothing_stored(client, connection):
    events = [order_completed(f"evt-{i}") for i in range(101)]
    response = post_events(client, connection, {"events": events})
    assert response.status_code == 400
    assert "at most 100" in response.json()["error"]
    assert InboundEvent.objects.count() == 0


# --- duplicates -----------------------------------------------------------------------------------------------


def test_the_same_event_twice_across_requests_is_counted_and_not_processed_again(
    client, connection, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = post_events(client, connection, order_completed())
    with django_capture_on_commit_callbacks(execute=True):
        second = post_events(client, connection, order_completed())
    assert first.json() == {"accepted": 1, "duplicates": 0}
    assert second.status_code == 200
    assert second.json() == {"accepted": 0, "duplicates": 1}
    stored = InboundEvent.objects.get()
    assert stored.duplicate_count == 1
    assert len(queued_tasks()) == 1


def test_the_same_event_twice_in_one_request(client, connection, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_events(client, connection, {"events": [order_completed(), order_completed()]})
    assert response.json() == {"accepted": 1, "duplicates": 1}
    assert InboundEvent.objects.get().duplicate_count == 1
    assert len(queued_tasks()) == 1


def test_a_duplicate_stored_by_a_concurrent_request_is_counted(client, connection, django_capture_on_commit_callbacks):
    # Given another request stores the event after our checks, just before our INSERT runs
    def other_request_first(execute, sql, params, many, context):
        if "ON CONFLICT" in sql.upper() and not InboundEvent.objects.exists():
            InboundEvent.objects.create(
                connection=connection, source="events", dedupe_key="events:evt-1", event_type="OrderCompleted"
            )
        return execute(sql, params, many, context)

    with django_capture_on_commit_callbacks(execute=True), db_connection.execute_wrapper(other_request_first):
        response = post_events(client, connection, {"events": [order_completed(), order_completed("evt-2")]})
    # Then ours is answered as a duplicate and counted, and only the other event is processed
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 1}
    assert InboundEvent.objects.get(dedupe_key="events:evt-1").duplicate_count == 1
    assert queued_tasks() == [
        ("integration.tasks.process_inbound_batch", ([InboundEvent.objects.get(dedupe_key="events:evt-2").pk],))
    ]


def test_one_request_is_one_task_with_the_ids_of_its_new_events(client, connection, django_capture_on_commit_callbacks):
    # Given one event already stored, one of a disabled flow and two new ones
    connection.flows.filter(event="Newsletter").update(enabled=False)
    post_events(client, connection, order_completed("evt-0"))
    newsletter = {"id": "n-1", "type": "Newsletter", "occurredAt": "2026-01-01T12:00:00Z", "email": "a@example.com"}
    events = [order_completed("evt-0"), order_completed("evt-1"), newsletter, order_completed("evt-2")]
    with django_capture_on_commit_callbacks(execute=True):
        response = post_events(client, connection, {"events": events})
    assert response.json() == {"accepted": 3, "duplicates": 1}
    new_ids = [InboundEvent.objects.get(dedupe_key=f"events:evt-{n}").pk for n in (1, 2)]
    assert queued_tasks() == [("integration.tasks.process_inbound_batch", (new_ids,))]


# --- flows and connection state -------------------------------------------------------------------------------


def test_an_event_of_a_disabled_flow_is_stored_ignored_and_not_enqueued(
    client, connection, django_capture_on_commit_callbacks
):
    connection.flows.filter(event="OrderCompleted").update(enabled=False)
    with django_capture_on_commit_callbacks(execute=True):
        response = post_events(client, connection, order_completed())
    assert response.json() == {"accepted": 1, "duplicates": 0}
    stored = InboundEvent.objects.get()
    assert stored.status == "ignored"
    assert "disabled" in stored.error
    assert queued_tasks() == []


def test_a_paused_connection_still_stores_events(client, connection, django_capture_on_commit_callbacks):
    connection.status = "paused"
    connection.paused_reason = "Rule said 401"
    connection.save()
    with django_capture_on_commit_callbacks(execute=True):
        response = post_events(client, connection, order_completed())
    assert response.status_code == 200
    assert InboundEvent.objects.get().status == "received"
    assert len(queued_tasks()) == 1


def test_neither_the_signature_nor_a_secret_is_stored(client, connection):
    raw = json.dumps(order_completed()).encode()
    header = sign(SECRET, raw)
    post_events(client, connection, None, body=raw, headers={"X-Centra-Signature": header})
    stored = json.dumps(list(InboundEvent.objects.values()), default=str)
    assert header.split("v1=")[1] not in stored
    assert SECRET not in stored


# --- refused --------------------------------------------------------------------------------------------------


def test_a_400_names_every_problem_of_every_event_and_stores_nothing(client, connection):
    events = [
        order_completed("ok-1"),
        {"id": "bad-1", "type": "OrderCompleted", "occurredAt": "2026-01-01T12:00:00Z", "order": {"status": "X"}},
        {"id": "bad-2", "type": "Newsletter", "occurredAt": "yesterday", "email": "not-an-email"},
        {"type": "StockUpdate", "occurredAt": "2026-01-01T12:00:00Z", "items": [{"item": "1-2", "available": -1}]},
        {"id": "bad-4", "type": "OrderShipped", "occurredAt": "2026-01-01T12:00:00Z", "shipment": "3311"},
    ]
    response = post_events(client, connection, {"events": events})
    assert response.status_code == 400
    problems = {(e["index"], e["id"], e["field"]) for e in response.json()["errors"]}
    assert problems == {
        (1, "bad-1", "order.number"),
        (2, "bad-2", "occurredAt"),
        (2, "bad-2", "email"),
        (3, None, "id"),
        (3, None, "items.0.available"),
        (4, "bad-4", "shipment"),
    }
    assert all(e["message"] for e in response.json()["errors"])
    assert InboundEvent.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "OrderCompleted"}, "order"),
        ({"type": "OrderCreated", "email": "a@example.com", "order": {"lines": [{"id": 1}]}}, "selection"),
        ({"type": "OrderCreated", "selection": "s", "order": {"lines": [{"quantity": 1}]}}, "email"),
        ({"type": "OrderCreated", "email": "a@example.com", "selection": "s", "order": {"lines": []}}, "order.lines"),
        ({"type": "OrderCreated", "email": "a@example.com", "selection": "s", "order": {}}, "order.lines"),
        ({"type": "OrderShipped"}, "shipment"),
        ({"type": "RefundCompleted", "order": {"number": "1"}}, "return"),
        ({"type": "ReturnCompleted", "return": []}, "return"),
        ({"type": "Newsletter"}, "email"),
        ({"type": "CustomerRegistered", "customer": {"id": 3}}, "customer.email"),
        ({"type": "PasswordReset", "customer": {"email": "a@example.com"}}, "passwordRestoreLink"),
        ({"type": "GiftCertificate", "order": {"number": "1"}}, "giftCertificate"),
        ({"type": "BackInStockSubscribe", "email": "a@example.com"}, "item"),
        ({"type": "BackInStockSubscribe", "email": "a@example.com", "item": "1-2", "shipTo": {}}, "shipTo.countryCode"),
        ({"type": "BackInStockUnsubscribe", "item": "1-2"}, "email"),
        ({"type": "StockUpdate", "items": []}, "items"),
        ({"type": "StockUpdate", "items": [{"available": 3}]}, "items.0.item"),
    ],
)
def test_each_type_requires_what_the_mapping_needs(client, connection, body, field):
    event = {"id": "evt-x", "occurredAt": "2026-01-01T12:00:00Z", **body}
    response = post_events(client, connection, event)
    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [field]


def test_an_unknown_type_is_refused_with_the_known_types(client, connection):
    response = post_events(client, connection, {"id": "e", "type": "OrderTeleported", "occurredAt": "2026-01-01"})
    assert response.status_code == 400
    body = response.json()
    assert body["errors"][0]["field"] == "type"
    assert "OrderTeleported" in body["errors"][0]["message"]
    assert body["known_types"] == known_types()
    assert {"OrderCompleted", "BackInStockSubscribe", "StockUpdate"} <= set(body["known_types"])


@pytest.mark.parametrize("raw", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"events": []}', b'{"events": {}}'])
def test_a_body_that_is_not_an_event_document_is_refused(client, connection, raw):
    response = post_events(client, connection, None, body=raw)
    assert response.status_code == 400
    assert response.json()["error"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # Python reads these, PostgreSQL's jsonb does not: stored, they would fail as a 503 retried forever.
        (
            b'{"id": "n1", "type": "Newsletter", "occurredAt": "2026-01-01T00:00:00Z", "email": "a@b.se", "x": NaN}',
            "NaN",
        ),
        (
            b'{"id": "n2", "type": "Newsletter", "occurredAt": "2026-01-01", "email": "a@b.se", "x": -Infinity}',
            "Infinity",
        ),
        (
            b'{"id": "n3", "type": "Newsletter", "occurredAt": "2026-01-01", "email": "a@b.se", "n": "a\\u0000b"}',
            "NUL",
        ),
    ],
)
def test_json_that_the_database_cannot_store_is_a_clear_400(client, connection, raw, message):
    response = post_events(client, connection, None, body=raw)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not InboundEvent.objects.exists()


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Centra-Signature": ""},
        {"X-Centra-Signature": "garbage"},
        {"X-Centra-Signature": "t=1700000000,v1=" + "0" * 64},
    ],
)
def test_a_missing_or_bad_signature_is_refused(client, connection, headers):
    response = post_events(client, connection, order_completed(), headers=headers)
    assert response.status_code == 401
    assert InboundEvent.objects.count() == 0


def test_a_stale_signature_is_refused(client, connection, settings):
    raw = json.dumps(order_completed()).encode()
    stale = sign(SECRET, raw, timestamp=int(time.time()) - settings.SIGNATURE_TOLERANCE_SECONDS - 5)
    response = post_events(client, connection, None, body=raw, headers={"X-Centra-Signature": stale})
    assert response.status_code == 401
    assert "outside" in response.json()["error"]


def test_a_body_changed_after_signing_is_refused(client, connection):
    raw = json.dumps(order_completed()).encode()
    header = sign(SECRET, raw)
    response = post_events(
        client, connection, None, body=raw.replace(b"10452", b"10453"), headers={"X-Centra-Signature": header}
    )
    assert response.status_code == 401


def test_the_second_secret_of_a_rotation_is_accepted(client, connection):
    connection.signing_secrets = "old-secret\nnew-secret"
    connection.save()
    assert post_events(client, connection, order_completed(), secret="new-secret").status_code == 200
    assert post_events(client, connection, order_completed("evt-2"), secret="old-secret").status_code == 200
    assert post_events(client, connection, order_completed("evt-3"), secret=SECRET).status_code == 401


def test_a_connection_without_secrets_refuses_everything(client, connection):
    connection.signing_secrets = ""
    connection.save()
    response = post_events(client, connection, order_completed(), secret="")
    assert response.status_code == 401


def test_an_unknown_token_is_404(client, connection):
    raw = json.dumps(order_completed()).encode()
    response = client.post(
        "/centra/not-a-token/events",
        data=raw,
        content_type="application/json",
        headers={"X-Centra-Signature": sign(SECRET, raw)},
    )
    assert response.status_code == 404


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_other_methods_are_405(client, connection, method):
    response = getattr(client, method)(events_path(connection))
    assert response.status_code == 405


def test_a_non_json_content_type_is_415(client, connection):
    raw = json.dumps(order_completed()).encode()
    response = client.post(
        events_path(connection),
        data=raw,
        content_type="text/plain",
        headers={"X-Centra-Signature": sign(SECRET, raw)},
    )
    assert response.status_code == 415


def test_json_with_a_charset_is_accepted(client, connection):
    raw = json.dumps(order_completed()).encode()
    response = client.post(
        events_path(connection),
        data=raw,
        content_type="application/json; charset=utf-8",
        headers={"X-Centra-Signature": sign(SECRET, raw)},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "extra",
    [{"HTTP_ACCEPT": "application/xml"}, {"HTTP_ACCEPT": "text/html"}, {"QUERY_STRING": "format=xml"}],
)
def test_any_accept_header_or_format_is_answered_in_json_and_stored(client, connection, extra):
    raw = json.dumps(order_completed()).encode()
    response = client.post(
        events_path(connection),
        data=raw,
        content_type="application/json",
        headers={"X-Centra-Signature": sign(SECRET, raw)},
        **extra,
    )
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert InboundEvent.objects.count() == 1


def test_a_declared_length_over_the_limit_is_413(client, connection, settings):
    settings.INBOUND_MAX_BODY_BYTES = 1000
    event = order_completed(padding="x" * 1000)
    response = post_events(client, connection, event)
    assert response.status_code == 413
    assert InboundEvent.objects.count() == 0


@pytest.mark.django_db(transaction=True)  # the ASGI handler answers from another thread, on its own connection
def test_a_body_over_the_limit_without_content_length_is_413(connection, settings):
    # Given a client that streams its body without a Content-Length (chunked, through an ASGI server)
    settings.INBOUND_MAX_BODY_BYTES = 1000
    raw = json.dumps(order_completed(padding="x" * 3000)).encode()
    chunks = [raw[i : i + 500] for i in range(0, len(raw), 500)]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": events_path(connection),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"x-centra-signature", sign(SECRET, raw).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }

    async def run() -> list[dict]:
        incoming = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
        incoming.append({"type": "http.request", "body": b"", "more_body": False})
        sent: list[dict] = []

        async def receive() -> dict:
            if incoming:
                return incoming.pop(0)
            await asyncio.Event().wait()  # the client stays connected until the answer

        async def send(message: dict) -> None:
            sent.append(message)

        await ASGIHandler()(scope, receive, send)
        await sync_to_async(connections.close_all)()  # the thread that ran the view lets its connection go
        return sent

    # When it is posted; then it is refused for its size
    sent = asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413


def test_a_database_failure_while_storing_is_503_with_retry_after(client, connection):
    with failing_inserts(InboundEvent._meta.db_table):
        response = post_events(client, connection, order_completed())
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert InboundEvent.objects.count() == 0
