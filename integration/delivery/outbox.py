"""Storing many deliveries at once: one INSERT for a chunk of processed events, announced on commit.

`create_deliveries(specs)` is the set-based twin of `engine.create_delivery`: the same rows (pending, due now,
the mapping's notes kept), the same rule for a repeated (connection, idempotency key): silently skipped, and
the same hook once the rows are committed (`engine.announce(ids)`, where the dispatch policy lives). One
statement whatever the number of specs (`INSERT ... ON CONFLICT DO NOTHING RETURNING`), so a worker turning a
backlog into deliveries pays one round trip per chunk instead of one per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connections, transaction
from django.utils import timezone

from integration.bulk import insert_new
from integration.delivery.engine import batch_key_for
from integration.models import Delivery

# SQLite binds at most 32,766 parameters per statement; PostgreSQL gets every row in one jsonb parameter.
SQLITE_ROWS_PER_STATEMENT = 500


@dataclass
class DeliverySpec:
    """One delivery to store, as create_delivery takes it."""

    connection_id: int
    event: str
    body: dict | list | None
    email: str
    idempotency_key: str
    inbound_event_id: int | None = None
    trigger: str = Delivery.Trigger.EVENT
    order_number: str = ""
    method: str = "POST"
    path: str = "/subscribers"
    notes: Sequence[str] = field(default_factory=tuple)

    def unsaved(self, now: datetime) -> Delivery:
        """The row create_delivery would store for this spec."""
        return Delivery(
            connection_id=self.connection_id,
            event=self.event,
            inbound_event_id=self.inbound_event_id,
            idempotency_key=self.idempotency_key,
            email=self.email or "",
            order_number=str(self.order_number or "")[:64],
            method=self.method.upper(),
            path=self.path,
            request_body=self.body,
            status=Delivery.Status.PENDING,
            trigger=self.trigger,
            next_attempt_at=now,
            notes="\n".join(self.notes),
            created_at=now,
            updated_at=now,
            batch_key=batch_key_for(self.connection_id, self.method, self.path, self.body, self.trigger),
        )


def create_deliveries(specs: Iterable[DeliverySpec]) -> dict[tuple[int, str], int]:
    """Store the specs' deliveries in one statement; a (connection, idempotency key) that exists already, or
    repeats in `specs`, is skipped. Returns {(connection id, key): new id} of the rows inserted, which are
    announced (engine.announce) once the caller's transaction commits."""
    from integration.delivery import engine

    now = timezone.now()
    first: dict[tuple[int, str], DeliverySpec] = {}
    for spec in specs:
        first.setdefault((spec.connection_id, spec.idempotency_key), spec)
    if not first:
        return {}
    rows = [spec.unsaved(now) for spec in first.values()]
    created: dict[tuple[int, str], int] = {}
    db = connections[Delivery.objects.db]
    step = len(rows) if db.vendor == "postgresql" else SQLITE_ROWS_PER_STATEMENT
    with transaction.atomic(savepoint=False):  # inside the caller's transaction: no savepoint round trips
        for start in range(0, len(rows), step):
            created.update(_insert_new(rows[start : start + step]))
        if created:
            ids = sorted(created.values())
            transaction.on_commit(lambda: engine.announce(ids))
    return created


def _insert_new(rows: list[Delivery]) -> dict[tuple[int, str], int]:
    """INSERT ... ON CONFLICT (connection, idempotency_key) DO NOTHING RETURNING: {(connection, key): id}."""
    inserted = insert_new(rows, ("connection_id", "idempotency_key"), ("id", "connection_id", "idempotency_key"))
    return {(connection_id, key): pk for pk, connection_id, key in inserted}
