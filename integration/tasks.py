"""django-q2 tasks: thin wrappers that take ids (never data) and call the domain functions.

While the worker is stopping (integration/ops/worker.py) a task that has not started hands its ids back to the
broker instead of calling Rule or Centra, so the cluster exits once the calls in flight are done."""

from __future__ import annotations

from integration.delivery import engine as delivery
from integration.ops import worker
from integration.processing.dispatch import CHUNK_SIZE, process_inbound_event, process_inbound_events


def process_inbound(inbound_id: int) -> str:
    """Turn one stored inbound event into deliveries."""
    if worker.stopping():
        return worker.hand_back("integration.tasks.process_inbound", inbound_id)
    with delivery.inline_delivery():  # its deliveries go out from here, after its commit (no queue hop)
        return process_inbound_event(inbound_id)


def deliver(delivery_id: int) -> str:
    """Send one delivery to Rule if it is due and no other worker has it (tasks queued before groups existed)."""
    if worker.stopping():
        return worker.hand_back("integration.tasks.deliver", delivery_id)
    return delivery.deliver(delivery_id)


def deliver_group(connection_id: int, batch_key: str) -> dict[str, int]:
    """Send what is due in one group (a connection's deliveries with one batch key), up to 100 per Rule call."""
    if worker.stopping():
        return worker.hand_back("integration.tasks.deliver_group", connection_id, batch_key)
    return delivery.deliver_group(connection_id, batch_key)


def sweep() -> dict[str, int]:
    """Enqueue what is due (the every-minute schedule)."""
    return delivery.sweep()


def check_alerts(connection_id: int | None = None) -> dict[str, int] | str:
    """Email alert addresses about new incidents (the every-minute schedule: all connections; after a pause: one)."""
    from integration.models import Connection
    from integration.ops import alerts

    if connection_id is None:
        return alerts.check_all()
    conn = Connection.objects.filter(pk=connection_id).first()
    return alerts.check_connection(conn) if conn is not None else "gone"


def process_inbound_batch(inbound_ids: list[int]) -> dict[str, int]:
    """Turn a list of stored inbound events (one request's, or a page of the sweeper's) into deliveries, in
    chunks (dispatch.process_inbound_events: set-based, each event keeping its own outcome). An event left
    `received` by a failure here is picked up again by the sweeper. A stopping worker hands back the events it
    has not started."""
    outcomes: dict[str, int] = {}
    with delivery.inline_delivery():  # their deliveries go out as the batch ends, sharing calls where they can
        for start in range(0, len(inbound_ids), CHUNK_SIZE):
            if worker.stopping():
                worker.hand_back("integration.tasks.process_inbound_batch", list(inbound_ids[start:]))
                outcomes["handed back"] = len(inbound_ids) - start
                break
            for status, count in process_inbound_events(list(inbound_ids[start : start + CHUNK_SIZE])).items():
                outcomes[status] = outcomes.get(status, 0) + count
    return outcomes


def history_step(run_id: int) -> str:
    """One step of a history import (at most one Rule call); it enqueues the next step itself."""
    from integration.history import runner

    return runner.step(run_id)


def history_tick() -> int:
    """Every minute: enqueue running history imports whose step is due (after a stopped worker, a wait, a 429)."""
    from integration.history import runner

    return runner.tick()
