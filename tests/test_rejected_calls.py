"""Refused inbound calls are kept for the merchant: time, endpoint, answer, reason, sender, the body's first bytes."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from integration.inbound import rejections
from integration.inbound.signature import sign
from integration.models import RejectedCall
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

SECRET = "whsec-test-1"  # the ConnectionFactory's signing secret
EVENT = {
    "id": "evt-1",
    "type": "OrderCompleted",
    "occurredAt": "2026-01-01T12:00:00Z",
    "order": {"number": "10452", "status": "CONFIRMED", "customer": {"email": "anna@example.com"}},
}


def post_events(client, token: str, raw: bytes, signature: str | None, **extra):
    headers = {"X-Centra-Signature": signature} if signature is not None else {}
    return client.post(
        reverse("centra-events", args=[token]),
        data=raw,
        content_type="application/json",
        headers=headers,
        REMOTE_ADDR="203.0.113.7",
        **extra,
    )


def test_a_bad_signature_is_recorded_without_the_signature_or_the_secret(client, connection):
    raw = json.dumps(EVENT).encode()
    response = post_events(client, connection.token, raw, sign("not-the-secret", raw))
    assert response.status_code == 401

    [call] = RejectedCall.objects.all()
    assert call.connection == connection
    assert (call.endpoint, call.status_code, call.sender) == ("events", 401, "203.0.113.7")
    assert call.reason.startswith("signature rejected")
    assert call.body_start == raw.decode()[: RejectedCall.BODY_LIMIT]
    stored = json.dumps([call.reason, call.body_start, call.sender])
    assert SECRET not in stored and "v1=" not in stored


def test_a_connection_without_a_secret_records_each_refusal(client):
    conn = ConnectionFactory(signing_secrets="")
    raw = json.dumps(EVENT).encode()
    assert post_events(client, conn.token, raw, sign(SECRET, raw)).status_code == 401
    assert conn.rejected_calls.get().status_code == 401


def test_an_invalid_body_records_the_problems_and_only_the_first_bytes(client, connection):
    bad = {"id": "bad-2", "type": "Newsletter", "occurredAt": "yesterday", "email": "not-an-email"}
    raw = json.dumps({"events": [bad] * 5, "padding": "x" * 5000}).encode()
    response = post_events(client, connection.token, raw, sign(SECRET, raw))
    assert response.status_code == 400
    call = connection.rejected_calls.get()
    assert call.status_code == 400
    assert call.reason.count("event 0") == 2 and "email" in call.reason and call.reason.endswith("and 7 more")
    assert len(call.body_start.encode()) <= RejectedCall.BODY_LIMIT


def test_a_wrong_content_type_on_the_webhook_endpoint(client, connection):
    response = client.post(
        reverse("centra-webhook", args=[connection.token]),
        data="payload=x",
        content_type="text/plain",
        headers={"X-Forwarded-For": "198.51.100.9, 10.0.0.1"},
        REMOTE_ADDR="10.0.0.2",
    )
    assert response.status_code == 415
    call = connection.rejected_calls.get()
    assert (call.endpoint, call.status_code) == ("webhook", 415)
    assert call.sender == "10.0.0.2 (forwarded for 198.51.100.9)"


def test_an_unknown_token_is_counted_globally(client, connection):
    raw = json.dumps(EVENT).encode()
    assert post_events(client, "no-such-token", raw, sign(SECRET, raw)).status_code == 404
    call = RejectedCall.objects.get()
    assert call.connection is None and call.status_code == 404
    assert "no-such-token" not in json.dumps([call.reason, call.body_start])


def test_an_accepted_request_costs_no_extra_query(client, connection):
    raw = json.dumps(EVENT).encode()
    with CaptureQueriesContext(db_connection) as queries:
        assert post_events(client, connection.token, raw, sign(SECRET, raw)).status_code == 200
    assert not [q for q in queries.captured_queries if RejectedCall._meta.db_table in q["sql"]]
    assert not RejectedCall.objects.exists()


def test_the_log_keeps_only_the_newest_calls(client, connection, monkeypatch):
    monkeypatch.setattr(RejectedCall, "KEEP", 5)
    monkeypatch.setattr(rejections, "TRIM_EVERY", 1)
    body = urlencode({"payload": "{}"})
    for i in range(8):
        client.post(
            reverse("centra-webhook", args=[connection.token]),
            data=body + f"&n={i}",
            content_type="application/x-www-form-urlencoded",
        )
    kept = list(connection.rejected_calls.order_by("at").values_list("body_start", flat=True))
    assert len(kept) == 5
    assert kept[-1].endswith("n=7") and kept[0].endswith("n=3")


def test_nul_and_control_characters_never_reach_the_database(client, connection):
    raw = b'{"id": "\x00\x01", ' + b"\xff" * 10
    response = post_events(client, connection.token, raw, sign(SECRET, raw))
    assert response.status_code == 400
    call = connection.rejected_calls.get()
    assert "\x00" not in call.body_start and "\ufffd" in call.body_start
