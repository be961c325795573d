"""Processing of JSON catalog events: the body is already the catalog event's payload, so it goes to emit.

Registered for the whole `events` source: every JSON type the catalog declares is handled here unless a
handler claims the type itself (a plug-in's inbound types, e.g. BackInStockSubscribe).
"""

from __future__ import annotations

from integration import catalog
from integration.models import InboundEvent
from integration.processing.dispatch import handles_source


@handles_source(InboundEvent.Source.EVENTS)
def process_json_catalog_event(inbound: InboundEvent) -> str:
    """Map and store the delivery for one JSON catalog event; IGNORED when its flow has been switched off (or
    the type is no longer declared, e.g. its plug-in was removed)."""
    # emit pulls in the mapping and delivery modules; importing it here keeps app loading (this module is
    # imported from AppConfig.ready) independent of them.
    from .emit import emit_event, flow_for

    spec = catalog.EVENTS.get(inbound.event_type)
    if spec is None or not spec.accepts_json:
        return InboundEvent.Status.IGNORED
    if not flow_for(inbound.connection, inbound.event_type).enabled:
        return InboundEvent.Status.IGNORED
    emit_event(inbound.connection, inbound.event_type, inbound.payload, inbound_event=inbound)
    return InboundEvent.Status.PROCESSED
