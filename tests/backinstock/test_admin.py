"""The merchant's back-in-stock admin: filters with waiting counts, Check stock now, Alert now, Remove."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from backinstock.models import ItemStock, Restock, Watcher
from tests.backinstock.helpers import alerted_emails, bis_settings, make_watchers

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:backinstock_watcher_changelist"


@pytest.fixture
def merchant(client):
    user = get_user_model().objects.create_superuser("merchant", "merchant@example.com", "pw-123456789")
    client.force_login(user)
    return client


def run_action(client, action: str, watchers) -> str:
    response = client.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [w.pk for w in watchers]}, follow=True
    )
    assert response.status_code == 200
    return " ".join(str(m) for m in response.context["messages"])


def test_the_watcher_list_filters_by_item_and_shows_waiting_counts(merchant, rule_connection):
    # given 3 shoppers waiting for one size and 1 for another
    make_watchers(rule_connection, "12366-23400", 3, prefix="coat")
    make_watchers(rule_connection, "12366-23401", 1, prefix="scarf")
    # when the merchant opens the list filtered by the first item
    page = merchant.get(reverse(CHANGELIST), {"item": "12366-23400"}).content.decode()
    # then the filter shows the waiting counts and the list only that item's watchers
    assert "12366-23400 (3 waiting)" in page
    assert "12366-23401 (1 waiting)" in page
    assert "coat00002@example.com" in page
    assert "scarf00000@example.com" not in page


def test_check_stock_now_asks_centra_and_alerts(merchant, centra_connection, fake_centra, fake_rule, task_queue):
    # given watchers of a size that Centra now has in stock
    watchers = make_watchers(centra_connection, "12366-23400", 3)
    fake_centra.set_stock(23400, 15)
    # when the merchant runs "Check stock now" on one of them
    message = run_action(merchant, "check_stock_now", watchers[:1])
    task_queue.drain()
    # then the stock is recorded and all three watchers of that size are alerted
    assert "3 watchers alerted" in message
    assert ItemStock.objects.get().available == 15
    assert sorted(alerted_emails(fake_rule)) == sorted(w.email for w in watchers)


def test_check_stock_now_reports_a_centra_failure(merchant, centra_connection, fake_centra):
    watchers = make_watchers(centra_connection, "12366-23400", 1)
    fake_centra.fail("forbidden", times=None)
    message = run_action(merchant, "check_stock_now", watchers)
    assert "Centra stock check failed" in message
    assert Watcher.objects.get().status == "waiting"


def test_alert_now_respects_the_cap_from_the_known_stock(merchant, rule_connection, fake_rule, task_queue):
    # given 10 watchers and stock 2 seen earlier (below the minimum of 10), 3 alerts per unit
    bis_settings(rule_connection, alerts_per_unit=3)
    watchers = make_watchers(rule_connection, "12366-23400", 10)
    ItemStock.objects.create(connection=rule_connection, item="12366-23400", available=2, source="poll")
    # when the merchant runs "Alert now"
    message = run_action(merchant, "alert_now", watchers[5:6])
    task_queue.drain()
    # then the 6 oldest are alerted, the rest keep waiting
    assert "6 of 6 allowed alerts sent" in message
    assert alerted_emails(fake_rule) == [w.email for w in watchers[:6]]
    assert Watcher.objects.filter(status="waiting").count() == 4
    assert Restock.objects.get().source == "admin"


def test_alert_now_without_known_stock_alerts_nobody(merchant, rule_connection, fake_rule):
    watchers = make_watchers(rule_connection, "12366-23400", 2)
    message = run_action(merchant, "alert_now", watchers)
    assert "no stock known" in message
    assert Watcher.objects.filter(status="waiting").count() == 2


def test_remove_stops_the_selected_watchers_waiting(merchant, rule_connection):
    keep, drop = make_watchers(rule_connection, "12366-23400", 2)
    message = run_action(merchant, "remove", [drop])
    assert "1 watchers removed" in message
    assert Watcher.objects.get(pk=drop.pk).status == "unsubscribed"
    assert Watcher.objects.get(pk=keep.pk).status == "waiting"


def test_stock_and_restocks_are_read_only_and_listed(merchant, rule_connection):
    make_watchers(rule_connection, "12366-23400", 2)
    ItemStock.objects.create(connection=rule_connection, item="12366-23400", available=4, source="event")
    page = merchant.get(reverse("admin:backinstock_itemstock_changelist")).content.decode()
    assert "12366-23400" in page
    assert merchant.get(reverse("admin:backinstock_itemstock_add")).status_code == 403
    assert merchant.get(reverse("admin:backinstock_restock_changelist")).status_code == 200
