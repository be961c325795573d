"""Coalesced delivery: deliveries waiting in one group go to Rule as one call, exactly once each, with outcomes
recorded per delivery; end to end against the fake Rule over real HTTP."""

import threading
from datetime import timedelta

import pytest
from django.db import connection as db_connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integration import retry
from integration.delivery import engine as delivery
from integration.models import Connection, Delivery, DeliveryAttempt
from tests.factories import ConnectionFactory

ENVELOPE = {"update_on_duplicate": True, "automation": "reset", "tags": ["OrderCompleted"]}


def subscriber(n: int, **extra) -> dict:
    return {"email": f"s{n}@example.com", "fields": [{"key": "Order.Number", "value": str(1000 + n)}], **extra}


def make(connection, n: int, envelope: dict | None = None, **extra) -> Delivery:
    sub = subscriber(n, **extra)
    return delivery.create_delivery(
        connection=connection,
        event="OrderCompleted",
        body={**(envelope or ENVELOPE), "subscribers": sub},
        email=sub["email"],
        idempotency_key=f"OrderCompleted:order:{n}",
    )


def no_cart_tag(connection) -> None:
    Connection.objects.filter(pk=connection.pk).update(remove_cart_tag=False)


@pytest.fixture
def conn(rule_connection):
    no_cart_tag(rule_connection)
    rule_connection.refresh_from_db()
    return rule_connection


def group_of(d: Delivery) -> tuple[int, str]:
    return d.connection_id, Delivery.objects.get(pk=d.pk).batch_key


# ---------------------------------------------------------------- one call for what is waiting


def test_waiting_deliveries_of_one_group_go_as_one_call_each_subscriber_with_its_own_data(conn, fake_rule):
    # given three orders of three shoppers waiting, one with a language and one with a phone number
    rows = [make(conn, 1, language="sv"), make(conn, 2, phone_number="+46701234567"), make(conn, 3)]
    assert len({group_of(d) for d in rows}) == 1

    # when the group is delivered
    outcomes = delivery.deliver_group(*group_of(rows[0]))

    # then Rule got one call with all three, automations forced per subscriber
    assert outcomes == {"succeeded": 3}
    [request] = fake_rule.requests
    body = request["json"]
    assert body["sync_subscribers"] is True and body["tags"] == ["OrderCompleted"] and body["automation"] == "reset"
    assert [s["email"] for s in body["subscribers"]] == ["s1@example.com", "s2@example.com", "s3@example.com"]
    assert fake_rule.subscriber("s1@example.com")["language"] == "sv"
    assert fake_rule.subscriber("s2@example.com")["phone_number"] == "+46701234567"
    assert fake_rule.subscriber("s3@example.com")["fields"]["Order.Number"]["value"] == "1003"
    assert len(fake_rule.automations_started) == 3
    # and each delivery has its own attempt naming the shared call
    attempts = list(DeliveryAttempt.objects.filter(delivery__in=rows))
    assert [(a.number, a.status_code, a.outcome, a.call_size) for a in attempts] == [(1, 200, "succeeded", 3)] * 3
    assert len({a.call_id for a in attempts}) == 1
    assert set(Delivery.objects.values_list("status", "attempt_count")) == {("succeeded", 1)}


def test_a_lone_delivery_goes_alone_with_its_own_body_unchanged(conn, fake_rule):
    d = make(conn, 1)
    assert delivery.deliver_group(*group_of(d)) == {"succeeded": 1}
    [request] = fake_rule.requests
    assert request["json"] == {**ENVELOPE, "subscribers": subscriber(1)}
    assert d.attempts.get().call_size == 1


