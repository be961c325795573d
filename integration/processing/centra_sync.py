"""Step 2 for Centra's thin webhooks: fetch the object named by the webhook, decide which catalog events its
current state means, and emit each one once.

The decision reads the object's *current* state (fetched now, never the state a webhook was sent for) and the
deliveries already stored for it, so repeated and reordered webhooks give each event once and a stale state is
never sent after a newer one (field-catalog.md, events table):

- order: CANCELLED -> OrderCancellation. Manual-confirmation mode: PENDING -> OrderPlaced (not once
  OrderCompleted or OrderCancellation exists), CONFIRMED/PROCESSING/SHIPPED -> OrderCompleted. Auto mode: any
  other status -> OrderCompleted. OrderCompleted never follows an OrderCancellation.
- shipment with isShipped -> OrderShipped.
- completed return -> RefundCompleted when its grandTotal is above zero, else ReturnCompleted (one of the two).
- customer `create` -> CustomerRegistered.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from integration.centra import queries
from integration.centra.client import CentraClient, CentraNotConfigured, CentraQueryError
from integration.mapping import object_key
from integration.models import Connection, Delivery, InboundEvent
from integration.processing.dispatch import PermanentError, handles_source
from integration.processing.emit import emit_event, flow_for

log = logging.getLogger(__name__)

ORDER, SHIPMENT, RETURN, CUSTOMER = "order", "shipment", "return", "customer"
KINDS = (ORDER, SHIPMENT, RETURN, CUSTOMER)
MANUAL_COMPLETED_STATUSES = frozenset({"CONFIRMED", "PROCESSING", "SHIPPED"})
# The events that may follow each other for one order, and which ones make an earlier state stale.
SUPERSEDED_BY = {
    "OrderPlaced": ("OrderCompleted", "OrderCancellation"),
    "OrderCompleted": ("OrderCancellation",),
    "RefundCompleted": ("ReturnCompleted",),
    "ReturnCompleted": ("RefundCompleted",),
}
PAYLOAD_KEY = {ORDER: "order", SHIPMENT: "shipment", RETURN: "return", CUSTOMER: "customer"}


@dataclass
class Decision:
    """What one object's current state means: the catalog events due, and why others are not."""

    events: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def events_for_order(order: dict, manual_confirmation: bool) -> list[str]:
    """The catalog events an order's status means, before looking at what was already sent."""
    status = str(order.get("status") or "").upper()
    if status == "CANCELLED":
        return ["OrderCancellation"]
    if manual_confirmation:
        if status == "PENDING":
            return ["OrderPlaced"]
        return ["OrderCompleted"] if status in MANUAL_COMPLETED_STATUSES else []
    return ["OrderCompleted"] if status else []


def events_for_shipment(shipment: dict) -> list[str]:
    """OrderShipped once the shipment is shipped."""
    return ["OrderShipped"] if shipment.get("isShipped") is True else []


def events_for_return(ret: dict) -> list[str]:
    """RefundCompleted or ReturnCompleted once the return is completed, by the refunded value."""
    if str(ret.get("returnStatus") or "").upper() != queries.RETURN_COMPLETED_STATUS:
        return []
    refunded = (ret.get("grandTotal") or {}).get("value") or 0
    return ["RefundCompleted" if float(refunded) > 0 else "ReturnCompleted"]


def payload_for(kind: str, doc: dict) -> dict:
    """The JSON event body (docs/internals.md) for a fetched Centra object."""
    return {PAYLOAD_KEY[kind]: doc}


def decide(connection: Connection, kind: str, doc: dict, action: str = "") -> Decision:
    """The events due for this object now: its state's events, less those sent, stale, or switched off."""
    if kind == ORDER:
        candidates = events_for_order(doc, connection.manual_confirmation)
    elif kind == SHIPMENT:
        candidates = events_for_shipment(doc)
    elif kind == RETURN:
        candidates = events_for_return(doc)
    else:
        candidates = ["CustomerRegistered"] if action == "create" else []
    decision = Decision()
    if not candidates:
        return decision
    payload = payload_for(kind, doc)
    natural = object_key(candidates[0], payload)
    related = set(candidates)
    for event in candidates:
        related.update(SUPERSEDED_BY.get(event, ()))
    existing = (
        set(
            Delivery.objects.filter(
                connection=connection, idempotency_key__in=[f"{e}:{natural}" for e in related]
            ).values_list("event", flat=True)
        )
        if natural
        else set()
    )
    for event in candidates:
        newer = [e for e in SUPERSEDED_BY.get(event, ()) if e in existing]
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

    CentraUnavailable passes through: the event stays `received` and the sweeper tries again."""
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


def _object_ref(inbound: InboundEvent) -> str:
    ref = inbound.object_ref or str((inbound.payload or {}).get("id") or "")
    if not ref.strip().isdigit():
        raise PermanentError(f"no usable {inbound.event_type} id in the webhook ({ref!r})")
    return ref.strip()


@handles_source("webhook")
@handles_source("reconcile")
def process_centra_object(inbound: InboundEvent) -> str:
    """Fetch the webhook's object from Centra and emit the events its current state means."""
    kind = inbound.event_type
    if kind not in KINDS:
        return InboundEvent.Status.IGNORED
    action = str((inbound.payload or {}).get("action") or "")
    if kind == CUSTOMER and action != "create":
        # Only a new account is a catalog event; an update would cost a Centra query for nothing.
        return InboundEvent.Status.IGNORED
    connection = inbound.connection
    doc = fetch_current(connection, kind, _object_ref(inbound))
    trigger = Delivery.Trigger.RECONCILE if inbound.source == InboundEvent.Source.RECONCILE else Delivery.Trigger.EVENT
    decision = decide(connection, kind, doc, action)
    apply_state(connection, kind, doc, inbound=inbound, trigger=trigger, action=action, decision=decision)
    if decision.skipped:
        log.info("inbound %s: %s", inbound.pk, ", ".join(f"{e} {why}" for e, why in decision.skipped.items()))
    return InboundEvent.Status.PROCESSED
