"""Centra documents to Rule subscriber requests: pure functions, no database, no network.

`map_event(event, payload, ctx)` gives a Subscriber for a catalog event; `build_request(event, subscriber,
flow_config)` turns it into the `POST /subscribers` body with the flow's tags, automation and excluded fields,
and Rule's limits enforced. See docs/internals.md and the field catalog (integration/catalog.py).
"""

from integration.mapping.context import FlowConfig, MappingContext, MappingError, Subscriber
from integration.mapping.events import map_event, object_key
from integration.mapping.request import (
    RuleRequest,
    build_batch_request,
    build_import_request,
    build_request,
    subscriber_body,
)

__all__ = [
    "FlowConfig",
    "MappingContext",
    "MappingError",
    "RuleRequest",
    "Subscriber",
    "build_batch_request",
    "build_import_request",
    "build_request",
    "map_event",
    "object_key",
    "subscriber_body",
]
