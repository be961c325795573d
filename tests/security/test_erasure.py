"""Erasure that erases: after `forget_subscriber`, no table holds the person's email, name or address (their
own events, another buyer's order shipped to them, rows stored with odd spacing or case, back-in-stock watchers
and batch deliveries, admin history), and a tombstone drops what arrives about them later (a replayed request,
a late webhook) while a new sign-up after the erasure still works. Runs on SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from backinstock.alerts import run_restock
from backinstock.models import Watcher
from backinstock.stock import record_stock
from integration.inbound.signature import sign
from integration.mapping.samples import sample
from integration.models import Delivery, ForgottenSubscriber, InboundEvent, RejectedCall
from integration.sandbox.fake_centra import webhook_body
from integration.tombstones import mention_pattern
from tests.factories import ConnectionFactory, InboundEventFactory
from tests.fixtures.centra import centra_sample

pytestmark = pytest.mark.django_db

ANNA = "anna.lindqvist@example.com"  # the samples' shopper: Anna Lindqvist, Sveavägen 44
SECRET = "whsec-test-1"  # the ConnectionFactory's signing secret
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


class Shop:
    """The storefront posting signed requests, and the worker running what they enqueue (on-commit work is run:
    the test's transaction never commits)."""

    def __init__(self, client, task_queue, capture) -> None:
        self.client, self.task_queue, self.capture = client, task_queue, capture

    def post_raw(self, conn, raw: bytes, headers: dict, *, path: str = "centra-events", content_type=JSON):
        with self.capture(execute=True):
            return self.client.post(
                reverse(path, args=[conn.token]), data=raw, content_type=content_type, headers=headers
            )

    def post(self, conn, document: dict):
        raw = json.dumps(document).encode()
        headers = {"X-Centra-Signature": sign(SECRET, raw)}
        return self.post_raw(conn, raw, headers), raw, headers

    def drain(self) -> None:
        """Run the worker's queue, and what its tasks enqueue, until it is empty."""
        for _ in range(20):
            if not self.task_queue.pending():
                return
            with self.capture(execute=True):
                self.task_queue.run_all()
        raise AssertionError(f"the queue did not drain: {self.task_queue.pending()}")


@pytest.fixture
def shop(client, task_queue, django_capture_on_commit_callbacks) -> Shop:
    return Shop(client, task_queue, django_capture_on_commit_callbacks)


def event(event_id: str, event_type: str, body: dict, occurred: str = "2026-11-29T12:00:00Z") -> dict:
    return {"id": event_id, "type": event_type, "occurredAt": occurred, **body}


def bos_order_shipped_to_anna() -> dict:
    """Another buyer (Bo) whose order is shipped to Anna: her email only inside the payload, odd case and spacing."""
    body = sample("OrderShipped")
    order = body["shipment"]["order"]
    order["number"] = 20001
    body["shipment"]["id"] = 5501
    order["customer"] = {"id": 9001, "email": "bo.ek@example.com", "firstName": "Bo", "lastName": "Ek"}
    order["billingAddress"] = {
        **order["billingAddress"],
        "email": "bo.ek@example.com",
        "firstName": "Bo",
        "lastName": "Ek",
        "address1": "Kungsgatan 1",
    }
    order["shippingAddress"]["email"] = "  Anna.Lindqvist@EXAMPLE.com "
    return body


def every_string_in_the_database() -> list[tuple[str, str]]:
    """(model, text) for every text and JSON string of every row of every table."""
    found = []
    for model in apps.get_models():
        for row in model.objects.values():
            stack = list(row.values())
            while stack:
                item = stack.pop()
                if isinstance(item, str):
                    found.append((model._meta.label, item))
                elif isinstance(item, dict):
                    stack.extend([*item.keys(), *item.values()])
                elif isinstance(item, list):
                    stack.extend(item)
    return found


def traces_of_anna() -> list[tuple[str, str]]:
    pattern = mention_pattern(ANNA)
    return [
        (label, text)
        for label, text in every_string_in_the_database()
        if pattern.search(text) or "Sveavägen 44" in text or text == "Lindqvist"
    ]


def forget(*args: str) -> dict:
    out = StringIO()
    call_command("forget_subscriber", *args, stdout=out)
    return json.loads(out.getvalue())


@pytest.fixture
def anna_everywhere(shop, rule_connection, fake_rule):
    """Anna in every table that can hold a person, beside others who must stay."""
    conn = rule_connection
    # her abandoned cart, then her own order, through the endpoint and the worker, delivered to Rule (attempts,
    # cart-tag follow-up)
    assert shop.post(conn, event("evt-anna-0", "OrderCreated", sample("OrderCreated")))[0].status_code == 200
    shop.drain()
    own, own_raw, own_headers = shop.post(conn, event("evt-anna-1", "OrderCompleted", sample("OrderCompleted")))
    assert own.status_code == 200
    # another buyer's order shipped to her
    assert shop.post(conn, event("evt-bo-1", "OrderShipped", bos_order_shipped_to_anna()))[0].status_code == 200
    shop.drain()
    # a row stored long ago with odd spacing and case, in the column and the payload
    InboundEventFactory(
        connection=conn,
        event_type="Newsletter",
        email=" Anna.Lindqvist@Example.com",
        payload={"email": "\tANNA.LINDQVIST@example.com", "language": "sv"},
        status="processed",
    )
    # back in stock: she and Bo wait for the same size; the restock alerts both in one batch; she waits for another
    for email, item in ((ANNA, "100-200"), ("bo.ek@example.com", "100-200"), (ANNA, "100-300")):
        Watcher.objects.create(
            connection=conn,
            email=email,
            item=item,
            language="sv",
            country="SE",
            product={"name": "Wool Coat", "size": "M", "sku": f"SKU-{item}"},
        )
    run_restock(record_stock(conn, "100-200", 50, source="admin").pk)
    shop.drain()
    # the admin's history names her
    admin = User.objects.create_superuser("merchant", "m@example.com", "correct-horse-battery-42")
    LogEntry.objects.create(
        user=admin,
        content_type=ContentType.objects.get_for_model(Delivery),
        object_id="1",
        object_repr=f"OrderCompleted to {ANNA} (succeeded)",
        action_flag=CHANGE,
        change_message="[]",
    )
    # a refused call (no signature) whose first bytes, kept for the console, carry her email
    raw = json.dumps(event("evt-anna-bad", "Newsletter", {"email": ANNA, "language": "sv"}))
    RejectedCall.objects.create(
        connection=conn, endpoint="events", status_code=401, reason="signature rejected", body_start=raw[:256]
    )
    # people who must stay: Joanna (whose address contains Anna's) and Bo's own sign-up
    joanna = shop.post(
        conn, event("evt-jo-1", "Newsletter", {"email": "joanna.lindqvist@example.com", "language": "sv"})
    )[0]
    bo = shop.post(conn, event("evt-bo-2", "Newsletter", {"email": "bo.ek@example.com", "language": "sv"}))[0]
    assert joanna.status_code == bo.status_code == 200
    shop.drain()
    assert traces_of_anna(), "the scenario must put Anna in the database first"
    return {"conn": conn, "own_raw": own_raw, "own_headers": own_headers}


def test_erasure_leaves_no_row_with_her_email_name_or_address(anna_everywhere, fake_rule):
    batch = Delivery.objects.get(event="ProductAlertTriggered")
    assert sorted(s["email"] for s in batch.request_body["subscribers"]) == [ANNA, "bo.ek@example.com"]
    assert Delivery.objects.filter(event="RemoveCartTag", email=ANNA).exists()

    # when the operator erases her (typed with odd case and spacing)
    result = forget(" Anna.Lindqvist@EXAMPLE.com ")

    # then nothing of hers is left in any table, on either database
    assert traces_of_anna() == []
    # and the command says what it erased and what remains outside
    assert result["email"] == ANNA
    assert result["inbound_events_deleted"] == 4  # her cart, her order, Bo's order shipped to her, the old odd row
    # her cart, her order, its cart-tag removal, Bo's order (her name and address)
    assert result["deliveries_deleted"] >= 4
    assert not Delivery.objects.filter(event="RemoveCartTag").exists()
    assert result["batch_deliveries_redacted"] == 1
    assert result["backinstock_watchers_deleted"] == 2
    assert result["admin_history_entries_deleted"] == 1
    assert result["rejected_calls_deleted"] == 1
    assert any("backups" in line for line in result["remains_outside"])
    assert any(line.startswith("Rule:") for line in result["remains_outside"])
    # the others stay: Bo keeps his alert (without her) and his watcher, Joanna and Bo their sign-ups
    batch.refresh_from_db()
    assert [s["email"] for s in batch.request_body["subscribers"]] == ["bo.ek@example.com"]
    assert list(Watcher.objects.values_list("email", flat=True)) == ["bo.ek@example.com"]
    kept = set(InboundEvent.objects.values_list("email", flat=True))
    assert kept == {"joanna.lindqvist@example.com", "bo.ek@example.com"}


def test_the_tombstone_is_a_keyed_hash_not_the_email(anna_everywhere):
    forget(ANNA)

    [stone] = ForgottenSubscriber.objects.all()
    assert stone.email_hash not in (hashlib.sha256(ANNA.encode()).hexdigest(), hashlib.md5(ANNA.encode()).hexdigest())
    assert len(stone.email_hash) == 64 and stone.connection is None


def test_a_replayed_request_is_dropped_and_shown_as_ignored(shop, anna_everywhere, fake_rule):
    forget(ANNA)
    fake_rule.clear()

    # when the same signed request is replayed (within the signature window)
    conn = anna_everywhere["conn"]
    replay = shop.post_raw(conn, anna_everywhere["own_raw"], anna_everywhere["own_headers"])
    shop.drain()

    # then the sender gets 200 (nothing to retry), the row says why it was dropped, and nothing of her is stored
    assert replay.status_code == 200
    dropped = InboundEvent.objects.get(dedupe_key="events:evt-anna-1")
    assert dropped.status == InboundEvent.Status.IGNORED
    assert dropped.error.startswith("dropped: about a subscriber erased on")
    assert dropped.payload == {} and dropped.email == ""
    assert traces_of_anna() == []
    assert fake_rule.requests == []


@pytest.fixture
def anna_in_centra(centra_connection, fake_centra):
    order = centra_sample("orders", 10452)  # Anna Svensson's order in the fake Centra
    fake_centra.add_order(order)
    return order["shippingAddress"]["email"]


def test_a_late_webhook_about_her_is_dropped_after_fetching(shop, centra_connection, anna_in_centra, fake_rule):
    email = anna_in_centra
    forget(email)

    # when Centra's webhook for her order (sent before the erasure) arrives late
    date = (timezone.now() - timedelta(minutes=5)).astimezone(timezone.get_fixed_timezone(60))
    body = webhook_body(
        [{"type": "order", "action": "update", "date": date.strftime("%Y-%m-%d %H:%M:%S"), "id": 10452}]
    )
    headers = {"X-Centra-Signature": sign(SECRET, body)}
    answer = shop.post_raw(centra_connection, body, headers, path="centra-webhook", content_type=FORM)
    shop.drain()

    # then it is ignored with the reason, and Rule hears nothing about her
    assert answer.status_code == 200
    webhook = InboundEvent.objects.get(source="webhook")
    assert webhook.status == InboundEvent.Status.IGNORED and webhook.error.startswith("dropped: about a subscriber")
    assert not Delivery.objects.exists()
    assert fake_rule.requests == []


def test_signing_up_again_after_the_erasure_works(shop, rule_connection, fake_rule):
    forget(ANNA)

    later = (timezone.now() + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    response = shop.post(
        rule_connection, event("evt-again", "Newsletter", {"email": ANNA, "language": "sv"}, occurred=later)
    )[0]
    shop.drain()

    assert response.status_code == 200
    assert InboundEvent.objects.get(dedupe_key="events:evt-again").status == InboundEvent.Status.PROCESSED
    assert [r["json"]["subscribers"]["email"] for r in fake_rule.requests if r["method"] == "POST"] == [ANNA]


def test_erasure_of_one_connection_leaves_the_others(shop, rule_connection):
    other = ConnectionFactory()
    shop.post(rule_connection, event("a-1", "Newsletter", {"email": ANNA, "language": "sv"}))
    shop.post(other, event("a-2", "Newsletter", {"email": ANNA, "language": "sv"}))

    result = forget(ANNA, "--connection", rule_connection.name)

    assert result["inbound_events_deleted"] == 1
    assert list(InboundEvent.objects.values_list("connection", flat=True)) == [other.pk]
    # and the tombstone is for that connection only: the other still takes her events
    assert shop.post(other, event("a-3", "Newsletter", {"email": ANNA, "language": "sv"}))[0].status_code == 200
    assert InboundEvent.objects.get(dedupe_key="events:a-3").status == InboundEvent.Status.RECEIVED


def test_failed_worker_tasks_naming_her_are_erased_and_others_kept():
    from django_q.models import Failure

    # Given two failed tasks the worker kept (pickled, so the database cannot search them): one whose error names
    # her, one about Joanna (a longer address containing hers must not match)
    now = timezone.now()
    for task_id, error in (
        ("a" * 32, f"IntegrityError: Key (email)=({ANNA}) already exists"),
        ("b" * 32, "IntegrityError: Key (email)=(joanna.lindqvist@example.com) already exists"),
    ):
        Failure.objects.create(
            id=task_id, name=task_id, func="integration.tasks.deliver", args=(7,), kwargs={}, result=error,
            started=now, stopped=now, success=False,
        )  # fmt: skip

    # When she is erased
    result = forget(ANNA)

    # Then her failure record is gone and Joanna's is kept
    assert result["failed_tasks_deleted"] == 1
    assert list(Failure.objects.values_list("id", flat=True)) == ["b" * 32]