def test_different_tags_or_automation_never_share_a_call(conn, fake_rule):
    a = make(conn, 1)
    b = make(conn, 2, envelope={**ENVELOPE, "tags": ["OrderShipped"]})
    c = make(conn, 3, envelope={**ENVELOPE, "automation": "force"})
    other = ConnectionFactory(rule_api_url=fake_rule.url, rule_api_key=fake_rule.api_key, remove_cart_tag=False)
    d = make(other, 4)
    assert len({group_of(x) for x in (a, b, c, d)}) == 4
    for x in (a, b, c, d):
        assert delivery.deliver_group(*group_of(x)) == {"succeeded": 1}
    assert [
        len(r["json"]["subscribers"]) if isinstance(r["json"]["subscribers"], list) else 1 for r in fake_rule.requests
    ] == [1, 1, 1, 1]


def test_a_backlog_goes_in_calls_of_at_most_100(conn, fake_rule):
    rows = [make(conn, n) for n in range(250)]
    assert delivery.deliver_group(*group_of(rows[0])) == {"succeeded": 250}
    assert [len(r["json"]["subscribers"]) for r in fake_rule.requests] == [100, 100, 50]
    assert Delivery.objects.filter(status="succeeded").count() == 250


def test_back_in_stock_batches_coalesce_within_rules_100(conn, fake_rule):
    # given three back-in-stock deliveries of one flow: 30, 60 and 30 watchers
    def alert(key: str, first: int, count: int) -> Delivery:
        body = {**ENVELOPE, "tags": ["ProductAlertTriggered"], "sync_subscribers": True}
        body["subscribers"] = [subscriber(n) for n in range(first, first + count)]
        return delivery.create_delivery(
            connection=conn, event="ProductAlertTriggered", body=body, email="", idempotency_key=key
        )

    rows = [alert("a", 0, 30), alert("b", 100, 60), alert("c", 200, 30)]
    assert len({group_of(d) for d in rows}) == 1

    assert delivery.deliver_group(*group_of(rows[0])) == {"succeeded": 3}

    # then they went in two calls (30 + 60, then 30), never more than 100 subscribers with sync_subscribers
    assert [len(r["json"]["subscribers"]) for r in fake_rule.requests] == [90, 30]
    assert fake_rule.subscriber("s229@example.com") is not None


def cart(connection, n: int) -> Delivery:
    """Shopper n's abandoned cart (OrderCreated), stored; not sent."""
    sub = subscriber(n)
    return delivery.create_delivery(
        connection=connection,
        event="OrderCreated",
        body={**ENVELOPE, "tags": ["OrderCreated"], "subscribers": sub},
        email=sub["email"],
        idempotency_key=f"OrderCreated:cart:{n}",
        dispatch=False,
    )


def test_the_cart_tag_removal_goes_alone_through_its_group(rule_connection, fake_rule, task_queue):
    # given four orders, two of them by shoppers whose carts this connection stored (shopper 3's in capitals)
    orders = [make(rule_connection, n) for n in range(4)]
    cart(rule_connection, 0)
    delivery.create_delivery(
        connection=rule_connection,
        event="OrderCreated",
        body={**ENVELOPE, "tags": ["OrderCreated"], "subscribers": {"email": "S3@Example.com"}},
        email="S3@Example.com",
        idempotency_key="OrderCreated:cart:3",
        dispatch=False,
    )

    # when the orders go as one call
    with TestCase.captureOnCommitCallbacks(execute=True), CaptureQueriesContext(db_connection) as queries:
        assert delivery.deliver_group(*group_of(orders[0])) == {"succeeded": 4}

    # then who had a cart was looked up once for the whole call, and only they get a removal
    assert len([q for q in queries if "OrderCreated" in q["sql"] and "LOWER" in q["sql"].upper()]) == 1
    removals = Delivery.objects.filter(event="RemoveCartTag")
    assert sorted(removals.values_list("email", flat=True)) == ["s0@example.com", "s3@example.com"]
    assert {r.batch_key for r in removals} == {delivery.SOLO}
    assert task_queue.pending() == [("integration.tasks.deliver_group", (rule_connection.pk, ""))]
    task_queue.drain()
    # one DELETE each (Rule has no batch for it); the carts were never sent: 404 counts as done
    assert [r["method"] for r in fake_rule.requests] == ["POST", "DELETE", "DELETE"]
    assert set(removals.values_list("status", flat=True)) == {"succeeded"}


