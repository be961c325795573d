"""The sweeper: what a lost task or a crashed worker leaves behind is picked up, and its Schedule exists once."""

import os
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_q.models import Schedule

from integration.delivery import engine as delivery
from integration.models import Connection, Delivery
from integration.ops.schedules import SWEEP_NAME, ensure_sweep_schedule
from integration.processing import dispatch
from tests.factories import ConnectionFactory, DeliveryAttemptFactory, DeliveryFactory, InboundEventFactory

ROOT = Path(__file__).resolve().parent.parent


def new_delivery(connection, key: str = "OrderCompleted:order:1") -> Delivery:
    return delivery.create_delivery(
        connection=connection,
        event="OrderCompleted",
        body={"update_on_duplicate": True, "tags": ["OrderCompleted"], "subscribers": {"email": "anna@example.com"}},
        email="anna@example.com",
        idempotency_key=key,
    )


def test_a_delivery_whose_task_never_ran_is_sent_by_the_sweeper(rule_connection, fake_rule, task_queue):
    # given a delivery stored while the broker lost its task (on_commit never ran inside the test transaction)
    d = new_delivery(rule_connection)
    assert task_queue.pending() == []

    # when the sweeper runs and the worker runs what it enqueued
    counts = delivery.sweep()
    task_queue.run_all()

    # then Rule received it once and the delivery succeeded
    assert counts["deliveries"] == 1
    d.refresh_from_db()
    assert d.status == Delivery.Status.SUCCEEDED
    assert [r["path"] for r in fake_rule.requests] == ["/api/v2/subscribers"]


def test_the_sweeper_skips_what_is_not_due_and_connections_that_must_wait(rule_connection, task_queue):
    later = new_delivery(rule_connection, "a")
    Delivery.objects.filter(pk=later.pk).update(
        status=Delivery.Status.RETRYING, next_attempt_at=timezone.now() + timedelta(minutes=5)
    )
    done = new_delivery(rule_connection, "b")
    Delivery.objects.filter(pk=done.pk).update(status=Delivery.Status.SUCCEEDED)
    due = new_delivery(rule_connection, "c")

    assert delivery.sweep() == {"deliveries": 1, "inbound_events": 0}
    due.refresh_from_db()
    assert task_queue.pending() == [("integration.tasks.deliver_group", (rule_connection.pk, due.batch_key))]

    Connection.objects.filter(pk=rule_connection.pk).update(hold_until=timezone.now() + timedelta(minutes=2))
    assert delivery.sweep()["deliveries"] == 0
    Connection.objects.filter(pk=rule_connection.pk).update(hold_until=None, status=Connection.Status.PAUSED)
    assert delivery.sweep()["deliveries"] == 0


def test_a_delivery_stuck_in_sending_past_its_lease_is_sent_again(rule_connection, fake_rule, task_queue):
    # given a worker that claimed the delivery, wrote its attempt row and died before the answer
    d = DeliveryFactory(connection=rule_connection, abandoned=True, attempt_count=1)
    DeliveryAttemptFactory(delivery=d, number=1, unanswered=True)

    # when the sweeper runs
    assert delivery.sweep()["deliveries"] == 1
    task_queue.run_all()

    # then it is sent, and the log tells what happened to the lost attempt
    d.refresh_from_db()
    assert d.status == Delivery.Status.SUCCEEDED
    first, second = d.attempts.order_by("number")
    assert first.outcome == "retry" and "worker stopped" in first.error
    assert (second.number, second.status_code) == (2, 200)
    assert d.attempt_count == 2


def test_a_delivery_still_inside_its_lease_is_left_to_its_worker(rule_connection, task_queue):
    d = DeliveryFactory(connection=rule_connection, in_flight=True)
    assert delivery.sweep()["deliveries"] == 0
    assert delivery.deliver(d.pk) == "not due"


def test_inbound_events_stuck_in_received_for_over_a_minute_are_processed_again(connection, task_queue):
    stuck = InboundEventFactory(connection=connection, received_at=timezone.now() - timedelta(seconds=90))
    InboundEventFactory(connection=connection)  # just arrived: its own task is on its way
    InboundEventFactory(connection=connection, status="processed", received_at=timezone.now() - timedelta(hours=1))

    counts = delivery.sweep()

    assert counts == {"deliveries": 0, "inbound_events": 1}
    assert task_queue.pending() == [("integration.tasks.process_inbound_batch", ([stuck.pk],))]


