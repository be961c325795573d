"""Stock back: a Restock alerts the oldest waiting watchers, at most stock x alerts per unit, in batches of 100."""

from datetime import timedelta

import pytest
from django.utils import timezone

from backinstock.models import ItemStock, Restock, Watcher
from backinstock.stock import record_stock
from backinstock.watchers import expire_watchers
from integration.models import Delivery
from tests.backinstock.helpers import (
    alert_requests,
    alerted_emails,
    bis_settings,
    fields_of,
    make_watchers,
)

pytestmark = pytest.mark.django_db(transaction=True)

ITEM = "12366-23400"


def restock(connection, available: int, task_queue, item: str = ITEM) -> Restock | None:
    """Stock seen through a StockUpdate-style record, then every queued alert and delivery run."""
    found = record_stock(connection, item, available, source=ItemStock.Source.EVENT)
    if found:
        from backinstock.alerts import run_restock

        run_restock(found.pk)
    task_queue.drain()
    return found


def test_stock_below_the_minimum_alerts_nobody(rule_connection, fake_rule, task_queue):
    # given 5 waiting watchers and a minimum of 10
    make_watchers(rule_connection, ITEM, 5)
    # when stock 9 is seen
    assert restock(rule_connection, 9, task_queue) is None
    # then nobody is alerted and Rule heard nothing
    assert Watcher.objects.filter(status="waiting").count() == 5
    assert alert_requests(fake_rule) == []


def test_the_oldest_watchers_are_alerted_up_to_stock_times_alerts_per_unit(rule_connection, fake_rule, task_queue):
    # given 30 watchers, minimum stock 2, 3 alerts per unit
    bis_settings(rule_connection, min_stock=2, alerts_per_unit=3)
    watchers = make_watchers(rule_connection, ITEM, 30)
    # when stock 4 comes back
    found = restock(rule_connection, 4, task_queue)

    # then exactly 4 x 3 = 12 watchers are alerted: the 12 oldest, in age order
    oldest = [w.email for w in watchers[:12]]
    assert alerted_emails(fake_rule) == oldest
    assert sorted(Watcher.objects.filter(status="alerted").values_list("email", flat=True)) == oldest
    assert Watcher.objects.filter(status="waiting").count() == 18
    found.refresh_from_db()
    assert (found.stock_seen, found.allowed, found.alerted, found.status) == (4, 12, 12, "done")


def test_batches_hold_at_most_100_subscribers_each_with_its_own_language(rule_connection, fake_rule, task_queue):
    # given 250 watchers, 120 of them Finnish
    make_watchers(rule_connection, ITEM, 130, prefix="sv", language="sv")
    make_watchers(rule_connection, ITEM, 120, prefix="fi", language="fi", days_ago=10)
    # when plenty of stock comes back
    restock(rule_connection, 50, task_queue)

    # then Rule got 100 + 100 + 50 subscribers, each batch synced, each subscriber in their language
    bodies = alert_requests(fake_rule)
    assert [len(b["subscribers"]) for b in bodies] == [100, 100, 50]
    assert all(b["sync_subscribers"] is True for b in bodies)
    languages = {s["email"]: s["language"] for b in bodies for s in b["subscribers"]}
    assert len(languages) == 250
    assert {lang for email, lang in languages.items() if email.startswith("fi")} == {"fi"}
    assert {lang for email, lang in languages.items() if email.startswith("sv")} == {"sv"}
    assert fields_of(bodies[0]["subscribers"][0])["ProductAlert.DisplayName"] == "Wool Coat"
    # and each batch is one delivery keyed by restock and batch number
    restock_id = Restock.objects.get().pk
    keys = sorted(Delivery.objects.filter(event="ProductAlertTriggered").values_list("idempotency_key", flat=True))
    assert keys == [f"ProductAlertTriggered:restock:{restock_id}:batch:{n}" for n in (1, 2, 3)]


def test_stock_that_stays_up_does_not_alert_another_share(rule_connection, fake_rule, task_queue):
    # given 40 watchers, 1 alert per unit, minimum 10
    bis_settings(rule_connection, alerts_per_unit=1)
    watchers = make_watchers(rule_connection, ITEM, 40)
    restock(rule_connection, 10, task_queue)
    # when the same stock is seen again (the next poll)
    again = restock(rule_connection, 12, task_queue)
    # then no new restock: still the 10 oldest alerted
    assert again is None
    assert alerted_emails(fake_rule) == [w.email for w in watchers[:10]]

    # when stock drops below the minimum and comes back
    restock(rule_connection, 0, task_queue)
    restock(rule_connection, 10, task_queue)
    # then the next 10 oldest are alerted, nobody twice
    assert alerted_emails(fake_rule) == [w.email for w in watchers[:20]]
    assert Restock.objects.count() == 2


def test_unsubscribed_and_expired_watchers_are_never_alerted(rule_connection, fake_rule, task_queue):
    # given three watchers: one unsubscribed, one past the expiry
    first, second, third = make_watchers(rule_connection, ITEM, 3)
    Watcher.objects.filter(pk=first.pk).update(status=Watcher.Status.UNSUBSCRIBED)
    Watcher.objects.filter(pk=second.pk).update(created_at=timezone.now() - timedelta(days=400))
    assert expire_watchers(rule_connection) == 1
    # when stock comes back
    restock(rule_connection, 20, task_queue)
    # then only the third is alerted
    assert alerted_emails(fake_rule) == [third.email]
    assert Watcher.objects.get(pk=second.pk).status == "expired"


def test_expiry_drops_only_watchers_older_than_the_connection_setting(rule_connection):
    # given a 30-day expiry, watchers 31 and 29 days old
    bis_settings(rule_connection, expiry_days=30)
    [old] = make_watchers(rule_connection, ITEM, 1, prefix="old", days_ago=31)
    [young] = make_watchers(rule_connection, ITEM, 1, prefix="young", days_ago=29)
    # when expiry runs
    expired = expire_watchers(rule_connection)
    # then only the old one expired
    assert expired == 1
    assert Watcher.objects.get(pk=old.pk).status == "expired"
    assert Watcher.objects.get(pk=young.pk).status == "waiting"


def test_a_switched_off_flow_alerts_nobody_and_keeps_them_waiting(rule_connection, fake_rule, task_queue):
    # given the ProductAlertTriggered flow is off
    rule_connection.flows.filter(event="ProductAlertTriggered").update(enabled=False)
    make_watchers(rule_connection, ITEM, 5)
    # when stock comes back
    found = restock(rule_connection, 20, task_queue)
    # then the restock is skipped and the watchers still wait
    found.refresh_from_db()
    assert found.status == "skipped"
    assert Watcher.objects.filter(status="waiting").count() == 5
    assert alert_requests(fake_rule) == []


def test_a_watcher_rule_could_never_accept_is_set_aside_not_counted(rule_connection, fake_rule, task_queue):
    # given the oldest watcher has an email Rule would refuse, 1 unit x 2 alerts allowed
    bis_settings(rule_connection, min_stock=1, alerts_per_unit=2)
    bad, good1, good2, good3 = make_watchers(rule_connection, ITEM, 4)
    Watcher.objects.filter(pk=bad.pk).update(email="not-an-email")
    # when one unit comes back
    restock(rule_connection, 1, task_queue)
    # then the two oldest sendable watchers are alerted and the bad one is marked failed with a reason
    assert alerted_emails(fake_rule) == [good1.email, good2.email]
    bad.refresh_from_db()
    assert bad.status == "failed" and bad.note
    assert Watcher.objects.get(pk=good3.pk).status == "waiting"