# ---------------------------------------------------------------- failures, per delivery


def test_a_5xx_retries_the_whole_batch_on_the_schedule(conn, fake_rule):
    fake_rule.fail(503)
    rows = [make(conn, n) for n in range(5)]

    before = timezone.now()
    assert delivery.deliver_group(*group_of(rows[0])) == {"retry": 5}

    waiting = list(Delivery.objects.all())
    assert {(d.status, d.attempt_count) for d in waiting} == {("retrying", 1)}
    [when] = {d.next_attempt_at for d in waiting}  # one wait for the batch: it stays together
    assert before + timedelta(seconds=24) <= when <= timezone.now() + timedelta(seconds=36)
    assert all(d.last_error.startswith("attempt 1 of 8: 503") for d in waiting)
    assert delivery.deliver_group(*group_of(rows[0])) == {}  # not due yet

    Delivery.objects.update(next_attempt_at=timezone.now())
    assert delivery.deliver_group(*group_of(rows[0])) == {"succeeded": 5}
    assert [len(r["json"]["subscribers"]) for r in fake_rule.requests] == [5, 5]
    for d in rows:
        assert [(a.number, a.status_code, a.outcome) for a in d.attempts.all()] == [
            (1, 503, "retry"),
            (2, 200, "succeeded"),
        ]


def test_a_timeout_retries_the_whole_batch(conn, fake_rule, settings):
    settings.RULE_READ_TIMEOUT = 0.3
    fake_rule.set_latency(1000)
    rows = [make(conn, n) for n in range(3)]
    assert delivery.deliver_group(*group_of(rows[0])) == {"retry": 3}
    for d in rows:
        attempt = d.attempts.get()
        assert attempt.error.startswith("timeout") and delivery.MAY_HAVE_ARRIVED in attempt.note


def test_a_400_isolates_the_subscriber_rule_names_and_the_others_succeed(conn, fake_rule):
    # given eight orders, the sixth with a date Rule refuses
    rows = [make(conn, n) for n in range(8)]
    bad = Delivery.objects.get(pk=rows[5].pk)
    bad.request_body["subscribers"]["fields"].append({"key": "Order.Date", "value": "29/11", "type": "date"})
    bad.save()

    outcomes = delivery.deliver_group(*group_of(rows[0]))

    # then Rule saw the batch, then the culprit alone and the other seven together
    assert outcomes == {"succeeded": 7, "failed": 1}
    sizes = [
        len(r["json"]["subscribers"]) if isinstance(r["json"]["subscribers"], list) else 1 for r in fake_rule.requests
    ]
    assert sizes == [8, 1, 7]
    bad.refresh_from_db()
    assert bad.status == "failed" and bad.last_error.startswith("400 BadRequest: Value of Order.Date")
    for d in rows:
        d.refresh_from_db()
        attempts = list(d.attempts.all())
        assert attempts[0].outcome == "split" and attempts[0].counted is False and attempts[0].status_code == 400
        if d.pk != bad.pk:
            assert d.status == "succeeded" and attempts[1].outcome == "succeeded" and attempts[1].call_size == 7
            assert d.attempt_count == 1  # the refused batch is held against nobody's budget
    assert fake_rule.subscriber("s5@example.com") is None and fake_rule.subscriber("s7@example.com") is not None


def test_a_refusal_without_an_index_is_bisected_until_the_culprit_is_alone(conn, fake_rule):
    # given a flow that must not update existing subscribers, and one of six shoppers already in Rule
    envelope = {**ENVELOPE, "update_on_duplicate": False}
    rows = [make(conn, n, envelope=envelope) for n in range(6)]
    fake_rule.handle_api("POST", "/subscribers", {}, {**ENVELOPE, "subscribers": subscriber(4)})

    outcomes = delivery.deliver_group(*group_of(rows[0]))

    assert outcomes == {"succeeded": 5, "failed": 1}
    culprit = Delivery.objects.get(pk=rows[4].pk)
    assert culprit.status == "failed" and culprit.last_error == "409 Conflict: Subscriber already exists"
    assert culprit.attempts.last().call_size == 1
    # 6 -> 3 + 3 -> (3 ok) 1 + 2 -> (1 ok) 1 + 1: the culprit alone at the end
    assert len(fake_rule.requests) == 7
    assert Delivery.objects.filter(status="succeeded", attempt_count=1).count() == 5


