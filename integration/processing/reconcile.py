"""Reconciliation: ask Centra what changed since the connection's cursor and catch up what webhooks missed.

Centra does not guarantee webhook delivery or order, so every connection with an API token is asked, every
`reconcile_interval_minutes`, for the orders and shipments updated and the returns created since its cursor
(minus a 5-minute overlap; the first run looks back 24 hours), plus the returns of the orders that changed
(ReturnFilter has no `updatedAt`, and a return completed later touches its order). Each object goes through the
same decision as a webhook (integration.processing.centra_sync.decide); the idempotency keys keep anything that a
webhook already sent from going twice. Only an object that really catches something up gets an InboundEvent row
(source `reconcile`), so the admin shows where a delivery came from without a row per unchanged order.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from integration.centra.client import CentraClient, CentraError, CentraQueryError
from integration.models import Connection, Delivery, InboundEvent
from integration.processing.centra_sync import ORDER, RETURN, SHIPMENT, apply_state, decide, record_centra_error
from integration.processing.dispatch import Ignored, PermanentError

log = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=5)
FIRST_LOOK_BACK = timedelta(hours=24)
# Created by the data migration integration/migrations/0004_reconcile_schedule.py.
SCHEDULE_NAME = "bridge: reconcile"
SCHEDULE_FUNC = "integration.processing.reconcile.reconcile_due"


def _object_ref(kind: str, doc: dict) -> str:
    return str(doc.get("number") if kind == ORDER else doc.get("id"))


def catch_up(connection: Connection, kind: str, doc: dict) -> int:
    """Emit what this object's current state means and was not sent yet; the number of deliveries stored."""
    decision = decide(connection, kind, doc)
    if not decision.events:
        return 0
    ref = _object_ref(kind, doc)
    # Stable per object and events: a run that meets the same object again (overlap, a permanent mapping
    # failure) finds the row and leaves it alone, instead of stacking a row per run.
    dedupe_key = f"reconcile:{kind}:{ref}:{'+'.join(decision.events)}"
    with transaction.atomic():
        try:
            with transaction.atomic():
                inbound = InboundEvent.objects.create(
                    connection=connection,
                    source=InboundEvent.Source.RECONCILE,
                    dedupe_key=dedupe_key,
                    event_type=kind,
                    object_ref=ref,
                    payload={"type": kind, "action": "reconcile", "id": ref, "events": decision.events},
                )
        except IntegrityError:
            return 0
        inbound.process_attempts = 1
        try:
            with transaction.atomic():
                stored = apply_state(
                    connection, kind, doc, inbound=inbound, trigger=Delivery.Trigger.RECONCILE, decision=decision
                )
            inbound.status = InboundEvent.Status.PROCESSED
        except Ignored as exc:  # about a forgotten subscriber
            stored, inbound.status, inbound.error = [], InboundEvent.Status.IGNORED, str(exc)
        except PermanentError as exc:
            stored, inbound.status, inbound.error = [], InboundEvent.Status.FAILED, str(exc)
        except Exception as exc:  # a passing fault: the row stays `received` and the sweeper fetches it again
            stored, inbound.error = [], f"{exc.__class__.__name__}: {exc}"
        if inbound.status != InboundEvent.Status.RECEIVED:
            inbound.processed_at = timezone.now()
        inbound.save(update_fields=["status", "error", "processed_at", "process_attempts"])
    return len(stored)


def reconcile_connection(connection: Connection, since: datetime | None = None) -> dict:
    """Catch up one connection from `since` (default: its cursor minus the overlap); counts per kind.

    On a Centra error the error is recorded on the connection, the cursor stays, and CentraError is raised."""
    started = timezone.now()
    if since is None:
        since = connection.reconcile_cursor - OVERLAP if connection.reconcile_cursor else started - FIRST_LOOK_BACK
    counts = {
        "orders": 0,
        "shipments": 0,
        "returns": 0,
        "deliveries": 0,
        "since": since.isoformat(),
        "until": started.isoformat(),
    }
    try:
        client = CentraClient.for_connection(connection)
        changed_orders = []
        for order in client.orders_changed(since, started):
            counts["orders"] += 1
            changed_orders.append(order["number"])
            counts["deliveries"] += catch_up(connection, ORDER, order)
        for shipment in client.shipments_changed(since, started):
            counts["shipments"] += 1
            counts["deliveries"] += catch_up(connection, SHIPMENT, shipment)
        seen = set()
        for source in (client.returns_created(since, started), client.returns_for_orders(changed_orders)):
            for ret in source:
                if ret["id"] in seen:
                    continue
                seen.add(ret["id"])
                counts["returns"] += 1
                counts["deliveries"] += catch_up(connection, RETURN, ret)
    except CentraError as exc:
        message = str(exc)
        Connection.objects.filter(pk=connection.pk).update(last_reconcile_at=started, last_reconcile_error=message)
        if isinstance(exc, CentraQueryError):
            record_centra_error(connection, message)
        log.warning("reconcile %s failed: %s", connection.name, message)
        raise
    Connection.objects.filter(pk=connection.pk).update(
        reconcile_cursor=started, last_reconcile_at=started, last_reconcile_error=""
    )
    connection.reconcile_cursor = connection.last_reconcile_at = started
    connection.last_reconcile_error = ""
    return counts


def due_connections(now: datetime | None = None) -> list[Connection]:
    """Active connections with a Centra URL and token whose reconcile interval has passed."""
    now = now or timezone.now()
    candidates = Connection.objects.filter(status=Connection.Status.ACTIVE).exclude(centra_api_url="")
    due = []
    for connection in candidates:
        if not connection.centra_api_token:  # encrypted: checked in Python, never filtered on
            continue
        last = connection.last_reconcile_at
        if last is None or last <= now - timedelta(minutes=connection.reconcile_interval_minutes):
            due.append(connection)
    return due


def _claim(connection: Connection, now: datetime) -> bool:
    """Take this run with a conditional UPDATE, so two overlapping schedule runs never reconcile it twice."""
    last = connection.last_reconcile_at
    stamp = Q(last_reconcile_at__isnull=True) if last is None else Q(last_reconcile_at=last)
    return Connection.objects.filter(stamp, pk=connection.pk).update(last_reconcile_at=now) == 1


def reconcile_due(now: datetime | None = None) -> dict[str, dict | str]:
    """Reconcile every connection that is due (the every-minute Schedule); a failing one does not stop others."""
    now = now or timezone.now()
    results: dict[str, dict | str] = {}
    for connection in due_connections(now):
        if not _claim(connection, now):
            continue
        try:
            results[connection.name] = reconcile_connection(connection)
        except CentraError as exc:
            results[connection.name] = f"error: {exc}"
    return results
