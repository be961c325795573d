"""Step 2 of an event's flow: turn a stored InboundEvent into deliveries, through a handler per event type.

Handlers register themselves by event type (`@handles("OrderCompleted")`) or for a whole source
(`@handles_source("webhook")`). A handler gets the InboundEvent and returns the status it ends in (PROCESSED or
IGNORED); it raises Ignored(reason) to keep an event that is not to be sent (shown as ignored with the reason),
PermanentError for input that can never succeed (the event is marked failed with that reason) and any other
exception for a passing fault.

A handler that needs Centra names a `fetch` step: `@handles("DisplayItems", fetch=ask_centra)`. Processing then
runs as deliveries are sent (no network call inside a transaction):
1. claim the event with a conditional UPDATE (a lease; two workers never process it at once);
2. `fetch(inbound)` with no transaction open: Centra is asked, the database is only read;
3. one short transaction: the handler gets what was fetched (`handler(inbound, fetched)`), stores deliveries,
   and the event's outcome is written with them, if the claim is still this worker's.

A passing fault (Centra down, a timeout, a database error) keeps the event `received` and due again on the retry
policy's schedule (integration/retry.py: 30 s ... 12 h, about 21 hours in all, as deliveries); Centra's 429 waits
for its Retry-After without using the budget. The sweeper enqueues what is due.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from integration import retry
from integration.centra.client import CentraUnavailable
from integration.models import Connection, InboundEvent
from integration.queue import enqueue

log = logging.getLogger(__name__)

Handler = Callable[..., str | None]
Fetch = Callable[[InboundEvent], Any]
Plan = Callable[..., Any]

_by_type: dict[str, tuple[Handler, Fetch | None]] = {}
_by_source: dict[str, tuple[Handler, Fetch | None]] = {}
# Handlers whose work is a plan (plan(inbound, planning) -> DeliverySpec | None, no writes): a chunk of their
# events is stored set-based (process_inbound_events).
_plans: dict[Handler, Plan] = {}

RECEIVED = InboundEvent.Status.RECEIVED


class PermanentError(Exception):
    """The event can never be turned into a delivery (e.g. an order without any email).

    `record`, when given, runs in the transaction that marks the event failed: for what must outlive the failure
    (e.g. Centra's error shown on the connection)."""

    def __init__(self, reason: str, *, record: Callable[[], None] | None = None) -> None:
        super().__init__(reason)
        self.record = record


class Ignored(Exception):
    """The event is kept but not sent, for a reason the admin shows with it (e.g. a flow switched off)."""


class _ClaimLost(Exception):
    """The lease ran out before the outcome was recorded and another worker took the event."""


def handles(*event_types: str, fetch: Fetch | None = None) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for event_type in event_types:
            _by_type[event_type] = (fn, fetch)
        return fn

    return register


def handles_source(source: str, fetch: Fetch | None = None, plan: Plan | None = None) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _by_source[source] = (fn, fetch)
        if plan is not None:
            _plans[fn] = plan
        return fn

    return register


def handler_for(inbound: InboundEvent) -> Handler | None:
    found = _registered(inbound)
    return found[0] if found else None


def _registered(inbound: InboundEvent) -> tuple[Handler, Fetch | None] | None:
    return _by_type.get(inbound.event_type) or _by_source.get(inbound.source)


# ---------------------------------------------------------------- enqueueing


BATCH_TASK = "integration.tasks.process_inbound_batch"
SWEEP_TASK_SIZE = 500  # the sweeper hands the due events over in lists of this many ids, one task each
CHUNK_SIZE = 200  # a task processes its events in chunks of this many: one claim, one insert, one commit each


def enqueue_inbound(inbound_id: int) -> None:
    """Hand one event to the worker; a broker failure is only logged (the sweeper catches up)."""
    enqueue(
        "integration.tasks.process_inbound",
        inbound_id,
        task_name=f"process-inbound-{inbound_id}",
        what=f"inbound event {inbound_id}",
    )


def enqueue_inbound_batch(inbound_ids: list[int], **options: Any) -> None:
    """Hand a list of events to the worker as one task; a broker failure is only logged (the sweeper catches up)."""
    enqueue(BATCH_TASK, list(inbound_ids), what=f"{len(inbound_ids)} inbound event(s)", **options)


def enqueue_due_inbound(ids: Iterator[int]) -> int:
    """The sweeper's part for inbound events: the due ids in lists of SWEEP_TASK_SIZE, one task each."""
    count, page = 0, []
    for pk in ids:
        page.append(pk)
        count += 1
        if len(page) == SWEEP_TASK_SIZE:
            enqueue_inbound_batch(page)
            page = []
    if page:
        enqueue_inbound_batch(page)
    return count


# ---------------------------------------------------------------- processing


def process_inbound_event(inbound_id: int) -> str:
    """Process one inbound event once if it is due and no other worker has it; returns its status afterwards
    ("not due" while it waits for a retry or another worker holds it)."""
    inbound = _claim(inbound_id)
    if inbound is None:
        status = InboundEvent.objects.filter(pk=inbound_id).values_list("status", flat=True).first()
        return "missing" if status is None else ("not due" if status == RECEIVED else status)
    try:
        return _process(inbound)
    except _ClaimLost:  # the lease ran out meanwhile and another worker has the event now
        return "not due"


def _process(inbound: InboundEvent) -> str:
    """Fetch (no transaction), then record the handler's work and the outcome in one transaction."""
    registered = _registered(inbound)
    try:
        if registered is None:
            return _record(inbound, lambda: InboundEvent.Status.IGNORED, f"no handler for {inbound.event_type!r}")
        handler, fetch = registered
        if fetch is None:
            return _record(inbound, lambda: handler(inbound) or InboundEvent.Status.PROCESSED)
        fetched = fetch(inbound)  # Centra is asked here, with no transaction open
        return _record(inbound, lambda: handler(inbound, fetched) or InboundEvent.Status.PROCESSED)
    except _ClaimLost:
        raise
    except Ignored as exc:
        return _record(inbound, lambda: InboundEvent.Status.IGNORED, str(exc))
    except PermanentError as exc:
        permanent = exc  # the name `exc` is unbound once the except block ends
        return _record(inbound, lambda: _failed(permanent), str(permanent))
    except CentraUnavailable as exc:
        log.warning("processing inbound event %s: %s", inbound.pk, exc)
        if exc.rate_limited:  # Centra's 429: wait for its Retry-After, without using the budget
            return _retry(inbound, str(exc), retry.parse_retry_after(exc.retry_after, timezone.now()), counted=False)
        later = retry.parse_retry_after(exc.retry_after, timezone.now()) if exc.retry_after else None
        return _retry(inbound, str(exc), later, counted=True)
    except Exception as exc:  # a passing fault: due again on the retry schedule
        log.warning("processing inbound event %s failed: %s", inbound.pk, exc.__class__.__name__)
        return _retry(inbound, f"{exc.__class__.__name__}: {exc}", None, counted=True)


def process_inbound_events(inbound_ids: list[int]) -> dict[str, int]:
    """Process a list of events, set-based: claimed together with one lease (as _claim does for one), planned
    one by one, and the plans of a chunk stored in one transaction (one INSERT for the deliveries, one UPDATE
    per outcome and reason). Events without a plan (a Centra fetch, a plug-in's own writes) go one by one as in
    process_inbound_event. Each event keeps its own outcome: ignored with its reason, failed with its reason,
    due again on the retry schedule; one bad event never fails the others. Returns {status: count}."""
    outcomes: Counter[str] = Counter()
    claimed = _claim_many(inbound_ids)
    outcomes["not due"] += len(set(inbound_ids)) - len(claimed)
    planned = []
    for inbound in claimed:
        registered = _registered(inbound)
        plan = _plans.get(registered[0]) if registered is not None and registered[1] is None else None
        if plan is None:
            try:
                outcomes[_process(inbound)] += 1
            except _ClaimLost:
                outcomes["not due"] += 1
        else:
            planned.append((inbound, plan))
    if planned:
        outcomes.update(_process_planned(planned))
    return {status: count for status, count in outcomes.items() if count}


def _claim_many(inbound_ids: list[int]) -> list[InboundEvent]:
    """Take the due ones of these events for this worker, with one lease (the claim's token) and one attempt
    counted each; returns them loaded, in id order."""
    now = timezone.now()
    lease_until = now + retry.LEASE
    claimed = (
        InboundEvent.objects.due(now)
        .filter(pk__in=inbound_ids)
        .update(lease_until=lease_until, process_attempts=F("process_attempts") + 1)
    )
    if not claimed:
        return []
    events = list(InboundEvent.objects.filter(pk__in=inbound_ids, lease_until=lease_until).order_by("pk"))
    _processing_for({inbound.connection_id for inbound in events})
    # Their connections read once each (not once per event: a connection's secrets are decrypted on reading).
    connections = Connection.objects.in_bulk({inbound.connection_id for inbound in events})
    for inbound in events:
        inbound.lease_until = lease_until
        inbound.connection = connections[inbound.connection_id]
    return events


def _process_planned(planned: list[tuple[InboundEvent, Plan]]) -> Counter[str]:
    """Plan every event (no writes), then store the plans and the outcomes in one transaction."""
    from integration.delivery.outbox import create_deliveries
    from integration.processing.emit import Planning

    planning = Planning()
    by_connection: dict[int, list] = {}
    for inbound, _ in planned:
        by_connection.setdefault(inbound.connection_id, []).append(inbound.payload)
    for connection_id, payloads in by_connection.items():
        planning.read_tombstones(connection_id, payloads)

    outcomes: Counter[str] = Counter()
    specs, settled, failing = [], [], []  # settled: (inbound, status, error)
    for inbound, plan in planned:
        try:
            spec = plan(inbound, planning)
        except Ignored as exc:
            settled.append((inbound, InboundEvent.Status.IGNORED, str(exc)))
        except PermanentError as exc:
            if exc.record is not None:  # it must be written with the outcome: as process_inbound_event does
                failing.append(inbound)
            else:
                settled.append((inbound, InboundEvent.Status.FAILED, str(exc)))
        except Exception:  # a passing fault: this event alone, as process_inbound_event handles it
            failing.append(inbound)
        else:
            if spec is not None:
                specs.append(spec)
            settled.append((inbound, InboundEvent.Status.PROCESSED, ""))
    try:
        outcomes.update(_store_planned(settled, specs, create_deliveries))
    except DatabaseError as exc:  # e.g. one row a column refuses: each event on its own, so only it fails
        log.warning("storing %s planned event(s) failed (%s): one by one", len(settled), exc.__class__.__name__)
        failing.extend(inbound for inbound, _, _ in settled)
    for inbound in failing:
        try:
            outcomes[_process(inbound)] += 1
        except _ClaimLost:
            outcomes["not due"] += 1
    return outcomes


def _store_planned(settled: list, specs: list, create_deliveries: Callable) -> Counter[str]:
    """One transaction: the outcomes of the events this worker still holds, and their deliveries.

    The outcome UPDATEs come first and only touch rows whose lease is still this worker's; when they all are
    (the usual case) the deliveries follow in the same transaction. When a lease ran out and another worker took
    an event meanwhile, the transaction is rolled back and redone with the rows still held locked first."""
    if not settled:
        return Counter()
    try:
        return _store_outcomes(settled, specs, create_deliveries, locked=None)
    except _ClaimLost:
        lease_until = settled[0][0].lease_until
        with transaction.atomic():
            ids = [inbound.pk for inbound, _, _ in settled]
            held = InboundEvent.objects.select_for_update().filter(pk__in=ids, lease_until=lease_until)
            return _store_outcomes(settled, specs, create_deliveries, locked=set(held.values_list("pk", flat=True)))


def _store_outcomes(settled: list, specs: list, create_deliveries: Callable, locked: set[int] | None) -> Counter:
    outcomes: Counter[str] = Counter()
    lease_until = settled[0][0].lease_until
    mine = [(inbound, status, error) for inbound, status, error in settled if locked is None or inbound.pk in locked]
    now = timezone.now()
    with transaction.atomic():
        groups: dict[tuple[str, str], list[int]] = {}
        for inbound, status, error in mine:
            groups.setdefault((status, error), []).append(inbound.pk)
        for (status, error), ids in groups.items():
            updated = InboundEvent.objects.filter(pk__in=ids, lease_until=lease_until).update(
                lease_until=None, status=status, error=error, processed_at=now
            )
            if updated != len(ids):
                raise _ClaimLost(ids)
            outcomes[status] += updated
        held = {inbound.pk for inbound, _, _ in mine}
        create_deliveries([spec for spec in specs if spec.inbound_event_id in held])
    for inbound, status, error in mine:
        inbound.status, inbound.error, inbound.processed_at, inbound.lease_until = status, error, now, None
    outcomes["not due"] += len(settled) - len(mine)
    return outcomes


def _claim(inbound_id: int) -> InboundEvent | None:
    """Take the event for this worker (a lease, one attempt counted) if it is due; None when it is not ours."""
    now = timezone.now()
    lease_until = now + retry.LEASE
    claimed = (
        InboundEvent.objects.due(now)
        .filter(pk=inbound_id)
        .update(lease_until=lease_until, process_attempts=F("process_attempts") + 1)
    )
    if not claimed:
        return None
    inbound = InboundEvent.objects.select_related("connection").get(pk=inbound_id)
    _processing_for({inbound.connection_id})
    inbound.lease_until = lease_until  # the claim's token: the outcome is written only while it is still ours
    return inbound


def _processing_for(connection_ids: set[int]) -> None:
    """Tell the delivery engine whose events this task processes (see engine.inline_delivery)."""
    from integration.delivery import engine

    engine.processing_for(connection_ids)


def _failed(exc: PermanentError) -> str:
    if exc.record is not None:
        exc.record()
    return InboundEvent.Status.FAILED


def _record(inbound: InboundEvent, outcome: Callable[[], str], error: str = "") -> str:
    """Run the handler's writes and store the event's outcome in one transaction, if the claim is still ours."""
    with transaction.atomic():
        status = outcome()
        _write(inbound, status=status, error=error, processed_at=timezone.now())
    return status


def _retry(inbound: InboundEvent, error: str, until: datetime | None, *, counted: bool) -> str:
    """Keep the event `received` and due again later (or fail it once the budget is spent)."""
    now = timezone.now()
    attempts = inbound.process_attempts if counted else max(inbound.process_attempts - 1, 0)
    if counted and retry.gives_up(attempts):
        status, error = InboundEvent.Status.FAILED, f"gave up after {attempts} attempts: {error}"
        fields = {"status": status, "error": error, "processed_at": now}
    else:
        if counted:  # the schedule's step, or the partner's Retry-After when that is later
            until = max(until or now, now + retry.retry_delay(attempts))
        status = RECEIVED
        fields = {"status": status, "error": error, "next_attempt_at": until, "process_attempts": attempts}
    try:
        with transaction.atomic():
            _write(inbound, **fields)
    except _ClaimLost:
        return "not due"
    return status


def _write(inbound: InboundEvent, **fields) -> None:
    """Store the outcome and release the claim; _ClaimLost (rolling back the caller's transaction) when the
    lease expired and another worker has claimed the event since."""
    updated = InboundEvent.objects.filter(pk=inbound.pk, lease_until=inbound.lease_until).update(
        lease_until=None, **fields
    )
    if not updated:
        raise _ClaimLost(inbound.pk)
    for name, value in fields.items():
        setattr(inbound, name, value)
    inbound.lease_until = None
