"""Processing of JSON catalog events: the body is already the catalog event's payload, so it goes to emit.

Registered for the whole `events` source: every JSON type the catalog declares is handled here unless a
handler claims the type itself (a plug-in's inbound types, e.g. BackInStockSubscribe). The work is a plan (no
writes): set-based processing (dispatch.process_inbound_events) stores the plans of a whole chunk at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from integration import catalog
from integration.models import InboundEvent
from integration.processing.dispatch import Ignored, handles_source

if TYPE_CHECKING:
    from integration.delivery.outbox import DeliverySpec
    from integration.processing.emit import Planning


def plan_json_catalog_event(inbound: InboundEvent, planning: Planning) -> DeliverySpec | None:
    """The delivery for one JSON catalog event, as the event the connection's mode and flows make it
    (catalog.json_event_target: a completed return may go as RefundCompleted or ReturnCompleted); Ignored, with
    the reason, when its flow is off, OrderPlaced arrives in auto-confirm mode, or the type is no longer
    declared (e.g. its plug-in was removed). Decided again here: the settings may have changed since storing."""
    # emit pulls in the mapping and delivery modules; importing it here keeps app loading (this module is
    # imported from AppConfig.ready) independent of them.
    from .emit import plan_event

    connection = inbound.connection
    payload = inbound.payload if isinstance(inbound.payload, dict) else {}
    event, reason = catalog.json_event_target(
        inbound.event_type,
        payload,
        manual_confirmation=connection.manual_confirmation,
        enabled=planning.enabled_events(connection),
    )
    if event is None:
        raise Ignored(reason)
    return plan_event(connection, event, inbound.payload, inbound_event=inbound, planning=planning)


@handles_source(InboundEvent.Source.EVENTS, plan=plan_json_catalog_event)
def process_json_catalog_event(inbound: InboundEvent) -> str:
    """Map and store the delivery for one JSON catalog event (the plan above, stored on its own)."""
    from integration.delivery.outbox import create_deliveries

    from .emit import Planning

    spec = plan_json_catalog_event(inbound, Planning())
    if spec is not None:
        create_deliveries([spec])
    return InboundEvent.Status.PROCESSED
