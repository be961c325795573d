"""Delivery under faults: the database failing right after Rule answered, a Rule that answers after our timeout,
and a worker stopped with SIGTERM in the middle of its calls."""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection as db_connection
from django.db import connections
from django_q.conf import Conf

from integration.delivery import engine as delivery
from integration.models import Delivery, DeliveryAttempt
from tests.processes import manage

ROOT = Path(__file__).resolve().parent.parent

BODY = {
    "update_on_duplicate": True,
    "tags": ["OrderCompleted"],
    "subscribers": {"email": "anna@example.com", "fields": [{"key": "Order.Number", "value": "10452"}]},
}


def order_delivery(connection, n: int = 10452, tags: tuple[str, ...] = ("OrderCompleted",)) -> Delivery:
    return delivery.create_delivery(
        connection=connection,
        event="OrderCompleted",
        body={**BODY, "tags": list(tags), "subscribers": {**BODY["subscribers"], "email": f"shopper{n}@example.com"}},
        email=f"shopper{n}@example.com",
        idempotency_key=f"OrderCompleted:order:{n}",
        order_number=str(n),
    )


def break_the_database_for(seconds: float):
    """A hook for the fake Rule (it runs after Rule has acted, before the answer goes out) that makes the
    worker's next database statement fail: PostgreSQL terminates the worker's backend; SQLite holds the
    write lock longer than the worker's busy timeout (lowered for the test)."""
    if db_connection.vendor == "postgresql":
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            [pid] = cursor.fetchone()

        def hook(entry: dict) -> None:
            other = connections.create_connection("default")
            with other.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            other.close()

        return hook

    with db_connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 200")  # this connection only; a reconnect gets the usual 20 s
    path = db_connection.settings_dict["NAME"]
    locked = threading.Event()

    def hold_lock() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        other.execute("COMMIT")
        other.close()

    def hook(entry: dict) -> None:
        threading.Thread(target=hold_lock, daemon=True).start()
        locked.wait(5)

    return hook


def test_a_database_failure_right_after_rule_answered_records_the_answer_and_sends_nothing_twice(
    transactional_db, rule_connection, fake_rule
):
    # given a delivered order's cart tag to remove afterwards (the shopper's cart went out before), and a database
    # that fails as Rule answers 200
    rule_connection.flows.filter(event="OrderCreated").update(enabled=True, tags=["OrderCreated"])
    delivery.create_delivery(
        connection=rule_connection,
        event="OrderCreated",
        body={**BODY, "tags": ["OrderCreated"], "subscribers": {"email": "shopper10452@example.com"}},
        email="shopper10452@example.com",
        idempotency_key="OrderCreated:cart:shopper10452@example.com:1",
        dispatch=False,
    )
    d = order_delivery(rule_connection)
    fake_rule.on_request = break_the_database_for(1.0)

    # when the worker sends it
    outcome = delivery.deliver(d.pk)
    fake_rule.on_request = None

    # then the answer was recorded (the recording was retried, not the call) ...
    assert outcome == "succeeded"
    d.refresh_from_db()
    assert d.status == Delivery.Status.SUCCEEDED
    [attempt] = d.attempts.all()
    assert (attempt.status_code, attempt.outcome, attempt.error) == (200, "succeeded", "")
    # ... Rule got the order exactly once ...
    assert [r["method"] for r in fake_rule.requests] == ["POST"]
    # ... and the cart tag removal was stored with the outcome
    removal = Delivery.objects.get(event=delivery.REMOVE_CART_TAG)
    assert removal.path.startswith("/subscribers/shopper10452%40example.com/tags/OrderCreated")


def test_an_answer_after_our_timeout_is_shown_as_a_possible_duplicate(rule_connection, fake_rule, settings):
    # given Rule answering after our read timeout (it still acts on the request)
    settings.RULE_READ_TIMEOUT = 0.3
    fake_rule.set_latency(800)
    d = order_delivery(rule_connection)

    assert delivery.deliver(d.pk) == "retry"

    # then the attempt says the request may have arrived (a later resend can be a duplicate Rule shows twice)
    attempt = d.attempts.get()
    assert "timeout" in attempt.error
    assert delivery.MAY_HAVE_ARRIVED in attempt.note
    time.sleep(0.8)
    assert fake_rule.subscriber("shopper10452@example.com") is not None  # Rule did act on it


def test_a_refused_connection_is_not_called_a_possible_duplicate(rule_connection):
    rule_connection.rule_api_url = "http://127.0.0.1:9/api/v2"
    rule_connection.save()
    d = order_delivery(rule_connection)
    assert delivery.deliver(d.pk) == "retry"
    attempt = d.attempts.get()
    assert "connection error" in attempt.error and delivery.MAY_HAVE_ARRIVED not in attempt.note


# ---------------------------------------------------------------- SIGTERM


@pytest.mark.cluster
def test_sigterm_finishes_the_calls_in_flight_hands_back_the_rest_and_exits_in_time(
    transactional_db, rule_connection, fake_rule, monkeypatch, django_capture_on_commit_callbacks
):
    # given Rule taking 2 s per answer, a read timeout of 10 s, and eight deliveries queued for one worker, each
    # with its own tag (so none shares a call with another)
    fake_rule.set_latency(2000)
    cluster_name = f"stop-{uuid.uuid4().hex[:10]}"
    monkeypatch.setattr(Conf, "CLUSTER_NAME", cluster_name)
    monkeypatch.setattr(Conf, "PREFIX", cluster_name)
    with django_capture_on_commit_callbacks(execute=True):
        deliveries = [order_delivery(rule_connection, n, tags=(f"Tag{n}",)) for n in range(8)]
    worker = manage("qcluster", Q_CLUSTER_NAME=cluster_name, Q_WORKERS="2", RULE_READ_TIMEOUT="10")
    try:
        # when two calls are in flight (their attempt rows written, no answer yet) and the worker gets SIGTERM
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and DeliveryAttempt.objects.filter(outcome="").count() < 2:
            time.sleep(0.05)
        assert DeliveryAttempt.objects.filter(outcome="").count() == 2, "no call started"
        stopped_at = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        output, _ = worker.communicate(timeout=15)
        took = time.monotonic() - stopped_at
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()

    # then it exited within the read timeout, once the calls in flight were answered and recorded
    assert worker.returncode == 0, output[-3000:]
    assert took < 10, f"took {took:.1f} s"
    attempts = list(DeliveryAttempt.objects.all())
    assert len(attempts) == 2 and all(a.outcome == "succeeded" and a.status_code == 200 for a in attempts)
    assert len(fake_rule.requests) == 2
    # and nothing else was started: the other six wait, due, for the next worker (nothing lost, nothing claimed)
    statuses = [Delivery.objects.get(pk=d.pk).status for d in deliveries]
    assert sorted(statuses) == ["pending"] * 6 + ["succeeded"] * 2
