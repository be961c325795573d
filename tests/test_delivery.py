"""Delivery to Rule: every answer class, end to end against the fake Rule over real HTTP."""

import socket
from datetime import UTC, timedelta
from email.utils import format_datetime
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from integration import retry
from integration.delivery import engine as delivery
from integration.models import Connection, Delivery, DeliveryAttempt
from integration.rule.budget import RuleBudget
from tests.factories import ConnectionFactory

BODY = {
    "update_on_duplicate": True,
    "automation": "reset",
    "tags": ["OrderCompleted"],
    "subscribers": {"email": "anna@example.com", "fields": [{"key": "Order.Number", "value": "10452"}]},
}


def make_delivery(connection, **kwargs) -> Delivery:
    kwargs.setdefault("event", "OrderCompleted")
    kwargs.setdefault("body", BODY)
    kwargs.setdefault("email", "anna@example.com")
    kwargs.setdefault("idempotency_key", "OrderCompleted:order:10452")
    return delivery.create_delivery(connection=connection, **kwargs)


def make_due(d: Delivery) -> None:
    """Move the clock for this delivery: its next attempt is now."""
    Delivery.objects.filter(pk=d.pk).update(next_attempt_at=timezone.now())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- creating


def test_a_delivery_is_stored_pending_and_due_now(rule_connection):
    before = timezone.now()
    d = make_delivery(rule_connection, order_number="10452", notes=("Order.Products trimmed to 65 KiB",))
    d.refresh_from_db()
    assert d.status == Delivery.Status.PENDING and d.trigger == Delivery.Trigger.EVENT
    assert before <= d.next_attempt_at <= timezone.now()
    assert (d.method, d.path, d.request_body, d.order_number) == ("POST", "/subscribers", BODY, "10452")


def test_the_same_idempotency_key_makes_no_second_delivery(rule_connection):
    assert make_delivery(rule_connection) is not None
    assert make_delivery(rule_connection) is None
    assert Delivery.objects.count() == 1
    # the same key on another connection is another delivery
    other = ConnectionFactory(rule_api_url=rule_connection.rule_api_url)
    assert make_delivery(other) is not None


