"""Back in stock is a plug-in of the core: its own settings model, its events declared from its own app, and a
core that runs without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection as db_connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse

from backinstock.models import BackInStockSettings
from integration import catalog
from integration.models import Connection, Flow
from tests.factories import ConnectionFactory

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_core_runs_without_the_plug_in(tmp_path):
    # Given the service's settings without backinstock, on a fresh database
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'core.sqlite3'}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    check = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**env, "DJANGO_SETTINGS_MODULE": "tests.settings_core_only"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stderr

    # When it migrates and a signed OrderCompleted and a BackInStockSubscribe event are posted and processed
    run = subprocess.run(
        [sys.executable, "-m", "tests.core_only"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)

    # Then the plug-in is absent with everything it declares, and the order reaches Rule as usual
    assert "backinstock" not in result["installed"]
    assert "ProductAlertTriggered" not in result["events"] and "OrderCompleted" in result["events"]
    assert "BackInStockSubscribe" not in result["inbound_types"]
    assert result["cart_status"] == 200 and result["order_status"] == 200
    assert result["watch_status"] == 400 and "BackInStockSubscribe" not in result["watch_known_types"]
    assert result["inbound"] == [["OrderCompleted", "processed"], ["OrderCreated", "processed"]]
    assert result["catalogue_status"] == 200
    assert result["catalogue_rows"] == [["ignored", "catalogue key 'DisplayItems' is not used"]]
    # (and, as always after a completed order of a shopper whose cart went to Rule, the cart tag is removed)
    assert result["deliveries"] == [
        ["OrderCompleted", "succeeded"],
        ["OrderCreated", "succeeded"],
        ["RemoveCartTag", "succeeded"],
    ]
    assert result["rule_tags"] == [["OrderCreated"], ["OrderCompleted"]]


def test_the_plug_in_declares_its_events_and_inbound_types_itself():
    assert {"ProductAlertWaiting", "ProductAlertTriggered"} <= set(catalog.EVENTS)
    assert catalog.EVENTS["ProductAlertTriggered"].source == "backinstock"
    assert {"BackInStockSubscribe", "BackInStockUnsubscribe", "StockUpdate"} <= set(catalog.INBOUND_TYPES)
    assert "ProductAlert.SizeSKU" in {f.key for f in catalog.fields_for_event("ProductAlertTriggered")}


@pytest.mark.django_db(transaction=True)
def test_the_migration_carries_each_connections_settings_to_the_plug_in():
    old_state = [("integration", "0008_flow_event_choices_from_catalog"), ("backinstock", "0002_poll_schedule")]
    executor = MigrationExecutor(db_connection)
    leaves = executor.loader.graph.leaf_nodes()
    try:
        # Given a connection with its own back-in-stock values, stored before the move
        executor.migrate(old_state)
        old = executor.loader.project_state(old_state).apps.get_model("integration", "Connection")
        old.objects.create(name="before", bis_min_stock=3, bis_alerts_per_unit=4, bis_expiry_days=5, bis_poll_minutes=6)

        # When the database is migrated
        executor = MigrationExecutor(db_connection)
        executor.migrate(leaves)
    finally:
        MigrationExecutor(db_connection).migrate(leaves)

    # Then the plug-in's settings row holds the same values
    moved = BackInStockSettings.objects.get(connection__name="before")
    assert (moved.min_stock, moved.alerts_per_unit, moved.expiry_days, moved.poll_minutes) == (3, 4, 5, 6)


def test_a_connection_without_a_settings_row_reads_the_defaults_and_writes_nothing(connection):
    settings = BackInStockSettings.of(Connection.objects.get(pk=connection.pk))
    assert (settings.min_stock, settings.alerts_per_unit, settings.expiry_days, settings.poll_minutes) == (
        10,
        20,
        365,
        15,
    )
    assert not BackInStockSettings.objects.exists()


def test_the_connection_page_edits_the_settings_through_the_plug_ins_inline(admin_client, connection):
    # Given the connection page: the plug-in's section with the defaults
    url = reverse("admin:integration_connection_change", args=[connection.pk])
    page = admin_client.get(url)
    html = page.content.decode()
    assert 'name="back_in_stock-0-min_stock"' in html and 'value="10"' in html

    # When the merchant changes the minimum stock and saves
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and not isinstance(v, (dict, list))}
    data |= {"tracking_link_templates": json.dumps(connection.tracking_link_templates)}
    for formset in page.context["inline_admin_formsets"]:
        management = formset.formset.management_form
        data |= {management.add_prefix(k): v for k, v in management.initial.items()}
        for inline_form in formset.formset.forms:
            for name, field in inline_form.fields.items():
                value = inline_form.initial.get(name, field.initial)
                if value is not None:
                    data[inline_form.add_prefix(name)] = value.pk if hasattr(value, "pk") else value
    data["back_in_stock-0-min_stock"] = 4
    response = admin_client.post(url, data)

    # Then the plug-in's row stores it
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    assert BackInStockSettings.objects.get(connection=connection).min_stock == 4


@pytest.mark.django_db(transaction=True)
def test_installing_the_plug_in_gives_existing_connections_its_flows():
    # Given a connection that existed before back in stock was installed (no flows of its events)
    before = [("backinstock", "0003_back_in_stock_settings")]
    executor = MigrationExecutor(db_connection)
    leaves = executor.loader.graph.leaf_nodes()
    try:
        executor.migrate(before)
        ConnectionFactory(name="older")
        Flow.objects.filter(event__startswith="ProductAlert").delete()

        # When the plug-in's migrations run
        MigrationExecutor(db_connection).migrate(leaves)
    finally:
        MigrationExecutor(db_connection).migrate(leaves)

    # Then the connection has both flows with the declared defaults
    flows = Flow.objects.filter(connection__name="older", event__startswith="ProductAlert").order_by("event")
    assert [(f.event, f.enabled, f.tags) for f in flows] == [
        ("ProductAlertTriggered", True, ["Rule - Product Alert Triggered"]),
        ("ProductAlertWaiting", True, ["Rule - Waiting For Product Alert"]),
    ]
