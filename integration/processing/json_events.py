"""Processing of JSON catalog events: the body is already the catalog event's payload, so it goes to emit."""

from __future__ import annotations

from integration import catalog
from integration.models import InboundEvent
from integration.processing.dispatch import handles


@handles(*catalog.JSON_EVENT_TYPES)
def process_json_catalog_event(inbound: InboundEvent) -> str:
    """Map and store the delivery for one JSON catalog event; IGNORED when its flow has been switched off."""
    # emit pulls in the mapping and delivery modules; importing it here keeps app loading (this module is
    # imported from AppConfig.ready) independent of them.
    from .emit import emit_event, flow_for

    if not flow_for(inbound.connection, inbound.event_type).enabled:
        return InboundEvent.Status.IGNORED
    emit_event(inbound.connection, inbound.event_type, inbound.payload, inbound_event=inbound)
    return InboundEvent.Status.PROCESSED