def test_a_phone_number_rule_refuses_in_a_batch_is_dropped_for_that_subscriber_only(conn, fake_rule):
    rows = [make(conn, 1), make(conn, 2, phone_number="0701234567"), make(conn, 3)]
    assert delivery.deliver_group(*group_of(rows[0])) == {"succeeded": 3}
    # the batch, then the culprit alone (refused), then without its phone number; the others together
    last = fake_rule.requests[-2:]
    assert sorted(len(r["json"]["subscribers"]) if isinstance(r["json"]["subscribers"], list) else 1 for r in last) == [
        1,
        2,
    ]
    culprit = Delivery.objects.get(pk=rows[1].pk)
    assert "phone_number" not in culprit.request_body["subscribers"]
    assert culprit.attempts.last().note.startswith("Retried without phone_number")


def test_a_429_holds_the_connection_and_the_batch_waits_uncounted(conn, fake_rule):
    fake_rule.fail(429, retry_after="600")
    rows = [make(conn, n) for n in range(4)]
    assert delivery.deliver_group(*group_of(rows[0])) == {"rate_limited": 4}
    conn.refresh_from_db()
    assert conn.hold_until is not None
    assert {(d.status, d.attempt_count, d.next_attempt_at) for d in Delivery.objects.all()} == {
        ("retrying", 0, conn.hold_until)
    }
    assert set(DeliveryAttempt.objects.values_list("counted", flat=True)) == {False}
    assert delivery.sweep()["deliveries"] == 0


def test_a_401_pauses_the_connection_and_the_batch_waits(conn, fake_rule):
    Connection.objects.filter(pk=conn.pk).update(rule_api_key="revoked-key-123456")
    rows = [make(conn, n) for n in range(3)]
    assert delivery.deliver_group(*group_of(rows[0])) == {"paused": 3}
    assert {(d.status, d.attempt_count) for d in Delivery.objects.all()} == {("pending", 0)}
    assert delivery.deliver_group(*group_of(rows[0])) == {}  # a paused connection sends nothing
    assert len(fake_rule.requests) == 1


# ---------------------------------------------------------------- exactly once


def test_two_claims_of_one_group_take_disjoint_rows(conn, fake_rule):
    rows = [make(conn, n) for n in range(150)]
    group = {"connection_id": conn.pk, "batch_key": group_of(rows[0])[1]}
    first = delivery._claim(group, 100)
    second = delivery._claim(group, 100)
    assert len(first) == 100 and len(second) == 50
    assert not {d.pk for d in first} & {d.pk for d in second}
    assert delivery._claim(group, 100) == []


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_on_one_group_send_each_delivery_once(fake_rule):
    conn = ConnectionFactory(rule_api_url=fake_rule.url, rule_api_key=fake_rule.api_key, remove_cart_tag=False)
    fake_rule.set_latency(20)
    rows = [make(conn, n) for n in range(300)]
    group = group_of(rows[0])
    results, errors = [], []

    def work() -> None:
        try:
            results.append(delivery.deliver_group(*group))
        except Exception as exc:
            errors.append(exc)
        finally:
            db_connection.close()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)

    assert errors == []
    assert sum(r.get("succeeded", 0) for r in results) == 300
    sent = [s["email"] for r in fake_rule.requests for s in r["json"]["subscribers"]]
    assert len(sent) == 300 and len(set(sent)) == 300  # every subscriber once, none twice
    assert DeliveryAttempt.objects.count() == 300
    assert set(Delivery.objects.values_list("status", "attempt_count")) == {("succeeded", 1)}


