"""The seam between mapping and delivery: one catalog event for one connection becomes (at most) one Delivery."""

from __future__ import annotations

import hashlib
import uuid

from integration import catalog, tombstones
from integration.delivery import engine as delivery
from integration.delivery.outbox import DeliverySpec
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


class Planning:
    """What planning reads from the database, read once for a chunk of events instead of once per event: each
    connection's flows (one query: the stored ones, the declared defaults for the others) and mapping
    settings, and the tombstones of the chunk's emails."""

    def __init__(self) -> None:
        self._flows: dict[int, dict[str, Flow]] = {}
        self._contexts: dict[int, MappingContext] = {}
        self._forgotten: dict[int, tuple[set[str], dict]] = {}
        self._nobody_forgotten: set[int] = set()
        self._enabled: dict[int, frozenset[str]] = {}

    def flow(self, connection: Connection, event: str) -> Flow:
        """Flow.for_event, from the connection's flows read once."""
        if connection.pk not in self._flows:
            self._flows[connection.pk] = {f.event: f for f in connection.flows.all()}
        stored = self._flows[connection.pk]
        if event not in stored:
            stored[event] = Flow.default(connection, event)
        return stored[event]

    def enabled_events(self, connection: Connection) -> frozenset[str]:
        """Connection.enabled_events, from the same flows (worked out once per connection)."""
        enabled = self._enabled.get(connection.pk)
        if enabled is None:
            enabled = frozenset(name for name in catalog.EVENTS if self.flow(connection, name).enabled)
            self._enabled[connection.pk] = enabled
        return enabled

    def context(self, connection: Connection) -> MappingContext:
        if connection.pk not in self._contexts:
            self._contexts[connection.pk] = MappingContext.from_connection(connection)
        return self._contexts[connection.pk]

    def read_tombstones(self, connection_id: int, payloads: list) -> None:
        """Look up, in one query, who among the emails these payloads hold was forgotten (tombstones.check then
        answers from it for those emails). When no tombstone can apply to the connection, none is looked for
        (nobody_forgotten)."""
        if connection_id not in self._forgotten and not tombstones.anyone_forgotten(connection_id):
            self._nobody_forgotten.add(connection_id)
            self._forgotten[connection_id] = (set(), {})
        if connection_id in self._nobody_forgotten:
            return
        emails = set().union(*(tombstones.emails_in(p) for p in payloads)) if payloads else set()
        known, found = self._forgotten.setdefault(connection_id, (set(), {}))
        found.update(tombstones.forgotten(connection_id, emails - known))
        known.update(emails)

    def nobody_forgotten(self, connection_id: int) -> bool:
        """True when read_tombstones found no tombstone that could apply to this connection's events."""
        return connection_id in self._nobody_forgotten

    def forgotten(self, connection_id: int, emails) -> dict:
        """tombstones.forgotten, answered from what read_tombstones read when it covers every email."""
        emails = {e for e in emails if e}
        known, found = self._forgotten.get(connection_id, (set(), {}))
        if emails <= known:
            return {e: found[e] for e in emails if e in found}
        return tombstones.forgotten(connection_id, emails)


def render(
    connection: Connection,
    event: str,
    payload: dict,
    *,
    flow: Flow | None = None,
    email_override: str | None = None,
    ctx: MappingContext | None = None,
):
    """The exact Rule request for this event (no database writes, no network): used by emit, preview, tests."""
    flow = flow or flow_for(connection, event)
    subscriber = map_event(event, payload, ctx or MappingContext.from_connection(connection))
    if email_override:
        subscriber.email = email_override
    return build_request(event, subscriber, FlowConfig.from_flow(flow))


def plan_event(
    connection: Connection,
    event: str,
    payload: dict,
    *,
    inbound_event: InboundEvent | None = None,
    trigger: str = Delivery.Trigger.EVENT,
    email_override: str | None = None,
    require_enabled: bool = True,
    key: str | None = None,
    planning: Planning | None = None,
) -> DeliverySpec | None:
    """The delivery `payload` as `event` becomes, not stored yet: None when the flow is off; Ignored when it is
    about someone forgotten; PermanentError when the mapping cannot send it."""
    planning = planning or Planning()
    flow = planning.flow(connection, event)
    if require_enabled and not flow.enabled:
        return None
    try:
        request = render(
            connection, event, payload, flow=flow, email_override=email_override, ctx=planning.context(connection)
        )
    except MappingError as exc:
        raise PermanentError(str(exc)) from exc
    if trigger != Delivery.Trigger.TEST and not planning.nobody_forgotten(connection.pk):
        # About someone erased, and from before the erasure (a late webhook, a catch-up): marked ignored.
        occurred = inbound_event.occurred_at if inbound_event else None
        reason = tombstones.check(connection.pk, payload, occurred, request.email, lookup=planning.forgotten)
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
    return DeliverySpec(
        connection_id=connection.pk,
        event=event,
        body=request.body,
        email=request.email,
        order_number=request.order_number,
        idempotency_key=bounded_key(key),
        inbound_event_id=inbound_event.pk if inbound_event else None,
        trigger=trigger,
        notes=request.notes,
    )


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
    spec = plan_event(
        connection,
        event,
        payload,
        inbound_event=inbound_event,
        trigger=trigger,
        email_override=email_override,
        require_enabled=require_enabled,
        key=key,
    )
    if spec is None:
        return None
    return delivery.create_delivery(
        connection=connection,
        event=spec.event,
        body=spec.body,
        email=spec.email,
        order_number=spec.order_number,
        idempotency_key=spec.idempotency_key,
        inbound_event=inbound_event,
        trigger=spec.trigger,
        notes=spec.notes,
    )
