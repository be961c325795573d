"""The fake Rule validates like Rule, over real HTTP: each rule of rule-api.md answered as Rule answers it."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent


def sub(**extra) -> dict:
    return {"email": "anna@example.com", **extra}


def body(subscribers=None, **extra) -> dict:
    return {
        "update_on_duplicate": True,
        "tags": ["OrderCompleted"],
        "subscribers": sub() if subscribers is None else subscribers,
        **extra,
    }


@pytest.fixture
def rule(fake_rule):
    """POST/GET/DELETE against the fake with the right key."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {fake_rule.api_key}"

    def call(method: str, path: str, payload=None, **kwargs) -> requests.Response:
        return session.request(method, fake_rule.url + path, json=payload, timeout=5, **kwargs)

    return call


def test_a_valid_subscriber_is_stored_with_its_tags_and_fields(rule, fake_rule):
    fields = [
        {"key": "Order.Number", "value": "10452"},
        {"key": "Order.Date", "value": "2026-11-29", "type": "date"},
        {"key": "Order.Time", "value": "2026-11-29 12:00:00", "type": "datetime"},
        {"key": "Order.Brands", "value": ["Acme", "Nordic Wool"], "type": "multiple"},
        {"key": "Order.Products", "value": json.dumps([{"name": "Scarf"}]), "type": "json"},
    ]
    answer = rule("POST", "/subscribers", body(sub(phone_number="+46701234567", language="sv", fields=fields)))

    assert answer.status_code == 200 and "id" in answer.json()["subscriber"]
    stored = rule("GET", "/subscribers/anna%40example.com", params={"identified_by": "email"}).json()["subscriber"]
    assert stored["tags"] == ["OrderCompleted"] and stored["phone_number"] == "+46701234567"
    assert stored["fields"]["Order.Brands"] == {"value": ["Acme", "Nordic Wool"], "type": "multiple"}


@pytest.mark.parametrize("auth", [None, "Bearer wrong-key", "apikey"])
def test_a_missing_or_wrong_key_is_401_not_authorized(fake_rule, auth):
    headers = {"Authorization": auth if auth != "apikey" else fake_rule.api_key} if auth else {}
    answer = requests.post(fake_rule.url + "/subscribers", json=body(), headers=headers, timeout=5)
    assert (answer.status_code, answer.json()) == (401, {"error": "NotAuthorized"})


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        ({"tags": ["A"]}, 400, "subscribers"),
        (body("anna@example.com"), 400, "subscribers"),
        (body([sub()] * 1001), 413, None),
        (body(sub(email=None)), 400, "email"),
        (body(sub(phone_number="0701234567")), 400, "phone_number"),
        (body(sub(fields=[{"key": "Order.Number.Extra", "value": "1"}])), 400, "fields.0.key"),
        (body(sub(fields=[{"key": "OrderNumber", "value": "1"}])), 400, "fields.0.key"),
        (body(sub(fields=[{"key": "Order.Date", "value": "29/11/2026", "type": "date"}])), 400, "fields.0.value"),
        (
            body(sub(fields=[{"key": "Order.At", "value": "2026-11-29T12:00", "type": "datetime"}])),
            400,
            "fields.0.value",
        ),
        (body(sub(fields=[{"key": "Order.Brands", "value": "Acme", "type": "multiple"}])), 400, "fields.0.value"),
        (body(sub(fields=[{"key": "Order.Brands", "value": [1, 2], "type": "multiple"}])), 400, "fields.0.value"),
        (body(sub(fields=[{"key": "Order.Products", "value": [{"a": 1}], "type": "json"}])), 400, "fields.0.value"),
        (body(sub(fields=[{"key": "Order.Products", "value": "{not json", "type": "json"}])), 400, "fields.0.value"),
        (body(sub(fields=[{"key": "Order.X", "value": "1", "type": "number"}])), 400, "fields.0.type"),
        (
            body(sub(fields=[{"key": "Order.A", "value": "x" * 40000}, {"key": "Order.B", "value": "y" * 30000}])),
            400,
            "fields.1.value",
        ),
        ({**body(), "tags": []}, 400, "tags"),
        ({**body(), "tags": ["A", "A"]}, 400, "tags"),
        ({**body(), "automation": "always"}, 400, "automation"),
    ],
)
def test_invalid_requests_are_answered_like_rule(rule, fake_rule, payload, status, field):
    answer = rule("POST", "/subscribers", payload)

    assert answer.status_code == status
    error = answer.json()
    assert error["error"]
    if field:
        assert field in error["fields"]
    assert fake_rule.subscriber("anna@example.com") is None


