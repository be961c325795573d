"""Which mapper handles which catalog event, and which object an event is about (its idempotency key)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from integration import catalog
from integration.mapping.alerts import map_product_alert
from integration.mapping.context import MappingContext, MappingError, Subscriber
from integration.mapping.customers import map_customer, map_newsletter
from integration.mapping.gift_certificates import map_gift_certificate
from integration.mapping.orders import (
    map_order,
    map_order_created,
    map_order_shipped,
    selection_id,
    shipment_order,
    valid_email,
)
from integration.mapping.returns import map_return
from integration.mapping.values import as_dict, dig, first_text

Mapper = Callable[[str, dict, MappingContext], Subscriber]

MAPPERS: dict[str, Mapper] = {
    "OrderCreated": lambda event, payload, ctx: map_order_created(payload, ctx),
    "OrderPlaced": map_order,
    "OrderCompleted": map_order,
    "OrderShipped": lambda event, payload, ctx: map_order_shipped(payload, ctx),
    "OrderCancellation": map_order,
    "RefundCompleted": map_return,
    "ReturnCompleted": map_return,
    "Newsletter": lambda event, payload, ctx: map_newsletter(payload, ctx),
    "CustomerRegistered": map_customer,
    "PasswordReset": map_customer,
    "GiftCertificate": lambda event, payload, ctx: map_gift_certificate(payload, ctx),
    "ProductAlertWaiting": lambda event, payload, ctx: map_product_alert(payload, ctx),
    "ProductAlertTriggered": lambda event, payload, ctx: map_product_alert(payload, ctx),
}


def map_event(event: str, payload: Any, ctx: MappingContext) -> Subscriber:
    """The Rule subscriber (email, phone, language, fields) for one catalog event; MappingError when impossible.

    Only keys the catalog gives this event are kept, so no mapper can leak a field into the wrong event.
    """
    mapper = MAPPERS.get(event)
    if mapper is None or event not in catalog.EVENTS:
        raise MappingError(f"unknown event {event!r}")
    if not isinstance(payload, dict):
        raise MappingError(f"{event}: the payload is not a JSON object")
    subscriber = mapper(event, payload, ctx)
    subscriber.fields = {k: v for k, v in subscriber.fields.items() if catalog.is_field_allowed(event, k)}
    return subscriber


def object_key(event: str, payload: Any) -> str | None:
    """The object an event is about (`order:10452`, `shipment:3311`, `return:415`, `cart:<email>:<selection>`),
    so each logical event reaches Rule once; None when the event has no natural object."""
    if not isinstance(payload, dict):
        return None
    if event in ("OrderPlaced", "OrderCompleted", "OrderCancellation"):
        order = as_dict(payload.get("order")) if "order" in payload else payload
        ref = first_text(order.get("number"), order.get("id"))
        return f"order:{ref}" if ref else None
    if event == "OrderCreated":
        order = as_dict(payload.get("order"))
        email = valid_email(payload.get("email")) or valid_email(dig(order, "customer", "email"))
        selection = selection_id(payload)
        return f"cart:{email.lower()}:{selection}" if email and selection else None
    if event == "OrderShipped":
        shipment, _ = shipment_order(payload)
        ref = first_text(shipment.get("id"), shipment.get("number"))
        return f"shipment:{ref}" if ref else None
    if event in ("RefundCompleted", "ReturnCompleted"):
        ret = as_dict(payload.get("return")) if "return" in payload else payload
        ref = first_text(ret.get("id"))
        return f"return:{ref}" if ref else None
    if event == "GiftCertificate":
        gift = as_dict(payload.get("giftCertificate"))
        ref = first_text(gift.get("code"), gift.get("id"))
        return f"giftcertificate:{ref}" if ref else None
    if event == "CustomerRegistered":
        customer = as_dict(payload.get("customer"))
        ref = first_text(customer.get("id")) or valid_email(customer.get("email") or payload.get("email"))
        return f"customer:{ref}" if ref else None
    # Newsletter, PasswordReset and product alerts may rightly happen again for the same person.
    return None
