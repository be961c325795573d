"""The seam between mapping and delivery: one catalog event for one connection becomes (at most) one Delivery."""

from __future__ import annotations

import hashlib
import uuid

from integration import tombstones
from integration.delivery import engine as delivery
from integration.mapping import FlowConfig, MappingContext, MappingError, build_request, map_event, object_key
from integration.models import Connection, Delivery, Flow, InboundEvent
from integration.processing.dispatch import Ignored, PermanentError


def flow_for(connection: Connection, event: str) -> Flow:
    """The connection's flow for `event`; its catalog defaults when none is stored yet. Reads only."""
    return Flow.for_event(connection, event)


MAX_KEY_LENGTH = 255  # Delivery.idempotency_key


def bounded_key(key: str) -> str:
    """`key` as it fits the column: a long one (a cart key holds an email and a selection id) keeps a readable
    start and ends in the hash of the whole key, so two long keys never collide by sharing their first part."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return f"{key[:150]}...sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def render(
    connection: Connection,
    event: str,
    payload: dict,
    *,
    flow: Flow | None = None,
    email_override: str | None = None,
):
    """The exact Rule request for this event (no database writes, no network): used by emit, preview, tests."""
    flow = flow or flow_for(connection, event)
    subscriber = map_event(event, payload, MappingContext.from_connection(connection))
    if email_override:
        subscriber.email = email_override
    return build_request(event, subscriber, FlowConfig.from_flow(flow))


def emit_event(
    connection: Connection,
    event: str,
    payload: dict,
    *,
    inbound_event: InboundEvent | None = None,
    trigger: str = Delivery.Trigger.EVENT,
    email_override: str | None = None,
    require_enabled: bool = True,
    key: str | None = None,
) -> Delivery | None:
    """Map `payload` as `event` and store a Delivery (sent on commit). None when the flow is off or the
    event was already delivered for this object (each logical event reaches Rule once)."""
    flow = flow_for(connection, event)
    if require_enabled and not flow.enabled:
        return None
    try:
        request = render(connection, event, payload, flow=flow, email_override=email_override)
    except MappingError as exc:
        raise PermanentError(str(exc)) from exc
    if trigger != Delivery.Trigger.TEST:
        # About someone erased, and from before the erasure (a late webhook, a catch-up): marked ignored.
        occurred = inbound_event.occurred_at if inbound_event else None
        reason = tombstones.check(connection.pk, payload, occurred, request.email)
        if reason:
            raise Ignored(reason)
    if trigger == Delivery.Trigger.TEST:
        key = f"test:{event}:{uuid.uuid4().hex}"
    elif key is None:
        # The natural object (order, shipment, return, cart...) when there is one, else the inbound event.
        natural = object_key(event, payload)
        if natural is None:
            natural = f"inbound:{inbound_event.dedupe_key}" if inbound_event else f"adhoc:{uuid.uuid4().hex}"
        key = f"{event}:{natural}"
    return delivery.create_delivery(
        connection=connection,
        event=event,
        body=request.body,
        email=request.email,
        order_number=request.order_number,
        idempotency_key=bounded_key(key),
        inbound_event=inbound_event,
        trigger=trigger,
        notes=request.notes,
    )