def test_field_groups_are_limited_separately(rule):
    fields = [{"key": "Order.A", "value": "x" * 40000}, {"key": "Customer.B", "value": "y" * 40000}]
    assert rule("POST", "/subscribers", body(sub(fields=fields))).status_code == 200


def test_a_batch_of_1000_is_accepted(rule):
    batch = [{"email": f"s{n}@example.com"} for n in range(1000)]
    answer = rule("POST", "/subscribers", body(batch, automation=False, sync_subscribers=False))
    assert answer.status_code == 200
    assert answer.json()["subscribers_created"] == 1000


def test_sync_subscribers_takes_at_most_100(rule, fake_rule):
    batch = [{"email": f"s{n}@example.com"} for n in range(101)]
    refused = rule("POST", "/subscribers", body(batch, sync_subscribers=True))
    assert refused.status_code == 400 and "sync_subscribers" in refused.json()["fields"]
    assert fake_rule.subscriber("s0@example.com") is None
    assert rule("POST", "/subscribers", body(batch[:100], sync_subscribers=True)).status_code == 200


def test_a_batch_error_names_the_subscriber_by_its_index_and_stores_nobody(rule, fake_rule):
    batch = [{"email": f"s{n}@example.com", "language": "sv"} for n in range(50)]
    batch[37] = {"email": "s37@example.com", "phone_number": "0701234567"}
    batch[12] = {"email": "s12@example.com", "fields": [{"key": "Order.Date", "value": "29/11", "type": "date"}]}

    answer = rule("POST", "/subscribers", body(batch, sync_subscribers=True))

    # the first subscriber Rule finds wrong is named, with the field at fault
    assert answer.status_code == 400
    assert list(answer.json()["fields"]) == ["subscribers.12.fields.0.value"]
    del batch[12]
    assert list(rule("POST", "/subscribers", body(batch, sync_subscribers=True)).json()["fields"]) == [
        "subscribers.36.phone_number"
    ]
    assert fake_rule.subscriber("s0@example.com") is None


@pytest.mark.parametrize("subscribers", [{"language": "sv"}, [{"email": "a@example.com"}, {"language": "sv"}]])
def test_every_subscriber_needs_an_email_or_a_phone(rule, subscribers):
    answer = rule("POST", "/subscribers", body(subscribers))
    where = "email" if isinstance(subscribers, dict) else "subscribers.1.email"
    assert answer.status_code == 400 and where in answer.json()["fields"]


def test_a_batch_gives_each_subscriber_its_own_fields_language_and_phone(rule, fake_rule):
    batch = [
        {"email": "a@example.com", "language": "sv", "fields": [{"key": "Order.Number", "value": "1"}]},
        {"email": "b@example.com", "phone_number": "+46701234567", "fields": [{"key": "Order.Number", "value": "2"}]},
    ]
    assert rule("POST", "/subscribers", body(batch, sync_subscribers=True, automation="reset")).status_code == 200
    a, b = fake_rule.subscriber("a@example.com"), fake_rule.subscriber("b@example.com")
    assert (a["language"], a["fields"]["Order.Number"]["value"], a["phone_number"]) == ("sv", "1", None)
    assert (b["language"], b["fields"]["Order.Number"]["value"], b["phone_number"]) == (None, "2", "+46701234567")
    assert sorted(sub_id for sub_id, _ in fake_rule.automations_started) == sorted([a["id"], b["id"]])


