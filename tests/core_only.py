"""Run in a subprocess with tests.settings_core_only (no back in stock): migrate, then signed JSON events (a cart,
then its order) from the endpoint through processing to the fake Rule, a back-in-stock event (refused) and a
catalogue webhook (kept, not used). Prints what happened as JSON for the test to check."""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import urlencode


def main() -> None:
    import django

    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings_core_only"
    django.setup()
    from django.apps import apps
    from django.core.management import call_command
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse

    from integration import catalog
    from integration.inbound.signature import sign
    from integration.mapping.samples import sample
    from integration.models import Connection, Delivery, InboundEvent
    from integration.sandbox.fake_rule import FakeRule
    from tests.fixtures.common import post_signed_events
    from tests.fixtures.queue import TaskQueue

    setup_test_environment()
    call_command("migrate", verbosity=0)
    rule = FakeRule(api_key="core-only-key").start()
    try:
        connection = Connection.objects.create_with_flows(
            name="core-only", signing_secrets="whsec-core", rule_api_url=rule.url, rule_api_key=rule.api_key
        )
        client = Client()
        envelope = {"occurredAt": "2026-12-01T10:00:00Z"}
        # the shopper's abandoned cart first (its tag is removed once the order is delivered)
        cart = post_signed_events(
            client, connection, {"id": "e-0", "type": "OrderCreated", **envelope, **sample("OrderCreated")}
        )
        ran = TaskQueue().drain()
        order = post_signed_events(
            client, connection, {"id": "e-1", "type": "OrderCompleted", **envelope, **sample("OrderCompleted")}
        )
        watch = post_signed_events(
            client,
            connection,
            {"id": "e-2", "type": "BackInStockSubscribe", **envelope, "email": "a@example.com", "item": "1-2"},
        )
        # Centra's Storefront API webhook: the keys only the plug-in reads are kept, marked not used
        form = urlencode({"payload": json.dumps({"DisplayItems": ["52"]})}).encode()
        catalogue = client.post(
            reverse("centra-webhook", args=[connection.token]),
            data=form,
            content_type="application/x-www-form-urlencoded",
            headers={"X-Centra-Signature": sign("whsec-core", form)},
        )
        ran += TaskQueue().drain()
        result = {
            "installed": sorted(app.label for app in apps.get_app_configs()),
            "events": list(catalog.EVENTS),
            "inbound_types": list(catalog.INBOUND_TYPES),
            "cart_status": cart.status_code,
            "order_status": order.status_code,
            "watch_status": watch.status_code,
            "watch_known_types": watch.json().get("known_types"),
            "catalogue_status": catalogue.status_code,
            "catalogue_rows": list(
                InboundEvent.objects.filter(event_type="DisplayItems").values_list("status", "error")
            ),
            "tasks_run": ran,
            "inbound": sorted(
                InboundEvent.objects.exclude(event_type="DisplayItems").values_list("event_type", "status")
            ),
            "deliveries": sorted(Delivery.objects.values_list("event", "status")),
            "rule_paths": [r["path"] for r in rule.requests],
            "rule_tags": [r["json"].get("tags") for r in rule.requests if r["method"] == "POST"],
        }
    finally:
        rule.stop()
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