def test_a_killed_workers_batch_is_marked_and_sent_again_once(conn, fake_rule):
    # given a worker that claimed a batch, wrote its attempts and died (maybe mid-call)
    rows = [make(conn, n) for n in range(4)]
    group = {"connection_id": conn.pk, "batch_key": group_of(rows[0])[1]}
    claimed, calls = delivery._take(group, 100, sendable_only=True)
    assert [len(c) for c in calls] == [4]
    assert delivery.deliver_group(*group_of(rows[0])) == {}  # its lease holds: nobody else sends them

    # when its lease runs out
    Delivery.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    assert delivery.deliver_group(*group_of(rows[0])) == {"succeeded": 4}

    # then the batch went once more, as one call, and each log says what happened to the first attempt
    assert len(fake_rule.requests) == 1
    for d in rows:
        first, second = d.attempts.all()
        assert (first.outcome, first.error) == ("retry", delivery.WORKER_STOPPED)
        assert (second.number, second.outcome) == (2, "succeeded")
        d.refresh_from_db()
        assert d.attempt_count == 2


def test_a_batch_whose_budget_a_dead_worker_spent_fails_without_a_call(conn, fake_rule):
    rows = [make(conn, n) for n in range(2)]
    Delivery.objects.update(
        status="sending", attempt_count=retry.MAX_ATTEMPTS, lease_until=timezone.now() - timedelta(seconds=1)
    )
    assert delivery.deliver_group(*group_of(rows[0])) == {"failed": 2}
    assert fake_rule.requests == []
    assert {d.last_error for d in Delivery.objects.all()} == {"gave up after 8 attempts"}


# ---------------------------------------------------------------- dispatch


def test_announce_queues_one_task_per_group(conn, task_queue):
    rows = [make(conn, n) for n in range(120)] + [make(conn, 500, envelope={**ENVELOPE, "tags": ["X"]})]
    task_queue.run_all()  # what create_delivery queued is not under test here
    delivery.announce([d.pk for d in rows])
    assert sorted(task_queue.pending()) == sorted(
        ("integration.tasks.deliver_group", group_of(d)) for d in (rows[0], rows[-1])
    )


def test_the_sweeper_queues_groups_not_ids(conn, task_queue, settings):
    rows = [make(conn, n) for n in range(250)]
    solo = delivery.create_delivery(
        connection=conn,
        event="RemoveCartTag",
        body=None,
        email="a@example.com",
        idempotency_key="r",
        method="DELETE",
        path="/subscribers/a%40example.com/tags/OrderCreated?identified_by=email",
    )
    task_queue.run_all()
    counts = delivery.sweep()
    assert counts["deliveries"] == 251
    workers = settings.Q_CLUSTER["workers"]
    assert sorted(task_queue.pending()) == sorted(
        [("integration.tasks.deliver_group", group_of(rows[0]))] * min(3, workers)
        + [("integration.tasks.deliver_group", (conn.pk, solo.batch_key))]
    )


@pytest.mark.django_db(transaction=True)
def test_inside_a_worker_task_new_deliveries_go_out_at_once_without_a_queue_hop(fake_rule, task_queue):
    conn = ConnectionFactory(rule_api_url=fake_rule.url, rule_api_key=fake_rule.api_key, remove_cart_tag=False)
    with delivery.inline_delivery():
        d = make(conn, 1)  # autocommit: committed and announced here, sent as the block ends
        assert Delivery.objects.get(pk=d.pk).status == "pending"
    assert Delivery.objects.get(pk=d.pk).status == "succeeded"
    assert len(fake_rule.requests) == 1 and task_queue.pending() == []
    # what one task creates goes together
    with delivery.inline_delivery():
        more = [make(conn, n) for n in (10, 11, 12)]
    assert {Delivery.objects.get(pk=x.pk).status for x in more} == {"succeeded"}
    assert len(fake_rule.requests) == 2 and len(fake_rule.requests[-1]["json"]["subscribers"]) == 3
    # outside a worker task it is queued
    d2 = make(conn, 2)
    assert Delivery.objects.get(pk=d2.pk).status == "pending" and len(fake_rule.requests) == 2
    assert task_queue.pending() == [("integration.tasks.deliver_group", group_of(d2))]


