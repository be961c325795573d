"""Helpers for the back-in-stock tests: watchers in a known age order, running queued work, what Rule got."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from backinstock.models import BackInStockSettings, Watcher
from integration.models import InboundEvent
from integration.processing.dispatch import process_inbound_event

TRIGGERED_TAG = "Rule - Product Alert Triggered"
WAITING_TAG = "Rule - Waiting For Product Alert"


def bis_settings(connection, **values) -> BackInStockSettings:
    """Store the connection's back-in-stock settings (min_stock, alerts_per_unit, expiry_days, poll_minutes)."""
    row, _ = BackInStockSettings.objects.update_or_create(connection=connection, defaults=values)
    connection.back_in_stock = row
    return row


def make_watchers(
    connection, item: str, count: int, *, prefix: str = "shopper", days_ago: int = 30, language: str = "sv"
) -> list[Watcher]:
    """`count` waiting watchers of `item`, the first one the oldest (one minute apart)."""
    start = timezone.now() - timedelta(days=days_ago)
    watchers = [
        Watcher(
            connection=connection,
            email=f"{prefix}{n:05d}@example.com",
            item=item,
            sku=f"SKU-{item}",
            language=language,
            country="SE",
            product={"name": "Wool Coat", "size": "M", "sku": f"SKU-{item}"},
            created_at=start + timedelta(minutes=n),
        )
        for n in range(count)
    ]
    return Watcher.objects.bulk_create(watchers, batch_size=1000)


def inbound(connection, event_type: str, payload: dict, *, source: str = InboundEvent.Source.EVENTS) -> InboundEvent:
    """Store an inbound event the way the endpoints do."""
    return InboundEvent.objects.create(
        connection=connection,
        source=source,
        dedupe_key=f"{event_type}:{InboundEvent.objects.count()}",
        event_type=event_type,
        payload=payload,
    )


def process(connection, event_type: str, payload: dict, *, source: str = InboundEvent.Source.EVENTS) -> InboundEvent:
    """Store and process one inbound event (step 2 of the flow); returns it refreshed."""
    event = inbound(connection, event_type, payload, source=source)
    process_inbound_event(event.pk)
    event.refresh_from_db()
    return event


def alert_requests(fake_rule) -> list[dict]:
    """The ProductAlertTriggered batches Rule received (their JSON bodies)."""
    return [
        r["json"]
        for r in fake_rule.requests
        if r["path"].endswith("/subscribers") and TRIGGERED_TAG in (r["json"] or {}).get("tags", [])
    ]


def alerted_emails(fake_rule) -> list[str]:
    """Every subscriber email Rule got a ProductAlertTriggered for, in order (duplicates kept)."""
    return [s["email"] for body in alert_requests(fake_rule) for s in body["subscribers"]]


def fields_of(subscriber: dict) -> dict[str, str]:
    return {f["key"]: f["value"] for f in subscriber.get("fields", [])}