def test_a_delivery_is_enqueued_once_its_transaction_commits(
    rule_connection, task_queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        d = make_delivery(rule_connection)
        assert task_queue.pending() == []
    # one task for the delivery's group (its connection and its request without the subscriber)
    assert d.batch_key
    assert task_queue.pending() == [("integration.tasks.deliver_group", (rule_connection.pk, d.batch_key))]


def test_mapping_notes_show_on_the_delivery_and_its_first_attempt(rule_connection, fake_rule):
    d = make_delivery(rule_connection, notes=("Order.Products trimmed to 65 KiB",))
    delivery.deliver(d.pk)
    d.refresh_from_db()
    assert d.notes == "Order.Products trimmed to 65 KiB"
    assert d.attempts.get().note == "Order.Products trimmed to 65 KiB"


# ---------------------------------------------------------------- answer classes


def test_a_2xx_answer_succeeds_and_rule_receives_the_body(rule_connection, fake_rule):
    d = make_delivery(rule_connection)

    outcome = delivery.deliver(d.pk)

    d.refresh_from_db()
    assert outcome == "succeeded"
    assert d.status == Delivery.Status.SUCCEEDED and d.finished_at is not None and d.last_error == ""
    [request] = fake_rule.requests
    assert request["method"] == "POST" and request["path"] == "/api/v2/subscribers"
    assert request["headers"]["Authorization"] != f"Bearer {fake_rule.api_key}"
    assert request["json"] == BODY
    assert fake_rule.subscriber("anna@example.com")["tags"] == ["OrderCompleted"]
    [attempt] = d.attempts.all()
    assert (attempt.number, attempt.status_code, attempt.outcome) == (1, 200, "succeeded")
    assert '"subscriber"' in attempt.response_body
    assert attempt.duration_ms is not None


def test_a_finished_delivery_is_never_sent_again(rule_connection, fake_rule):
    d = make_delivery(rule_connection)
    delivery.deliver(d.pk)
    fake_rule.clear()
    make_due(d)
    for status in ("succeeded", "failed", "cancelled"):
        Delivery.objects.filter(pk=d.pk).update(status=status)
        assert delivery.deliver(d.pk) == "closed"
    assert fake_rule.requests == []


def test_a_500_is_retried_on_schedule_and_then_succeeds(rule_connection, fake_rule):
    # given Rule fails once with 500
    fake_rule.fail(500)
    d = make_delivery(rule_connection)

    # when the worker sends it
    before = timezone.now()
    assert delivery.deliver(d.pk) == "retry"

    # then it waits 30 s (+-20 %) and is not sent again before that
    d.refresh_from_db()
    assert d.status == Delivery.Status.RETRYING and d.attempt_count == 1
    assert before + timedelta(seconds=24) <= d.next_attempt_at <= timezone.now() + timedelta(seconds=36)
    assert "500 UnexpectedError" in d.last_error
    assert delivery.deliver(d.pk) == "not due"

    # when the time has come
    make_due(d)
    assert delivery.deliver(d.pk) == "succeeded"
    d.refresh_from_db()
    assert d.status == Delivery.Status.SUCCEEDED
    assert [(a.number, a.status_code, a.outcome) for a in d.attempts.all()] == [
        (1, 500, "retry"),
        (2, 200, "succeeded"),
    ]
    assert len(fake_rule.requests) == 2


def test_a_timeout_is_retried(rule_connection, fake_rule, settings):
    settings.RULE_READ_TIMEOUT = 0.3
    fake_rule.set_latency(1000)
    d = make_delivery(rule_connection)

    assert delivery.deliver(d.pk) == "retry"

    d.refresh_from_db()
    attempt = d.attempts.get()
    assert d.status == Delivery.Status.RETRYING
    assert attempt.status_code is None and attempt.error.startswith("timeout")
    assert fake_rule.api_key not in attempt.error and fake_rule.api_key not in d.last_error


def test_a_refused_connection_is_retried(db):
    conn = ConnectionFactory(rule_api_url=f"http://127.0.0.1:{free_port()}/api/v2", rule_api_key="secret-key-abc")
    d = make_delivery(conn)

    assert delivery.deliver(d.pk) == "retry"

    d.refresh_from_db()
    assert d.status == Delivery.Status.RETRYING
    assert d.attempts.get().error.startswith("connection error")
    assert "secret-key-abc" not in d.last_error


def test_a_408_is_retried(rule_connection, fake_rule):
    fake_rule.fail(408)
    d = make_delivery(rule_connection)
    assert delivery.deliver(d.pk) == "retry"
    d.refresh_from_db()
    assert d.status == Delivery.Status.RETRYING and d.attempts.get().status_code == 408


def test_the_budget_is_eight_attempts_then_failed(rule_connection, fake_rule):
    fake_rule.fail(503, times=10)
    d = make_delivery(rule_connection)

    for _ in range(retry.MAX_ATTEMPTS):
        make_due(d)
        # after 3 failures in a row the breaker holds the connection: each later attempt is its probe, when due
        RuleBudget.objects.filter(connection=rule_connection).update(next_probe_at=timezone.now())
        Connection.objects.filter(pk=rule_connection.pk).update(hold_until=None)
        assert delivery.deliver(d.pk) == "retry"

    d.refresh_from_db()
    assert retry.MAX_ATTEMPTS == 8
    assert d.status == Delivery.Status.FAILED
    assert d.last_error.startswith("gave up after 8 attempts: 503")
    assert d.attempts.count() == 8 and len(fake_rule.requests) == 8
    make_due(d)
    assert delivery.deliver(d.pk) == "closed"


@pytest.mark.parametrize("form", ["seconds", "http-date", "stockholm"])
def test_a_429_holds_the_whole_connection_until_retry_after(rule_connection, fake_rule, form):
    # given Rule answers 429 with a Retry-After 10 minutes ahead, in one of its three forms
    until = (timezone.now() + timedelta(minutes=10)).replace(microsecond=0)
    retry_after = {
        "seconds": "600",
        "http-date": format_datetime(until.astimezone(UTC), usegmt=True),
        "stockholm": until.astimezone(ZoneInfo("Europe/Stockholm")).strftime("%Y-%m-%d %H:%M:%S"),
    }[form]
    fake_rule.fail(429, retry_after=retry_after)
    first = make_delivery(rule_connection)
    second = make_delivery(rule_connection, idempotency_key="OrderCompleted:order:2")

    # when the first is sent
    assert delivery.deliver(first.pk) == "rate_limited"

    # then the connection is held until then, the attempt is not counted, and nothing of it goes out
    rule_connection.refresh_from_db()
    first.refresh_from_db()
    assert abs((rule_connection.hold_until - until).total_seconds()) <= 2
    assert first.attempt_count == 0 and first.attempts.get().counted is False
    assert first.next_attempt_at == rule_connection.hold_until
    assert delivery.deliver(second.pk) == "rate_limited"
    second.refresh_from_db()
    assert second.next_attempt_at == rule_connection.hold_until
    assert len(fake_rule.requests) == 1
    assert delivery.sweep()["deliveries"] == 0

    # when the hold has passed, both go
    Connection.objects.filter(pk=rule_connection.pk).update(hold_until=timezone.now() - timedelta(seconds=1))
    Delivery.objects.update(next_attempt_at=timezone.now())
    assert delivery.deliver(first.pk) == "succeeded"
    assert delivery.deliver(second.pk) == "succeeded"


def test_a_401_pauses_the_connection_and_loses_nothing(
    rule_connection, fake_rule, task_queue, django_capture_on_commit_callbacks
):
    # given a key Rule no longer accepts
    Connection.objects.filter(pk=rule_connection.pk).update(rule_api_key="revoked-key-123456")
    d = make_delivery(rule_connection)

    # when the worker sends it
    assert delivery.deliver(d.pk) == "paused"

    # then the connection is paused with Rule's reason and the delivery waits, budget untouched
    rule_connection.refresh_from_db()
    d.refresh_from_db()
    assert rule_connection.status == Connection.Status.PAUSED
    assert "401 NotAuthorized" in rule_connection.paused_reason
    assert "revoked-key-123456" not in rule_connection.paused_reason
    assert d.status == Delivery.Status.PENDING and d.attempt_count == 0
    assert d.attempts.get().outcome == "paused"
    assert delivery.deliver(d.pk) == "paused"
    assert delivery.sweep()["deliveries"] == 0
    assert len(fake_rule.requests) == 1

    # when the merchant fixes the key and resumes the connection
    Connection.objects.filter(pk=rule_connection.pk).update(rule_api_key=fake_rule.api_key)
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.resume_connection(rule_connection) == 1
    task_queue.run_all()

    # then it is sent
    d.refresh_from_db()
    rule_connection.refresh_from_db()
    assert rule_connection.status == Connection.Status.ACTIVE and rule_connection.paused_reason == ""
    assert d.status == Delivery.Status.SUCCEEDED
    assert [a.number for a in d.attempts.all()] == [1, 2]


def test_a_403_pauses_the_connection_too(rule_connection, fake_rule):
    fake_rule.fail(403, body={"error": "Forbidden", "message": "Account blocked"})
    d = make_delivery(rule_connection)
    assert delivery.deliver(d.pk) == "paused"
    rule_connection.refresh_from_db()
    assert rule_connection.is_paused and "Account blocked" in rule_connection.paused_reason


def test_a_400_fails_at_once_with_rules_message(rule_connection, fake_rule):
    body = {**BODY, "subscribers": {"email": "anna@example.com", "fields": [{"key": "Order", "value": "1"}]}}
    d = make_delivery(rule_connection, body=body)

    assert delivery.deliver(d.pk) == "failed"

    d.refresh_from_db()
    assert d.status == Delivery.Status.FAILED
    assert d.last_error.startswith("400 BadRequest: Field key 'Order' must be Group.Field")
    assert len(fake_rule.requests) == 1
    make_due(d)
    assert delivery.deliver(d.pk) == "closed"


def test_a_409_or_404_fails_at_once(rule_connection, fake_rule):
    d = make_delivery(rule_connection, body={**BODY, "tags": ["999999"]})
    assert delivery.deliver(d.pk) == "failed"
    d.refresh_from_db()
    assert d.last_error == "404 NotFound: Tag with id 999999 not found"


def test_a_400_on_the_phone_number_is_retried_once_without_it(rule_connection, fake_rule):
    # given a subscriber whose phone number Rule rejects
    body = {**BODY, "subscribers": {**BODY["subscribers"], "phone_number": "0701234567"}}
    d = make_delivery(rule_connection, body=body)

    # when it is sent
    assert delivery.deliver(d.pk) == "succeeded"

    # then Rule got it a second time without phone_number, and the log says so
    first, second = fake_rule.requests
    assert first["json"]["subscribers"]["phone_number"] == "0701234567"
    assert "phone_number" not in second["json"]["subscribers"]
    assert second["json"]["subscribers"]["fields"] == BODY["subscribers"]["fields"]
    d.refresh_from_db()
    a1, a2 = d.attempts.all()
    assert (a1.status_code, a1.outcome, a2.status_code, a2.outcome) == (400, "failed", 200, "succeeded")
    assert a2.note.startswith("Retried without phone_number")
    assert "phone_number" not in d.request_body["subscribers"]


def test_a_phone_retry_that_fails_again_is_not_retried_a_third_time(rule_connection, fake_rule):
    fake_rule.fail(
        400,
        times=2,
        body={"error": "BadRequest", "message": "Invalid phone number", "fields": {"phone_number": ["invalid"]}},
    )
    body = {**BODY, "subscribers": {**BODY["subscribers"], "phone_number": "+46701234567"}}
    d = make_delivery(rule_connection, body=body)
    assert delivery.deliver(d.pk) == "failed"
    assert len(fake_rule.requests) == 2
    d.refresh_from_db()
    assert d.status == Delivery.Status.FAILED


def test_a_redirect_is_an_error_and_not_followed(rule_connection, fake_rule):
    fake_rule.fail(301, body={"error": "Moved"})
    d = make_delivery(rule_connection)
    assert delivery.deliver(d.pk) == "failed"
    d.refresh_from_db()
    assert "redirect" in d.last_error
    assert len(fake_rule.requests) == 1


def test_a_long_answer_is_stored_cut_to_8_kb(rule_connection, fake_rule):
    fake_rule.fail(500, body={"error": "UnexpectedError", "message": "x" * 20000})
    d = make_delivery(rule_connection)
    delivery.deliver(d.pk)
    attempt = d.attempts.get()
    assert len(attempt.response_body.encode()) == DeliveryAttempt.RESPONSE_LIMIT


# ---------------------------------------------------------------- claim and attempt row


def test_a_claimed_delivery_is_not_sent_by_a_second_worker(rule_connection, fake_rule):
    d = make_delivery(rule_connection)
    claimed = delivery._claim({"id": d.pk}, 1)
    assert [c.pk for c in claimed] == [d.pk]
    assert delivery.deliver(d.pk) == "not due"
    assert delivery.deliver_group(rule_connection.pk, d.batch_key) == {}
    assert delivery._claim({"id": d.pk}, 1) == []
    assert fake_rule.requests == []


def test_the_attempt_row_exists_before_the_http_call(transactional_db, fake_rule):
    # given a fake Rule that looks into our (committed) database from its own thread when the request arrives
    from django.db import connection as db_connection

    conn = ConnectionFactory(rule_api_url=fake_rule.url, rule_api_key=fake_rule.api_key)
    seen = []
    d = make_delivery(conn)

    def look(entry: dict) -> None:
        seen.append(list(DeliveryAttempt.objects.filter(delivery=d).values_list("number", "outcome", "status_code")))
        db_connection.close()  # this thread's own connection

    fake_rule.on_request = look

    delivery.deliver(d.pk)

    assert seen == [[(1, "", None)]]
    assert Delivery.objects.get(pk=d.pk).status == Delivery.Status.SUCCEEDED


# ---------------------------------------------------------------- operator actions


def test_send_now_sends_synchronously_and_returns_the_attempt(rule_connection, fake_rule):
    d = make_delivery(rule_connection, trigger=Delivery.Trigger.TEST, idempotency_key="test:1")
    attempt = delivery.send_now(d)
    assert (attempt.number, attempt.status_code, attempt.outcome) == (1, 200, "succeeded")
    assert d.status == Delivery.Status.SUCCEEDED
    assert len(fake_rule.requests) == 1


def test_resend_reopens_with_history_kept(rule_connection, fake_rule, task_queue, django_capture_on_commit_callbacks):
    fake_rule.fail(400)
    d = make_delivery(rule_connection)
    delivery.deliver(d.pk)
    d.refresh_from_db()
    assert d.status == Delivery.Status.FAILED

    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.resend(d) is True
    # The original trigger is kept; the resend is counted on the row.
    assert d.status == Delivery.Status.PENDING and d.trigger == Delivery.Trigger.EVENT
    assert d.resend_count == 1 and d.resent_at is not None
    assert d.attempt_count == 0 and d.last_error == ""
    task_queue.run_all()

    d.refresh_from_db()
    assert d.status == Delivery.Status.SUCCEEDED
    assert [(a.number, a.status_code) for a in d.attempts.all()] == [(1, 400), (2, 200)]


def test_resend_refuses_a_delivery_in_flight(rule_connection):
    d = make_delivery(rule_connection)
    delivery._claim({"id": d.pk}, 1)
    assert delivery.resend(d) is False
    assert d.status == Delivery.Status.SENDING


# ---------------------------------------------------------------- cart tag removal


def test_a_completed_order_removes_the_cart_tag(
    rule_connection, fake_rule, task_queue, django_capture_on_commit_callbacks
):
    # given a shopper holding the cart tag in Rule
    cart = make_delivery(
        rule_connection,
        event="OrderCreated",
        idempotency_key="OrderCreated:cart:1",
        body={**BODY, "tags": ["OrderCreated"]},
    )
    delivery.deliver(cart.pk)
    assert fake_rule.subscriber("anna@example.com")["tags"] == ["OrderCreated"]
    fake_rule.clear()

    # when the order completes
    with django_capture_on_commit_callbacks(execute=True):
        order = make_delivery(rule_connection)
    task_queue.drain()  # the order's delivery, then the removal it creates

    # then Rule is asked to remove the tag, and the shopper no longer holds it
    removal = Delivery.objects.get(event="RemoveCartTag")
    assert removal.status == Delivery.Status.SUCCEEDED
    assert removal.idempotency_key == f"RemoveCartTag:{order.idempotency_key}:OrderCreated"
    assert [(r["method"], r["path"], r["query"]) for r in fake_rule.requests] == [
        ("POST", "/api/v2/subscribers", {}),
        ("DELETE", "/api/v2/subscribers/anna%40example.com/tags/OrderCreated", {"identified_by": "email"}),
    ]
    assert fake_rule.subscriber("anna@example.com")["tags"] == ["OrderCompleted"]


def cart_delivery(connection, email: str = "anna@example.com", key: str = "OrderCreated:cart:1") -> Delivery:
    """The shopper's abandoned-cart delivery (OrderCreated), stored and not sent yet."""
    return make_delivery(
        connection,
        event="OrderCreated",
        email=email,
        idempotency_key=key,
        body={**BODY, "tags": ["OrderCreated"], "subscribers": {"email": email}},
        dispatch=False,
    )


def test_removing_a_cart_tag_the_shopper_does_not_hold_counts_as_done(rule_connection, fake_rule):
    # given a shopper whose cart is stored but not sent yet (Rule does not know the tag on them)
    cart_delivery(rule_connection, email="bo+shop@example.com")
    order = make_delivery(
        rule_connection, email="bo+shop@example.com", body={**BODY, "subscribers": {"email": "bo+shop@example.com"}}
    )
    delivery.deliver(order.pk)
    removal = Delivery.objects.get(event="RemoveCartTag")

    assert delivery.deliver(removal.pk) == "succeeded"

    removal.refresh_from_db()
    attempt = removal.attempts.get()
    assert attempt.status_code == 404 and removal.status == Delivery.Status.SUCCEEDED
    assert fake_rule.requests[-1]["path"] == "/api/v2/subscribers/bo%2Bshop%40example.com/tags/OrderCreated"


def rule_calls(fake_rule) -> list[tuple[str, str]]:
    return [(r["method"], r["path"]) for r in fake_rule.requests]


def test_an_order_of_a_shopper_this_connection_never_sent_a_cart_removes_nothing(
    rule_connection, fake_rule, task_queue, django_capture_on_commit_callbacks
):
    # given carts of other shoppers, and one of this shopper on another connection (another Rule account)
    cart_delivery(rule_connection, email="bo@example.com")
    other = ConnectionFactory(rule_api_url=fake_rule.url, rule_api_key=fake_rule.api_key)
    cart_delivery(other, email="anna@example.com")

    # when this shopper's order completes
    with django_capture_on_commit_callbacks(execute=True):
        order = make_delivery(rule_connection)
    task_queue.drain()

    # then Rule gets the order and no DELETE: the shopper cannot hold a cart tag this connection set
    order.refresh_from_db()
    assert order.status == Delivery.Status.SUCCEEDED
    assert rule_calls(fake_rule) == [("POST", "/api/v2/subscribers")]
    assert not Delivery.objects.filter(event="RemoveCartTag").exists()


def assert_order_then_cart_tag_removed(fake_rule) -> None:
    """Rule got the order, then the removal of anna's cart tag, and the removal is recorded as done."""
    assert rule_calls(fake_rule) == [
        ("POST", "/api/v2/subscribers"),
        ("DELETE", "/api/v2/subscribers/anna%40example.com/tags/OrderCreated"),
    ]
    assert Delivery.objects.get(event="RemoveCartTag").status == Delivery.Status.SUCCEEDED


def test_an_order_after_the_shoppers_cart_removes_the_tag_whatever_the_emails_case(
    rule_connection, fake_rule, task_queue, django_capture_on_commit_callbacks
):
    # given the shopper's cart, sent with the email as typed at checkout
    cart = cart_delivery(rule_connection, email="Anna@Example.COM")
    delivery.deliver(cart.pk)
    fake_rule.clear()

    # when the order completes (Centra's customer email in lower case)
    with django_capture_on_commit_callbacks(execute=True):
        make_delivery(rule_connection)
    task_queue.drain()

    # then the tag is removed (Rule matches emails regardless of case)
    assert_order_then_cart_tag_removed(fake_rule)
    assert fake_rule.subscriber("anna@example.com")["tags"] == ["OrderCompleted"]


@pytest.mark.parametrize("status", [Delivery.Status.PENDING, Delivery.Status.RETRYING, Delivery.Status.FAILED])
def test_a_cart_not_delivered_yet_still_leads_to_the_removal(
    rule_connection, fake_rule, task_queue, django_capture_on_commit_callbacks, status
):
    # given the shopper's cart waiting (or given up: a resend may still send it)
    cart = cart_delivery(rule_connection)
    Delivery.objects.filter(pk=cart.pk).update(status=status, next_attempt_at=timezone.now() + timedelta(hours=1))

    # when the order completes first
    with django_capture_on_commit_callbacks(execute=True):
        make_delivery(rule_connection)
    task_queue.drain()

    # then the removal goes out all the same (404 now: nothing to remove, done)
    assert_order_then_cart_tag_removed(fake_rule)


def test_removing_the_cart_tag_from_every_shopper_when_the_merchant_asks(
    rule_connection, fake_rule, task_queue, django_capture_on_commit_callbacks
):
    # given a merchant whose earlier plug-in set the cart tags, and a shopper holding one in Rule
    fake_rule.handle_api(
        "POST", "/subscribers", {}, {"tags": ["OrderCreated"], "subscribers": {"email": "anna@example.com"}}
    )
    Connection.objects.filter(pk=rule_connection.pk).update(remove_cart_tag_always=True)
    rule_connection.refresh_from_db()
    fake_rule.clear()

    # when the shopper's order completes (no cart of theirs went through this connection)
    with django_capture_on_commit_callbacks(execute=True):
        make_delivery(rule_connection)
    task_queue.drain()

    # then the tag is removed all the same
    assert_order_then_cart_tag_removed(fake_rule)
    assert fake_rule.subscriber("anna@example.com")["tags"] == ["OrderCompleted"]


def test_no_cart_tag_removal_when_switched_off(rule_connection, fake_rule):
    Connection.objects.filter(pk=rule_connection.pk).update(remove_cart_tag=False)
    rule_connection.refresh_from_db()
    d = make_delivery(rule_connection)
    delivery.deliver(d.pk)
    assert not Delivery.objects.filter(event="RemoveCartTag").exists()


def test_the_rule_key_is_stored_nowhere_even_when_rule_echoes_it(rule_connection, fake_rule):
    fake_rule.fail(500, body={"error": "UnexpectedError", "message": f"bad request with key {fake_rule.api_key}"})
    d = make_delivery(rule_connection)

    delivery.deliver(d.pk)

    d.refresh_from_db()
    attempt = d.attempts.get()
    assert fake_rule.api_key not in attempt.response_body and "[api key]" in attempt.response_body
    assert fake_rule.api_key not in d.last_error
