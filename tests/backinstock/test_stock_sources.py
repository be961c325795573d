"""The three ways stock reaches us: the scheduled Centra poll, catalogue webhooks, and StockUpdate events."""

from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone
from django.utils.module_loading import import_string

from backinstock.models import BackInStockSettings, ItemStock, Restock, StockPoll, Watcher
from backinstock.tasks import poll_stock
from integration.models import InboundEvent
from tests.backinstock.helpers import alerted_emails, make_watchers, process

pytestmark = pytest.mark.django_db(transaction=True)


def stock_queries(fake_centra) -> list[list[int]]:
    """The size ids of every stock query Centra received."""
    return [q["variables"]["ids"] for q in fake_centra.queries if "StockForSizes" in q["query"]]


def test_the_poll_asks_centra_for_watched_items_only_and_alerts_the_restocked(
    centra_connection, fake_centra, fake_rule, task_queue
):
    # given watchers of two sizes, Centra holding stock for those and an unwatched one
    coats = make_watchers(centra_connection, "12366-23400", 3, prefix="coat")
    make_watchers(centra_connection, "12366-23401", 2, prefix="scarf")
    fake_centra.set_stock(23400, 25)
    fake_centra.set_stock(23401, 0)
    fake_centra.set_stock(99999, 500)

    # when the every-minute schedule runs
    result = poll_stock()
    task_queue.drain()

    # then Centra was asked for the two watched sizes, and only the restocked size's watchers were alerted
    assert result["polled"] == 1
    assert stock_queries(fake_centra) == [[23400, 23401]]
    assert sorted(alerted_emails(fake_rule)) == sorted(w.email for w in coats)
    assert dict(ItemStock.objects.values_list("item", "available")) == {"12366-23400": 25, "12366-23401": 0}
    assert Watcher.objects.filter(item="12366-23401", status="waiting").count() == 2


def test_the_poll_waits_for_the_connection_interval_and_asks_in_batches_of_100(centra_connection, fake_centra):
    # given 150 watched sizes
    for size in range(150):
        make_watchers(centra_connection, f"500-{1000 + size}", 1, prefix=f"s{size}-")
    # when the schedule runs twice in a row
    poll_stock()
    second = poll_stock()
    # then Centra was polled once, in two queries of at most 100 sizes
    assert [len(ids) for ids in stock_queries(fake_centra)] == [100, 50]
    assert second["polled"] == 0
    assert StockPoll.objects.get().items_checked == 150

    # when the interval has passed
    interval = timedelta(minutes=BackInStockSettings.of(centra_connection).poll_minutes)
    StockPoll.objects.update(last_polled_at=timezone.now() - interval)
    assert poll_stock()["polled"] == 1
    assert len(stock_queries(fake_centra)) == 4


def test_the_poll_expires_old_watchers_and_records_centra_errors(centra_connection, fake_centra):
    # given an old watcher and a young one, and Centra refusing the token
    [old] = make_watchers(centra_connection, "12366-23400", 1, prefix="old", days_ago=400)
    [young] = make_watchers(centra_connection, "12366-23400", 1, prefix="young", days_ago=1)
    fake_centra.fail("expired_token", times=None)
    # when the poll runs
    poll_stock()
    # then the old watcher expired, the young one waits, and the error is kept for the admin
    assert Watcher.objects.get(pk=old.pk).status == "expired"
    assert Watcher.objects.get(pk=young.pk).status == "waiting"
    assert "expired" in StockPoll.objects.get().last_error


