"""Processing handlers for back-in-stock inbound events (registered from integration's AppConfig.ready)."""

from __future__ import annotations

from integration.models import InboundEvent
from integration.processing.dispatch import PermanentError, handles

PROCESSED = InboundEvent.Status.PROCESSED
IGNORED = InboundEvent.Status.IGNORED


def fetch_product(inbound: InboundEvent) -> dict:
    """Centra's current product fields for the size (no transaction open; empty when Centra cannot say)."""
    # Domain modules pull in mapping and delivery; importing them here keeps app loading independent of them.
    from .watchers import centra_product

    return centra_product(inbound.connection, inbound.payload)


@handles("BackInStockSubscribe", fetch=fetch_product)
def subscribe_event(inbound: InboundEvent, centra_fields: dict) -> str:
    """Start watching; IGNORED when this shopper already waits for this item."""
    from .watchers import subscribe

    _watcher, created = subscribe(
        inbound.connection, inbound.payload, inbound_event=inbound, centra_fields=centra_fields
    )
    return PROCESSED if created else IGNORED


@handles("BackInStockUnsubscribe")
def unsubscribe_event(inbound: InboundEvent) -> str:
    """Stop watching one item (or every item of the email when none is named)."""
    from .watchers import unsubscribe

    email = str(inbound.payload.get("email") or "").strip()
    if not email:
        raise PermanentError("an unsubscription needs an email")
    stopped = unsubscribe(inbound.connection, email, str(inbound.payload.get("item") or ""))
    return PROCESSED if stopped else IGNORED


@handles("StockUpdate")
def stock_update_event(inbound: InboundEvent) -> str:
    """Availability pushed by the shop: record it as is, and alert where it came back."""
    from .models import ItemStock
    from .stock import record_stock
    from .tasks import enqueue_alerts

    rows = inbound.payload.get("items")
    if not isinstance(rows, list) or not rows:
        raise PermanentError("a StockUpdate needs items: [{item, sku, available}]")
    restocks = []
    for row in rows:
        item = str((row or {}).get("item") or "").strip() if isinstance(row, dict) else ""
        try:
            available = int(row["available"])
        except (KeyError, TypeError, ValueError):
            raise PermanentError(f"StockUpdate item {item or '?'}: available must be a whole number") from None
        if not item:
            raise PermanentError("StockUpdate: every entry needs an item")
        restock = record_stock(
            inbound.connection, item, available, source=ItemStock.Source.EVENT, sku=str(row.get("sku") or "")
        )
        if restock:
            restocks.append(restock)
    enqueue_alerts(restocks)
    return PROCESSED


def fetch_catalogue_stock(inbound: InboundEvent) -> dict[str, int] | None:
    """The stock of the watched sizes of the changed display items, from Centra (no transaction open); None when
    there is nothing to ask (no Centra token, nobody watching those items)."""
    from integration.centra.client import CentraQueryError

    from .stock import fetch_stock, items_for_catalogue_ids

    connection = inbound.connection
    if not (connection.centra_api_token and connection.centra_api_url):
        return None  # the storefront's StockUpdate events are the way without a token
    items = items_for_catalogue_ids(connection, inbound.payload.get("ids") or [])
    if not items:
        return None
    try:
        return fetch_stock(connection, items)
    except CentraQueryError as exc:
        # Centra refused the query (token, permission): retrying will not help. CentraUnavailable propagates
        # as a passing fault, so the event is processed again on the retry schedule.
        raise PermanentError(str(exc)) from exc


@handles("DisplayItems", "Products", fetch=fetch_catalogue_stock)
def catalogue_event(inbound: InboundEvent, stock: dict[str, int] | None) -> str:
    """Centra says these display items changed: record the stock of the watched sizes, alert where it came back."""
    from .models import ItemStock
    from .stock import record_stocks
    from .tasks import enqueue_alerts

    if stock is None:
        return IGNORED
    enqueue_alerts(record_stocks(inbound.connection, stock, source=ItemStock.Source.WEBHOOK))
    return PROCESSED
