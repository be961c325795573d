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
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from integration import retry
from integration.centra.client import CentraUnavailable
from integration.models import InboundEvent
from integration.queue import enqueue

log = logging.getLogger(__name__)

Handler = Callable[..., str | None]
Fetch = Callable[[InboundEvent], Any]

_by_type: dict[str, tuple[Handler, Fetch | None]] = {}
_by_source: dict[str, tuple[Handler, Fetch | None]] = {}

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


def handles_source(source: str, fetch: Fetch | None = None) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _by_source[source] = (fn, fetch)
        return fn

    return register


def handler_for(inbound: InboundEvent) -> Handler | None:
    found = _registered(inbound)
    return found[0] if found else None


def _registered(inbound: InboundEvent) -> tuple[Handler, Fetch | None] | None:
    return _by_type.get(inbound.event_type) or _by_source.get(inbound.source)


# ---------------------------------------------------------------- enqueueing


def enqueue_inbound(inbound_id: int) -> None:
    """Hand one event to the worker; a broker failure is only logged (the sweeper catches up)."""
    enqueue(
        "integration.tasks.process_inbound",
        inbound_id,
        task_name=f"process-inbound-{inbound_id}",
        what=f"inbound event {inbound_id}",
    )


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
    inbound.lease_until = lease_until  # the claim's token: the outcome is written only while it is still ours
    return inbound


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