def test_a_display_items_webhook_checks_that_display_items_watched_sizes_now(
    centra_connection, fake_centra, fake_rule, task_queue
):
    # given watchers of display item 12366 (two sizes) and of 1236 (a prefix that must not match)
    make_watchers(centra_connection, "12366-23400", 2, prefix="a")
    make_watchers(centra_connection, "12366-23401", 2, prefix="b")
    make_watchers(centra_connection, "1236-777", 2, prefix="c")
    fake_centra.set_stock(23400, 30)
    fake_centra.set_stock(23401, 30)
    fake_centra.set_stock(777, 30)

    # when Centra says display item 12366 changed
    event = process(
        centra_connection, "DisplayItems", {"key": "DisplayItems", "ids": ["12366"]}, source=InboundEvent.Source.WEBHOOK
    )
    task_queue.drain()

    # then only its two sizes were checked and their watchers alerted
    assert event.status == InboundEvent.Status.PROCESSED
    assert stock_queries(fake_centra) == [[23400, 23401]]
    assert sorted(alerted_emails(fake_rule)) == [
        "a00000@example.com",
        "a00001@example.com",
        "b00000@example.com",
        "b00001@example.com",
    ]


def test_a_products_webhook_for_an_unwatched_item_is_ignored(centra_connection, fake_centra):
    make_watchers(centra_connection, "12366-23400", 1)
    event = process(
        centra_connection, "Products", {"key": "Products", "ids": [4242]}, source=InboundEvent.Source.WEBHOOK
    )
    assert event.status == InboundEvent.Status.IGNORED
    assert stock_queries(fake_centra) == []


def test_a_catalogue_webhook_while_centra_is_down_stays_received_for_a_retry(centra_connection, fake_centra):
    make_watchers(centra_connection, "12366-23400", 1)
    fake_centra.fail("server_error", times=None)
    event = process(
        centra_connection, "DisplayItems", {"key": "DisplayItems", "ids": [12366]}, source=InboundEvent.Source.WEBHOOK
    )
    assert event.status == InboundEvent.Status.RECEIVED
    assert "500" in event.error


def test_a_stock_update_event_sets_availability_directly(rule_connection, fake_rule, task_queue):
    # given watchers of two sizes
    coats = make_watchers(rule_connection, "12366-23400", 2, prefix="coat")
    make_watchers(rule_connection, "12366-23401", 2, prefix="scarf")
    # when the shop pushes availability
    event = process(
        rule_connection,
        "StockUpdate",
        {
            "items": [
                {"item": "12366-23400", "sku": "WC-100-M", "available": 11},
                {"item": "12366-23401", "sku": "WC-100-L", "available": 3},
            ]
        },
    )
    task_queue.drain()
    # then it is stored as given and the size at the minimum or above is alerted
    assert event.status == InboundEvent.Status.PROCESSED
    stock = {s.item: (s.available, s.sku, s.source) for s in ItemStock.objects.all()}
    assert stock == {"12366-23400": (11, "WC-100-M", "event"), "12366-23401": (3, "WC-100-L", "event")}
    assert sorted(alerted_emails(fake_rule)) == sorted(w.email for w in coats)


def test_a_stock_update_with_a_bad_quantity_fails_with_the_reason(rule_connection):
    event = process(rule_connection, "StockUpdate", {"items": [{"item": "12366-23400", "available": "lots"}]})
    assert event.status == InboundEvent.Status.FAILED
    assert "available" in event.error
    assert not ItemStock.objects.exists()


def test_the_poll_schedule_is_created_once_and_points_at_a_real_task(db):
    # when the data migration's function runs twice
    migration = import_string("backinstock.migrations.0002_poll_schedule.create_schedule")
    migration(apps, None)
    migration(apps, None)
    # then there is one every-minute schedule whose function exists
    schedule_model = apps.get_model("django_q", "Schedule")
    [schedule] = schedule_model.objects.filter(name="bridge: back-in-stock poll")
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 1, -1)
    assert import_string(schedule.func) is poll_stock


def test_a_stalled_restock_is_resumed_by_the_poll(rule_connection, fake_rule, task_queue):
    # given an open restock whose worker died before any batch (no progress for 5 minutes)
    make_watchers(rule_connection, "12366-23400", 3)
    stalled = Restock.objects.create(
        connection=rule_connection, item="12366-23400", stock_seen=10, allowed=200, source="poll"
    )
    Restock.objects.filter(pk=stalled.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    # when the schedule runs
    assert poll_stock()["resumed"] == 1
    task_queue.drain()
    # then its watchers are alerted
    assert len(alerted_emails(fake_rule)) == 3
    assert Restock.objects.get().status == "done"