def test_automations_start_only_as_rule_starts_them(rule, fake_rule):
    # automation false: never; sync_subscribers true: always; omitted: only batches of fewer than 20
    many = [{"email": f"m{n}@example.com"} for n in range(20)]
    assert rule("POST", "/subscribers", body(many, automation=False, sync_subscribers=True)).status_code == 200
    assert rule("POST", "/subscribers", body(many, automation="reset")).status_code == 200
    assert fake_rule.automations_started == []
    assert rule("POST", "/subscribers", body(many[:19], automation="reset")).status_code == 200
    assert len(fake_rule.automations_started) == 19


def test_an_existing_subscriber_needs_update_on_duplicate(rule):
    assert rule("POST", "/subscribers", body()).status_code == 200
    second = rule("POST", "/subscribers", {**body(), "update_on_duplicate": False})
    assert second.status_code == 409 and second.json()["error"] == "Conflict"
    assert rule("POST", "/subscribers", body()).status_code == 200


def test_a_digit_only_tag_is_an_id(rule, fake_rule):
    assert rule("POST", "/subscribers", {**body(), "tags": ["424242"]}).status_code == 404
    known = fake_rule.add_tag("VIP")
    assert rule("POST", "/subscribers", {**body(), "tags": [str(known)]}).status_code == 200
    assert fake_rule.subscriber("anna@example.com")["tags"] == ["VIP"]


def test_removing_a_tag_and_a_subscriber(rule, fake_rule):
    rule("POST", "/subscribers", {**body(), "tags": ["OrderCreated", "OrderCompleted"]})

    removed = rule("DELETE", "/subscribers/anna%40example.com/tags/OrderCreated", params={"identified_by": "email"})
    again = rule("DELETE", "/subscribers/anna%40example.com/tags/OrderCreated", params={"identified_by": "email"})
    nobody = rule("DELETE", "/subscribers/bo%40example.com/tags/OrderCreated", params={"identified_by": "email"})

    assert (removed.status_code, again.status_code, nobody.status_code) == (200, 404, 404)
    assert fake_rule.subscriber("anna@example.com")["tags"] == ["OrderCompleted"]
    assert rule("DELETE", "/subscribers/anna%40example.com", params={"identified_by": "email"}).status_code == 200
    assert fake_rule.subscriber("anna@example.com") is None


def test_tags_are_listed_with_rules_limit(rule):
    rule("POST", "/subscribers", {**body(), "tags": ["A", "B"]})
    assert [t["name"] for t in rule("GET", "/tags", params={"limit": 1}).json()["tags"]] == ["A"]
    assert rule("GET", "/tags", params={"limit": 101}).json()["error"] == "LimitExceed"


def test_requests_are_recorded_with_the_key_masked_and_can_be_cleared(rule, fake_rule):
    rule("POST", "/subscribers", body())

    recorded = requests.get(fake_rule.url.replace("/api/v2", "/_fake/requests"), timeout=5).json()

    assert [(r["method"], r["path"], r["status"]) for r in recorded] == [("POST", "/api/v2/subscribers", 200)]
    assert recorded[0]["json"] == body()
    assert fake_rule.api_key not in json.dumps(recorded)
    assert recorded[0]["headers"]["Authorization"].endswith(fake_rule.api_key[-4:])
    requests.delete(fake_rule.url.replace("/api/v2", "/_fake/requests"), timeout=5)
    assert fake_rule.requests == []


