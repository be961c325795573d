"""django-q2 tasks for back in stock: thin wrappers that take ids and call the domain functions."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from backinstock import alerts, stock
from backinstock.models import Restock
from integration.models import Connection
from integration.queue import enqueue


def alert_restock(restock_id: int) -> int:
    """Alert one restock's share of waiting watchers (safe to run twice, or alongside another worker)."""
    return alerts.run_restock(restock_id)


def poll_stock() -> dict[str, int]:
    """The every-minute schedule: poll each connection whose interval passed, resume stalled restocks."""
    polled = 0
    for connection in list(Connection.objects.select_related("back_in_stock")):
        if stock.claim_poll(connection):
            polled += 1
            enqueue_alerts(stock.poll_connection(connection))
    stalled = stock.stalled_restocks()
    for restock_id in stalled:
        _enqueue(restock_id)
    return {"polled": polled, "resumed": len(stalled)}


def enqueue_alerts(restocks: Iterable[Restock]) -> None:
    """Alert these restocks in the worker once the surrounding transaction commits."""
    for restock_id in {r.pk for r in restocks}:
        transaction.on_commit(lambda restock_id=restock_id: _enqueue(restock_id))


def _enqueue(restock_id: int) -> None:
    # A lost enqueue leaves the restock open in the database: the poll resumes it.
    enqueue(
        "backinstock.tasks.alert_restock", restock_id, task_name=f"restock-{restock_id}", what=f"restock {restock_id}"
    )
