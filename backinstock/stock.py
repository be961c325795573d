"""Stock seen for watched items, from three sources (Centra poll, catalogue webhooks, StockUpdate events),
and the rule that turns stock into a Restock.

The rule: a Restock opens when an item's free-to-allocate stock is at least the connection's minimum, the stock
last seen was below it (or never seen), and someone is waiting. Stock that stays high opens nothing new, so a
poll every 15 minutes does not alert another share of watchers each time; it must dip below the minimum first.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from backinstock.models import BackInStockSettings, ItemStock, Restock, StockPoll, Watcher
from backinstock.watchers import expire_watchers
from integration.centra.client import STOCK_BATCH, CentraClient
from integration.models import Connection

log = logging.getLogger(__name__)


def record_stock(connection: Connection, item: str, available: int, *, source: str, sku: str = "") -> Restock | None:
    """Store the stock seen for an item; returns the Restock to alert for (new, or one still open), if any."""
    now = timezone.now()
    with transaction.atomic():
        # The row lock makes "what was the stock before?" exact when two checks of one item run at once.
        row = ItemStock.objects.select_for_update().filter(connection=connection, item=item).first()
        if row is None:
            try:
                with transaction.atomic():
                    row = ItemStock.objects.create(
                        connection=connection, item=item, sku=sku, available=available, updated_at=now, source=source
                    )
                previous = None
            except IntegrityError:
                row = ItemStock.objects.select_for_update().get(connection=connection, item=item)
                previous = row.available
        else:
            previous = row.available
        if previous is not None:
            row.available, row.updated_at, row.source = available, now, source
            row.sku = sku or row.sku
            row.save(update_fields=["available", "updated_at", "source", "sku"])
        min_stock = BackInStockSettings.of(connection).min_stock
        crossed = available >= min_stock and (previous is None or previous < min_stock)
        if crossed:
            return open_restock(connection, item, available, source=source)
        return Restock.objects.filter(connection=connection, item=item, status=Restock.Status.OPEN).first()


def open_restock(connection: Connection, item: str, available: int, *, source: str) -> Restock | None:
    """A Restock allowing available x alerts-per-unit alerts, or the item's open one; None when nobody waits."""
    current = Restock.objects.filter(connection=connection, item=item, status=Restock.Status.OPEN).first()
    if current:
        return current
    allowed = max(available, 0) * BackInStockSettings.of(connection).alerts_per_unit
    waiting = Watcher.objects.filter(connection=connection, item=item, status=Watcher.Status.WAITING)
    if allowed <= 0 or not waiting.exists():
        return None
    try:
        with transaction.atomic():
            return Restock.objects.create(
                connection=connection, item=item, stock_seen=available, allowed=allowed, source=source
            )
    except IntegrityError:
        # A concurrent check opened it first: share its allowance rather than adding a second one.
        return Restock.objects.filter(connection=connection, item=item, status=Restock.Status.OPEN).first()


def watched_items(connection: Connection) -> Iterator[str]:
    """The items someone is waiting for, streamed in item order."""
    return (
        Watcher.objects.filter(connection=connection, status=Watcher.Status.WAITING)
        .order_by("item")
        .values_list("item", flat=True)
        .distinct()
        .iterator(chunk_size=STOCK_BATCH)
    )


def items_for_catalogue_ids(connection: Connection, ids: Iterable[object]) -> list[str]:
    """Watched items of these display item ids: a Centra item is "<display item id>-<size id>", so item
    "12366-23400" belongs to display item 12366. The Storefront API's `Products` key names display items
    too (its "product" is the display item), so both keys use this rule."""
    prefixes = sorted({str(i).strip() for i in ids if str(i).strip()})
    if not prefixes:
        return []
    match = Q()
    for prefix in prefixes:
        match |= Q(item__startswith=f"{prefix}-")
    return list(
        Watcher.objects.filter(match, connection=connection, status=Watcher.Status.WAITING)
        .order_by("item")
        .values_list("item", flat=True)
        .distinct()
    )


def fetch_stock(connection: Connection, items: Iterable[str], client: CentraClient | None = None) -> dict[str, int]:
    """Ask Centra for these items' free-to-allocate stock, 100 per query (network only: no transaction open)."""
    client = client or CentraClient.for_connection(connection)
    stock: dict[str, int] = {}
    items = list(items)
    for start in range(0, len(items), STOCK_BATCH):
        batch = items[start : start + STOCK_BATCH]
        stock.update({item: int(fta) for item, fta in client.stock_for_items(batch).items()})
    return stock


def record_stocks(connection: Connection, stock: dict[str, int], *, source: str) -> list[Restock]:
    """Record the stock seen per item; returns the restocks to alert for."""
    restocks = []
    for item, available in stock.items():
        restock = record_stock(connection, item, available, source=source)
        if restock:
            restocks.append(restock)
    return restocks


def check_items(
    connection: Connection, items: Iterable[str], *, source: str, client: CentraClient | None = None
) -> list[Restock]:
    """Ask Centra for these items' stock and record it (each item in its own short transaction, after the calls);
    returns the restocks to alert for."""
    return record_stocks(connection, fetch_stock(connection, items, client), source=source)


def claim_poll(connection: Connection) -> bool:
    """Take this connection's poll if its interval has passed (a conditional UPDATE: two workers never both do)."""
    now = timezone.now()
    StockPoll.objects.get_or_create(connection=connection)
    due_before = now - timedelta(minutes=BackInStockSettings.of(connection).poll_minutes)
    return bool(
        StockPoll.objects.filter(connection=connection)
        .filter(Q(last_polled_at__isnull=True) | Q(last_polled_at__lte=due_before))
        .update(last_polled_at=now)
    )


def poll_connection(connection: Connection) -> list[Restock]:
    """Expire old watchers, then ask Centra for the stock of every watched item (nothing else)."""
    expired = expire_watchers(connection)
    if expired:
        log.info("%s: %d watchers expired", connection, expired)
    if not (connection.centra_api_token and connection.centra_api_url):
        return []
    items = list(watched_items(connection))
    error = ""
    restocks: list[Restock] = []
    try:
        restocks = check_items(connection, items, source=ItemStock.Source.POLL)
    except Exception as exc:  # shown in the admin; the next poll tries again
        error = f"{exc.__class__.__name__}: {exc}"
        log.warning("%s: stock poll failed: %s", connection, error)
    StockPoll.objects.filter(connection=connection).update(items_checked=len(items), last_error=error)
    return restocks


def stalled_restocks(older_than: timedelta = timedelta(minutes=2)) -> list[int]:
    """Open restocks without progress for a while (their worker died): resumed by the poll."""
    cutoff = timezone.now() - older_than
    return list(Restock.objects.filter(status=Restock.Status.OPEN, updated_at__lt=cutoff).values_list("id", flat=True))