def test_failures_and_latency_can_be_ordered_over_http(rule, fake_rule):
    control = fake_rule.url.replace("/api/v2", "/_fake/control")
    requests.post(
        control, json={"status": 429, "times": 2, "retry_after": "2026-11-29 13:00:00", "latency_ms": 200}, timeout=5
    )

    started = time.monotonic()
    answers = [rule("POST", "/subscribers", body()) for _ in range(3)]

    assert [a.status_code for a in answers] == [429, 429, 200]
    assert answers[0].headers["Retry-After"] == "2026-11-29 13:00:00"
    assert time.monotonic() - started >= 0.6


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_fakerule_command_serves_and_prints_each_request():
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "fakerule",
            "--port",
            str(port),
            "--api-key",
            "cmd-key-123456789",
            "--latency-ms",
            "10",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = f"http://127.0.0.1:{port}/api/v2/subscribers"
        for _ in range(100):
            try:
                answer = requests.post(
                    url, json=body(), headers={"Authorization": "Bearer cmd-key-123456789"}, timeout=5
                )
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        assert answer.status_code == 200
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=10)
    assert "200 POST /api/v2/subscribers" in output
    assert "anna@example.com" in output
    assert "cmd-key-123456789" not in output


# ---------------------------------------------------------------- Rule's budget and outages


def test_the_budget_answers_429_with_a_stockholm_retry_after_and_counts_in_headers(rule, fake_rule):
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    control = fake_rule.url.replace("/api/v2", "/_fake/control")
    requests.post(control, json={"calls_per_minute": 3}, timeout=5)

    answers = [rule("GET", "/tags") for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["RequestsCount-Current"] for a in answers[:3]] == ["1", "2", "3"]
    assert {a.headers["RequestsCount-Allowed"] for a in answers} == {"3"}
    assert answers[0].headers["X-ErrorPercent-Limit"] == "49"
    assert answers[3].headers["X-ErrorPercent-Current"] == "25.0"  # the 429 itself is a failing call
    stamp = answers[3].headers["Retry-After"]
    free_at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=ZoneInfo("Europe/Stockholm"))
    in_a_minute = datetime.now(ZoneInfo("Europe/Stockholm")) + timedelta(seconds=60)
    assert in_a_minute - timedelta(seconds=3) <= free_at <= in_a_minute + timedelta(seconds=2)
    # each key has its own minute
    other = requests.get(fake_rule.url + "/tags", headers={"Authorization": "Bearer other"}, timeout=5)
    assert other.status_code == 401 and other.headers["RequestsCount-Current"] == "1"


def test_without_a_budget_no_counters_are_sent(rule, fake_rule):
    answer = rule("GET", "/tags")
    assert answer.status_code == 200 and "RequestsCount-Allowed" not in answer.headers


def test_an_outage_answers_503_until_it_ends(rule, fake_rule):
    control = fake_rule.url.replace("/api/v2", "/_fake/control")
    requests.post(control, json={"outage_seconds": 0.5}, timeout=5)
    assert rule("GET", "/tags").status_code == 503
    assert rule("POST", "/subscribers", body()).status_code == 503
    time.sleep(0.6)
    assert rule("GET", "/tags").status_code == 200
    fake_rule.outage(30)
    assert rule("GET", "/tags").status_code == 503
    requests.post(control, json={"outage_seconds": 0}, timeout=5)
    assert rule("GET", "/tags").status_code == 200


def test_a_subscriber_is_found_by_phone_number_also_after_a_delete(rule, fake_rule):
    def post(number: str, **extra) -> int:
        payload = body({"phone_number": "+46701234567", "fields": [{"key": "Order.Number", "value": number}], **extra})
        answer = rule("POST", "/subscribers", payload)
        assert answer.status_code == 200, answer.text
        return answer.json()["subscriber"]["id"]

    first = post("1")
    assert post("2") == first  # the number found the subscriber: updated, not made again
    assert fake_rule.subscriber("+46701234567", "phone_number")["fields"]["Order.Number"]["value"] == "2"

    deleted = rule("DELETE", "/subscribers/%2B46701234567", params={"identified_by": "phone_number"})
    assert deleted.status_code == 200 and fake_rule.subscriber("+46701234567", "phone_number") is None
    second = post("3", email="bo@example.com")
    assert second != first and fake_rule.subscriber("+46701234567", "phone_number")["email"] == "bo@example.com"
    assert post("4") == second
