"""Step 2 of an event's flow: turn a stored InboundEvent into deliveries, through a handler per event type.

Handlers register themselves by event type (`@handles("OrderCompleted")`) or for a whole source
(`@handles_source("webhook")`). A handler gets the InboundEvent and returns the status it ends in
(PROCESSED or IGNORED); it raises Ignored(reason) to keep an event that is not to be sent (shown as ignored
with the reason), PermanentError for input that can never succeed (the event is marked failed with that
reason) and any other exception for a passing fault (the event stays `received`, the error
is shown, and the sweeper tries it again, up to MAX_PROCESS_ATTEMPTS).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import transaction
from django.utils import timezone

from integration.models import InboundEvent

log = logging.getLogger(__name__)

Handler = Callable[[InboundEvent], str | None]
MAX_PROCESS_ATTEMPTS = 8

_by_type: dict[str, Handler] = {}
_by_source: dict[str, Handler] = {}


class PermanentError(Exception):
    """The event can never be turned into a delivery (e.g. an order without any email).

    `record`, when given, runs after the handler's work is rolled back: for what must outlive the failure
    (e.g. Centra's error shown on the connection)."""

    def __init__(self, reason: str, *, record: Callable[[], None] | None = None) -> None:
        super().__init__(reason)
        self.record = record


class Ignored(Exception):
    """The event is kept but not sent, for a reason the admin shows with it (e.g. a flow switched off)."""


def handles(*event_types: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for event_type in event_types:
            _by_type[event_type] = fn
        return fn

    return register


def handles_source(source: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _by_source[source] = fn
        return fn

    return register


def handler_for(inbound: InboundEvent) -> Handler | None:
    return _by_type.get(inbound.event_type) or _by_source.get(inbound.source)


def process_inbound_event(inbound_id: int) -> str:
    """Process one inbound event once; safe to call twice (a processed event is left alone)."""
    with transaction.atomic():
        inbound = InboundEvent.objects.select_for_update().filter(pk=inbound_id).first()
        if inbound is None or inbound.status != InboundEvent.Status.RECEIVED:
            return inbound.status if inbound else "missing"
        inbound.process_attempts += 1
        handler = handler_for(inbound)
        try:
            with transaction.atomic():
                if handler is None:
                    status, error = InboundEvent.Status.IGNORED, f"no handler for {inbound.event_type!r}"
                else:
                    status, error = handler(inbound) or InboundEvent.Status.PROCESSED, ""
        except Ignored as exc:
            status, error = InboundEvent.Status.IGNORED, str(exc)
        except PermanentError as exc:
            status, error = InboundEvent.Status.FAILED, str(exc)
            if exc.record is not None:
                exc.record()
        except Exception as exc:  # a passing fault: keep it `received` for the sweeper
            log.warning("processing inbound event %s failed: %s", inbound_id, exc.__class__.__name__)
            error = f"{exc.__class__.__name__}: {exc}"
            status = (
                InboundEvent.Status.FAILED
                if inbound.process_attempts >= MAX_PROCESS_ATTEMPTS
                else InboundEvent.Status.RECEIVED
            )
        inbound.status = status
        inbound.error = error
        if status != InboundEvent.Status.RECEIVED:
            inbound.processed_at = timezone.now()
        inbound.save(update_fields=["status", "error", "processed_at", "process_attempts"])
        return status