def test_one_sweep_enqueues_everything_due_reading_it_page_by_page(rule_connection, task_queue, monkeypatch):
    # given a backlog larger than one page (a flushed broker: nothing of it is queued)
    monkeypatch.setattr(delivery, "SWEEP_PAGE", 3)
    monkeypatch.setattr(dispatch, "SWEEP_TASK_SIZE", 3)
    due = [new_delivery(rule_connection, f"k{n}").pk for n in range(7)]
    stuck = [
        InboundEventFactory(connection=rule_connection, received_at=timezone.now() - timedelta(minutes=5)).pk
        for _ in range(4)
    ]

    # when one sweep runs, then every due row is enqueued once (the deliveries, one group, in one task)
    assert delivery.sweep() == {"deliveries": 7, "inbound_events": 4}
    pending = task_queue.pending()
    group = (rule_connection.pk, Delivery.objects.get(pk=due[0]).batch_key)
    assert [args for name, args in pending if name == "integration.tasks.deliver_group"] == [group]
    # the due inbound events go as lists, one task per SWEEP_TASK_SIZE of them
    assert [args[0] for name, args in pending if name == "integration.tasks.process_inbound_batch"] == [
        stuck[:3],
        stuck[3:],
    ]


def test_inbound_events_waiting_for_a_retry_or_held_by_a_worker_are_left_alone(connection, task_queue):
    old = timezone.now() - timedelta(minutes=5)
    InboundEventFactory(connection=connection, received_at=old, next_attempt_at=timezone.now() + timedelta(minutes=2))
    InboundEventFactory(connection=connection, received_at=old, lease_until=timezone.now() + timedelta(seconds=60))
    due = InboundEventFactory(
        connection=connection, received_at=old, next_attempt_at=timezone.now() - timedelta(seconds=1)
    )
    assert delivery.sweep() == {"deliveries": 0, "inbound_events": 1}
    assert task_queue.pending() == [("integration.tasks.process_inbound_batch", ([due.pk],))]


def test_the_migrated_database_has_one_sweep_schedule_every_minute(db):
    schedule = Schedule.objects.get(name=SWEEP_NAME)
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "integration.tasks.sweep",
        Schedule.MINUTES,
        1,
        -1,
    )
    assert ensure_sweep_schedule(Schedule) is False
    assert Schedule.objects.filter(name=SWEEP_NAME).count() == 1


def test_running_migrate_again_creates_no_second_schedule(tmp_path):
    # given a fresh database migrated by the real command, then migrated back and forth and again
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}"}

    def manage(*args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args, "--skip-checks"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )

    manage("migrate")
    manage("migrate")
    manage("migrate", "integration", "0002")
    manage("migrate")

    # then exactly one sweeper schedule exists
    with sqlite3.connect(tmp_path / "fresh.sqlite3") as db:
        rows = db.execute("select func, minutes from django_q_schedule where name = ?", (SWEEP_NAME,)).fetchall()
    assert rows == [("integration.tasks.sweep", 1)]


@pytest.mark.parametrize("status", ["pending", "retrying"])
def test_deliver_does_nothing_before_the_delivery_is_due(rule_connection, fake_rule, status):
    d = new_delivery(rule_connection)
    Delivery.objects.filter(pk=d.pk).update(status=status, next_attempt_at=timezone.now() + timedelta(minutes=1))
    assert delivery.deliver(d.pk) == "not due"
    assert fake_rule.requests == []


def test_healthz_reports_exactly_the_backlog_the_sweeper_sends(client, db, task_queue):
    # Given deliveries in every state, on a connection that may send, a paused one and one held by a 429
    active = ConnectionFactory()
    paused = ConnectionFactory(status=Connection.Status.PAUSED)
    held = ConnectionFactory(hold_until=timezone.now() + timedelta(minutes=5))
    due = [
        DeliveryFactory(connection=active),
        DeliveryFactory(connection=active, next_attempt_at=None),
        DeliveryFactory(connection=active, retrying_due=True),
        DeliveryFactory(connection=active, abandoned=True),
    ]
    for connection in (active, paused, held):
        DeliveryFactory(connection=connection, due_later=True)
        DeliveryFactory(connection=connection, in_flight=True)
        DeliveryFactory(connection=connection, succeeded=True)
        DeliveryFactory(connection=connection, failed=True)
    for connection in (paused, held):
        DeliveryFactory(connection=connection)

    # When /healthz is asked and the sweeper runs
    reported = client.get("/healthz").json()["due_backlog"]
    counts = delivery.sweep()

    # Then both name the same deliveries: those due, of the connection that may send
    groups = {args for func, args in task_queue.pending() if func == "integration.tasks.deliver_group"}
    assert groups == {(active.pk, d.batch_key) for d in due}
    assert reported == counts["deliveries"] == len(due)
