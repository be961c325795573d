"""Step 2 for Centra's thin webhooks: fetch the object named by the webhook, decide which catalog events its
current state means, and emit each one once.

Which events a state means is declared with each event (`CentraTrigger` in integration/events.py, e.g.
OrderCompleted: auto mode, any status but CANCELLED). The decision here adds what was already delivered for the
object, so repeated and reordered webhooks give each event once and a stale state is never sent after a newer
one (an event's `superseded_by`), and leaves out flows that are off (field-catalog.md, events table).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from integration import catalog
from integration.centra.client import CentraClient, CentraNotConfigured, CentraQueryError
from integration.mapping import object_key
from integration.models import Connection, Delivery, HistoryItem, InboundEvent
from integration.processing.dispatch import PermanentError, handles_source
from integration.processing.emit import emit_event, flow_for

log = logging.getLogger(__name__)

ORDER, SHIPMENT, RETURN, CUSTOMER = "order", "shipment", "return", "customer"


@dataclass
class Decision:
    """What one object's current state means: the catalog events due, and why others are not."""

    events: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def candidates(connection: Connection, kind: str, doc: dict, action: str = "") -> list[str]:
    """The catalog events this object's state means for this connection's mode and flows (declared triggers),
    before looking at what was sent."""
    specs = catalog.centra_events(kind)
    if not specs:
        return []
    settings = {"manual_confirmation": connection.manual_confirmation, "enabled": connection.enabled_events()}
    return [spec.name for spec in specs if spec.centra.fires(doc, action=action, **settings)]


def superseded_by(event: str) -> tuple[str, ...]:
    spec = catalog.EVENTS.get(event)
    return spec.centra.superseded_by if spec is not None and spec.centra is not None else ()


def payload_for(kind: str, doc: dict) -> dict:
    """The JSON event body (docs/internals.md) for a fetched Centra object: `{"<kind>": doc}`."""
    return {kind: doc}


def imported_events(connection: Connection, keys: list[str]) -> set[str]:
    """The events among `keys` that a history import sent (or is sending): they count as delivered, so an imported
    order triggers its live flow only for what happens to it afterwards (integration/history)."""
    return set(
        HistoryItem.objects.filter(connection=connection, key__in=keys, status__in=HistoryItem.COVERING).values_list(
            "event", flat=True
        )
    )


def decide(connection: Connection, kind: str, doc: dict, action: str = "") -> Decision:
    """The events due for this object now: its state's events, less those sent, stale, or switched off."""
    due = candidates(connection, kind, doc, action)
    decision = Decision()
    if not due:
        return decision
    payload = payload_for(kind, doc)
    natural = object_key(due[0], payload)
    related = set(due)
    for event in due:
        related.update(superseded_by(event))
    keys = [f"{e}:{natural}" for e in related]
    existing = (
        set(Delivery.objects.filter(connection=connection, idempotency_key__in=keys).values_list("event", flat=True))
        | imported_events(connection, keys)
        if natural
        else set()
    )
    for event in due:
        newer = [e for e in superseded_by(event) if e in existing]
        if event in existing:
            decision.skipped[event] = "already delivered"
        elif newer:
            decision.skipped[event] = f"stale: {newer[0]} already delivered"
        elif not flow_for(connection, event).enabled:
            decision.skipped[event] = "flow off"
        else:
            decision.events.append(event)
    return decision


def apply_state(
    connection: Connection,
    kind: str,
    doc: dict,
    *,
    inbound: InboundEvent | None,
    trigger: str,
    action: str = "",
    decision: Decision | None = None,
) -> list[Delivery]:
    """Emit every event due for this object's current state; the deliveries stored (none when all were sent)."""
    decision = decision or decide(connection, kind, doc, action)
    payload = payload_for(kind, doc)
    stored = []
    for event in decision.events:
        delivery = emit_event(connection, event, payload, inbound_event=inbound, trigger=trigger)
        if delivery is not None:
            stored.append(delivery)
    return stored


def client_for(connection: Connection) -> CentraClient:
    """The connection's Centra client; PermanentError without a token or URL (nothing to fetch with)."""
    try:
        return CentraClient.for_connection(connection)
    except CentraNotConfigured as exc:
        raise PermanentError(str(exc)) from None


def fetch(client: CentraClient, kind: str, ref: str) -> dict | None:
    """The current document of one Centra object (for orders, `ref` is the order number)."""
    if kind == ORDER:
        return client.order_by_number(ref)
    if kind == SHIPMENT:
        return client.shipment_by_id(ref)
    if kind == RETURN:
        return client.return_by_id(ref)
    return client.customer_by_id(ref)


def record_centra_error(connection: Connection, message: str) -> None:
    """Show Centra's last refusal on the connection (the admin shows it)."""
    Connection.objects.filter(pk=connection.pk).update(centra_last_error=message[:2000])


def clear_centra_error(connection: Connection) -> None:
    if connection.centra_last_error:
        Connection.objects.filter(pk=connection.pk).update(centra_last_error="")
        connection.centra_last_error = ""


def fetch_current(connection: Connection, kind: str, ref: str) -> dict:
    """Fetch one object, turning Centra's refusals into PermanentError (recorded on the connection).

    CentraUnavailable passes through: the event stays `received`, due again on the retry schedule."""
    client = client_for(connection)
    try:
        doc = fetch(client, kind, ref)
    except CentraQueryError as exc:
        message = str(exc)
        raise PermanentError(message, record=lambda: record_centra_error(connection, message)) from None
    clear_centra_error(connection)
    if doc is None:
        raise PermanentError(f"Centra has no {kind} {ref}")
    return doc


def _may_fire(kind: str, action: str) -> bool:
    """True when some catalog event of this Centra kind can fire on this webhook action."""
    return any(spec.centra.actions is None or action in spec.centra.actions for spec in catalog.centra_events(kind))


def _object_ref(inbound: InboundEvent) -> str:
    ref = inbound.object_ref or str((inbound.payload or {}).get("id") or "")
    if not ref.strip().isdigit():
        raise PermanentError(f"no usable {inbound.event_type} id in the webhook ({ref!r})")
    return ref.strip()


def fetch_centra_object(inbound: InboundEvent) -> dict | None:
    """The webhook's object as Centra has it now (no transaction open); None when the webhook cannot mean a
    catalog event (no query made)."""
    kind = inbound.event_type
    if not _may_fire(kind, _action(inbound)):
        # No declared event can follow from this kind and action: a Centra query would be for nothing.
        return None
    return fetch_current(inbound.connection, kind, _object_ref(inbound))


def _action(inbound: InboundEvent) -> str:
    return str((inbound.payload or {}).get("action") or "")


@handles_source("webhook", fetch=fetch_centra_object)
@handles_source("reconcile", fetch=fetch_centra_object)
def process_centra_object(inbound: InboundEvent, doc: dict | None) -> str:
    """Emit the events the object's current state (fetched by fetch_centra_object) means."""
    if doc is None:
        return InboundEvent.Status.IGNORED
    kind, action, connection = inbound.event_type, _action(inbound), inbound.connection
    trigger = Delivery.Trigger.RECONCILE if inbound.source == InboundEvent.Source.RECONCILE else Delivery.Trigger.EVENT
    decision = decide(connection, kind, doc, action)
    apply_state(connection, kind, doc, inbound=inbound, trigger=trigger, action=action, decision=decision)
    if decision.skipped:
        log.info("inbound %s: %s", inbound.pk, ", ".join(f"{e} {why}" for e, why in decision.skipped.items()))
    return InboundEvent.Status.PROCESSED