def test_the_attempt_log_says_the_call_was_shared(conn, fake_rule, admin_client):
    from django.urls import reverse

    rows = [make(conn, n) for n in range(3)]
    delivery.deliver_group(*group_of(rows[0]))
    page = admin_client.get(reverse("admin:integration_delivery_change", args=[rows[1].pk])).content.decode()
    assert "sent in one call with 2 others" in page


def _stored(client, connection, event_type: str, numbers) -> None:
    """One request to the door with these events (each about its own reader): one processing task queued."""
    from integration.mapping import samples
    from tests.fixtures.common import post_signed_events

    events = []
    for n in numbers:
        payload = samples.sample(event_type)
        if event_type == "Newsletter":
            payload["email"] = f"reader{n}@example.com"
        else:
            payload["customer"] = {**payload["customer"], "email": f"reader{n}@example.com", "id": n}
        events.append({"id": f"backlog-{n}", "type": event_type, "occurredAt": "2026-11-29T12:00:00Z", **payload})
    response = post_signed_events(client, connection, {"events": events})
    assert response.status_code == 200, response.json()


@pytest.mark.django_db(transaction=True)
def test_a_backlog_of_stored_events_fills_calls_up_to_100_and_leaves_nothing_behind(client, fake_rule, task_queue):
    # Given three requests' events waiting for processing on one connection: 60 + 60 newsletter sign-ups (one
    # group), then 30 registrations (another group), one processing task each
    conn = ConnectionFactory(rule_api_url=fake_rule.url, rule_api_key=fake_rule.api_key, remove_cart_tag=False)
    conn.flows.filter(event__in=["Newsletter", "CustomerRegistered"]).update(enabled=True)
    _stored(client, conn, "Newsletter", range(60))
    _stored(client, conn, "Newsletter", range(60, 120))
    _stored(client, conn, "CustomerRegistered", range(120, 150))
    assert [func for func, _ in task_queue.pending()] == ["integration.tasks.process_inbound_batch"] * 3

    # When a worker runs the tasks in turn (each sends its deliveries as it ends)
    task_queue.run_all()

    # Then while more events were waiting only full calls went; the last task sent what was left of both
    # groups; every subscriber reached Rule once, and nothing was left for the queue or the sweeper
    posts = [r for r in fake_rule.requests if r["method"] == "POST"]
    assert [len(r["json"]["subscribers"]) for r in posts[:1]] == [100]
    assert sorted(len(r["json"]["subscribers"]) for r in posts[1:]) == [20, 30]
    emails = [s["email"] for r in posts for s in r["json"]["subscribers"]]
    assert sorted(emails) == sorted(f"reader{n}@example.com" for n in range(150))
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    assert Delivery.objects.count() == 150
    assert task_queue.pending() == []


@pytest.mark.django_db(transaction=True)
def test_the_last_task_of_a_backlog_sends_what_waited_even_when_its_own_events_make_no_delivery(
    client, fake_rule, task_queue
):
    # Given 60 sign-ups waiting, then a request whose events are ignored (their flow is off)
    conn = ConnectionFactory(rule_api_url=fake_rule.url, rule_api_key=fake_rule.api_key, remove_cart_tag=False)
    conn.flows.filter(event="Newsletter").update(enabled=True)
    conn.flows.filter(event="CustomerRegistered").update(enabled=False)
    _stored(client, conn, "Newsletter", range(60))
    _stored(client, conn, "CustomerRegistered", range(60, 70))

    # When a worker runs both tasks
    task_queue.run_all()

    # Then the first left its 60 waiting for company, and the second, finding nothing more, sent them in one call
    posts = [r for r in fake_rule.requests if r["method"] == "POST"]
    assert [len(r["json"]["subscribers"]) for r in posts] == [60]
    assert set(Delivery.objects.values_list("status", flat=True)) == {"succeeded"}
    assert task_queue.pending() == []
