"""A catalog event's payload through its declared mapper and object key (integration/catalog.py)."""

from __future__ import annotations

from typing import Any

from integration import catalog
from integration.mapping.context import MappingContext, MappingError, Subscriber


def map_event(event: str, payload: Any, ctx: MappingContext) -> Subscriber:
    """The Rule subscriber (email, phone, language, fields) for one catalog event; MappingError when impossible.

    Only keys the catalog gives this event are kept, so no mapper can leak a field into the wrong event.
    """
    spec = catalog.EVENTS.get(event)
    if spec is None:
        raise MappingError(f"unknown event {event!r}")
    if not isinstance(payload, dict):
        raise MappingError(f"{event}: the payload is not a JSON object")
    subscriber = spec.mapper(event, payload, ctx)
    subscriber.fields = {k: v for k, v in subscriber.fields.items() if catalog.field_facts(event, k)[0]}
    return subscriber


def object_key(event: str, payload: Any) -> str | None:
    """The object an event is about (`order:10452`, `shipment:3311`, `return:415`, `cart:<email>:<selection>`),
    so each logical event reaches Rule once; None when the event has no natural object."""
    spec = catalog.EVENTS.get(event)
    if spec is None or spec.object_key is None or not isinstance(payload, dict):
        return None
    return spec.object_key(payload)
