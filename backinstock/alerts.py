"""Fair, exactly-once ProductAlertTriggered: a Restock alerts its oldest waiting watchers, 100 per Rule batch.

Each batch is one transaction: lock the restock row, claim up to 100 waiting watchers (oldest first, read on
from a keyset cursor), move them to `alerted` with a conditional UPDATE that names the restock and batch, and
store the batch's Delivery. A worker that dies mid-way leaves every batch either fully done (watchers alerted
and the delivery stored, sent later) or not started; a re-run carries on with watchers still waiting. Two
workers on one restock queue on its row lock; restocks of one item never overlap (one open restock per item).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from backinstock.models import ItemStock, Restock, Watcher
from backinstock.stock import open_restock
from integration.delivery import engine as delivery
from integration.mapping import FlowConfig, MappingContext, MappingError, build_batch_request, map_event
from integration.models import Connection
from integration.processing.emit import flow_for

log = logging.getLogger(__name__)

EVENT = "ProductAlertTriggered"
BATCH_SIZE = 100  # Rule's limit for one batch request with sync_subscribers


def batch_key(restock_id: int, batch: int) -> str:
    """The delivery's idempotency key: a re-run never stores a second delivery for the same batch."""
    return f"{EVENT}:restock:{restock_id}:batch:{batch}"


def run_restock(restock_id: int, batch_size: int = BATCH_SIZE) -> int:
    """Alert a restock's share of waiting watchers, batch by batch; returns how many this call alerted."""
    total = 0
    for alerted in iter_batches(restock_id, batch_size):
        total += alerted
    return total


def iter_batches(restock_id: int, batch_size: int = BATCH_SIZE) -> Iterator[int]:
    """Run one committed batch per step (how many watchers it alerted) until the restock is finished."""
    while True:
        alerted = alert_next_batch(restock_id, batch_size)
        if alerted is None:
            return
        yield alerted


def _finish(restock: Restock, status: str = Restock.Status.DONE) -> None:
    restock.status = status
    restock.finished_at = timezone.now()
    restock.save(update_fields=["status", "finished_at", "updated_at"])


def _candidates(restock: Restock, limit: int, *, from_cursor: bool = True) -> list[int]:
    """Ids of the oldest waiting watchers this restock may alert (locked, skipping rows others hold)."""
    waiting = Watcher.objects.filter(
        connection_id=restock.connection_id,
        item=restock.item,
        status=Watcher.Status.WAITING,
        created_at__lte=restock.created_at,
    )
    if from_cursor and restock.cursor_id is not None:
        after = restock.cursor_created_at
        waiting = waiting.filter(Q(created_at__gt=after) | Q(created_at=after, id__gt=restock.cursor_id))
    waiting = waiting.order_by("created_at", "id")
    if db_connection.features.has_select_for_update_skip_locked:
        waiting = waiting.select_for_update(skip_locked=True, of=("self",))
    return list(waiting.values_list("id", flat=True)[:limit])


def claim(restock: Restock, batch: int, ids: list[int]) -> int:
    """Move these watchers to `alerted` for this restock's batch, only those still waiting (a conditional
    UPDATE: a watcher another worker took in between is not taken again). Returns how many were claimed."""
    return Watcher.objects.filter(pk__in=ids, status=Watcher.Status.WAITING).update(
        status=Watcher.Status.ALERTED, restock=restock, batch=batch, alerted_at=timezone.now()
    )


def alert_next_batch(restock_id: int, batch_size: int = BATCH_SIZE) -> int | None:
    """One batch in one transaction; None once the restock is finished (or gone)."""
    batch_size = min(batch_size, BATCH_SIZE)
    with transaction.atomic():
        restock = Restock.objects.select_for_update().filter(pk=restock_id).first()
        if restock is None or restock.status != Restock.Status.OPEN:
            return None
        connection = Connection.objects.get(pk=restock.connection_id)
        flow = flow_for(connection, EVENT)
        if not flow.enabled:
            _finish(restock, Restock.Status.SKIPPED)
            return None
        remaining = restock.allowed - restock.alerted
        if remaining <= 0:
            _finish(restock)
            return None
        limit = min(batch_size, remaining)
        ids = _candidates(restock, limit) or _candidates(restock, limit, from_cursor=False)
        if not ids:
            _finish(restock)
            return None
        batch = restock.batches + 1
        claim(restock, batch, ids)
        watchers = list(Watcher.objects.filter(restock=restock, batch=batch).order_by("created_at", "id"))
        sent = _store_batch(connection, flow, restock, batch, watchers)
        # The candidates come in (created_at, id) order: the last one is where the next batch reads on.
        restock.cursor_created_at = Watcher.objects.values_list("created_at", flat=True).get(pk=ids[-1])
        restock.cursor_id = ids[-1]
        restock.batches = batch
        restock.alerted += sent
        restock.save(update_fields=["cursor_created_at", "cursor_id", "batches", "alerted", "updated_at"])
        return sent


def _store_batch(connection: Connection, flow, restock: Restock, batch: int, watchers: list[Watcher]) -> int:
    """Map each claimed watcher (own language and fields) and store the batch's Delivery; returns how many."""
    ctx = MappingContext.from_connection(connection)
    subscribers, failed = [], []
    for watcher in watchers:
        try:
            subscribers.append(map_event(EVENT, watcher.event_payload(), ctx))
        except MappingError as exc:
            failed.append((watcher.pk, str(exc)))
    for pk, reason in failed:
        # Never sendable (e.g. an invalid email): out of the queue, with the reason, not counted as alerted.
        Watcher.objects.filter(pk=pk).update(
            status=Watcher.Status.FAILED, note=reason[:500], restock=None, batch=None, alerted_at=None
        )
    if not subscribers:
        return 0
    delivery.create_delivery(
        connection=connection,
        event=EVENT,
        body=build_batch_request(EVENT, subscribers, FlowConfig.from_flow(flow)),
        email=subscribers[0].email if len(subscribers) == 1 else "",
        idempotency_key=batch_key(restock.pk, batch),
        notes=(
            f"back in stock: {restock.item}, restock {restock.pk}, batch {batch} of {len(subscribers)} subscribers",
        ),
    )
    return len(subscribers)


def alert_now(connection: Connection, item: str) -> Restock | None:
    """Alert an item's waiting watchers now (admin), capped by its last known stock x alerts per unit."""
    stock = ItemStock.objects.filter(connection=connection, item=item).first()
    if stock is None or stock.available <= 0:
        return None
    restock = open_restock(connection, item, stock.available, source=ItemStock.Source.ADMIN)
    if restock:
        run_restock(restock.pk)
        restock.refresh_from_db()
    return restock
