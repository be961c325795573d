"""Exactly once per restock: a worker dying mid-way, and two checks of one item at the same moment."""

import os
import threading

import pytest
from django.db import connections

import integration.delivery.engine
from backinstock.alerts import claim, run_restock
from backinstock.models import ItemStock, Restock, Watcher
from backinstock.stock import record_stock
from integration.models import Delivery
from tests.backinstock.helpers import alerted_emails, make_watchers

pytestmark = pytest.mark.django_db(transaction=True)

ITEM = "12366-23400"


class WorkerDied(Exception):
    """Stands in for a worker killed after its first batch committed."""


def test_a_worker_that_dies_after_the_first_batch_never_alerts_that_batch_again(
    rule_connection, fake_rule, task_queue, monkeypatch
):
    # given 250 watchers and stock for all of them
    watchers = make_watchers(rule_connection, ITEM, 250)
    restock = record_stock(rule_connection, ITEM, 50, source=ItemStock.Source.EVENT)
    # and a worker that dies while storing its second batch
    real_create = integration.delivery.engine.create_delivery
    calls = []

    def dying_create(**kwargs):
        calls.append(kwargs["idempotency_key"])
        if len(calls) == 2:
            raise WorkerDied
        return real_create(**kwargs)

    monkeypatch.setattr(integration.delivery.engine, "create_delivery", dying_create)

    # when it runs
    with pytest.raises(WorkerDied):
        run_restock(restock.pk)
    task_queue.drain()

    # then the first batch is complete on both sides (alerted and sent), the second left no trace
    assert Watcher.objects.filter(status="alerted").count() == 100
    assert Delivery.objects.filter(event="ProductAlertTriggered").count() == 1
    assert alerted_emails(fake_rule) == [w.email for w in watchers[:100]]
    restock.refresh_from_db()
    assert (restock.status, restock.alerted, restock.batches) == ("open", 100, 1)

    # when a healthy worker runs the same restock again
    monkeypatch.setattr(integration.delivery.engine, "create_delivery", real_create)
    assert run_restock(restock.pk) == 150
    task_queue.drain()

    # then everyone has been alerted exactly once, in age order
    emails = alerted_emails(fake_rule)
    assert emails == [w.email for w in watchers]
    assert len(set(emails)) == 250
    # and a third run finds nothing to do
    assert run_restock(restock.pk) == 0


def test_a_claim_never_takes_a_watcher_another_batch_already_took(rule_connection):
    # given worker A read five candidates, then worker B claimed them first for its own batch
    watchers = make_watchers(rule_connection, ITEM, 5)
    ids = [w.pk for w in watchers]
    first = Restock.objects.create(
        connection=rule_connection, item=ITEM, stock_seen=10, allowed=200, source="poll", status="done"
    )
    second = Restock.objects.create(connection=rule_connection, item=ITEM, stock_seen=10, allowed=200, source="poll")
    assert claim(first, 1, ids) == 5
    # when A claims the same candidates (a conditional UPDATE, the SQLite path)
    taken = claim(second, 1, ids)
    # then A gets none of them and every watcher still belongs to B's batch
    assert taken == 0
    assert set(Watcher.objects.values_list("restock_id", "batch")) == {(first.pk, 1)}


def _run_concurrently(target, count: int = 2) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            target()
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return errors


def test_two_checks_of_one_item_at_once_share_one_allowance(rule_connection, fake_rule, task_queue):
    # given 600 watchers, minimum 10 and 20 alerts per unit: stock 20 allows 400
    watchers = make_watchers(rule_connection, ITEM, 600)

    # when two workers see stock 20 at the same moment and both alert
    def check() -> None:
        restock = record_stock(rule_connection, ITEM, 20, source=ItemStock.Source.POLL)
        if restock:
            run_restock(restock.pk, batch_size=50)

    errors = _run_concurrently(check)
    task_queue.drain()

    # then exactly the 400 oldest were alerted, each once, under one restock
    assert errors == []
    emails = alerted_emails(fake_rule)
    assert len(emails) == 400
    assert sorted(emails) == sorted(w.email for w in watchers[:400])
    assert Watcher.objects.filter(status="alerted").count() == 400
    assert Restock.objects.count() == 1


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="row locks with SKIP LOCKED need PostgreSQL (set DATABASE_URL)",
)
def test_four_workers_on_one_restock_alert_everyone_exactly_once(rule_connection, fake_rule, task_queue):
    # given an open restock allowing 1000 alerts for 1000 watchers
    make_watchers(rule_connection, ITEM, 1000)
    restock = record_stock(rule_connection, ITEM, 50, source=ItemStock.Source.POLL)

    # when four workers run it at once, in small batches
    errors = _run_concurrently(lambda: run_restock(restock.pk, batch_size=25), count=4)
    task_queue.drain()

    # then every watcher is alerted exactly once and the batches are numbered without gaps
    assert errors == []
    emails = alerted_emails(fake_rule)
    assert len(emails) == len(set(emails)) == 1000
    keys = set(Delivery.objects.filter(event="ProductAlertTriggered").values_list("idempotency_key", flat=True))
    assert keys == {f"ProductAlertTriggered:restock:{restock.pk}:batch:{n}" for n in range(1, 41)}
