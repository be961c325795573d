"""The core's catalog events, each declared once (see integration/catalog.py for what a declaration carries).

Read top to bottom, this is the events table of field-catalog.md: tag defaults, when the event fires, the
serializer that validates it at /events, the mapper, the object it is about, the sample payload and, for the
events Centra's webhooks announce, how the fetched object's current state decides it. Declaring an event here
is all the service needs (docs/extending.md); imported once from IntegrationConfig.ready().
"""

from __future__ import annotations

from typing import Any

from integration.catalog import CentraTrigger, EventSpec, declare
from integration.centra.queries import RETURN_COMPLETED_STATUS
from integration.inbound import validation as v
from integration.mapping import samples
from integration.mapping.customers import map_customer, map_newsletter
from integration.mapping.gift_certificates import map_gift_certificate
from integration.mapping.keys import cart_key, customer_key, gift_certificate_key, order_key, return_key, shipment_key
from integration.mapping.orders import map_order, map_order_created, map_order_shipped
from integration.mapping.returns import map_return
from integration.mapping.values import as_dict, dig, money_value

# --- how Centra's state decides (field-catalog.md, events table) ----------------------------------------------
# Each test reads the object's *current* state; the sync (integration.processing.centra_sync) then leaves out
# what was already delivered, what a newer event made stale, and flows that are off.

MANUAL_COMPLETED_STATUSES = frozenset({"CONFIRMED", "PROCESSING", "SHIPPED"})


def _status(doc: dict) -> str:
    return str(doc.get("status") or "").upper()


def order_pending(doc: dict, *, manual_confirmation: bool, **_: Any) -> bool:
    """Manual-confirmation mode: an order seen PENDING."""
    return manual_confirmation and _status(doc) == "PENDING"


def order_completed(doc: dict, *, manual_confirmation: bool, **_: Any) -> bool:
    """Auto mode: any status but CANCELLED; manual mode: CONFIRMED, PROCESSING or SHIPPED."""
    status = _status(doc)
    if status == "CANCELLED":
        return False
    return status in MANUAL_COMPLETED_STATUSES if manual_confirmation else bool(status)


def order_cancelled(doc: dict, **_: Any) -> bool:
    return _status(doc) == "CANCELLED"


def shipment_shipped(doc: dict, **_: Any) -> bool:
    return doc.get("isShipped") is True


def completed_return_event(ret: dict, enabled: frozenset[str], sent_as: str | None = None) -> str:
    """Which of the two events a completed return starts (one, never both).

    The article's RefundCompleted fires "when a product is returned", so every completed return starts it by
    default, refunded or not. Ours: a merchant who switches ReturnCompleted on tells the two apart, and a return
    with nothing refunded (exchange, store credit) then starts ReturnCompleted instead. A JSON event whose
    refunded value cannot be read is taken to mean what its type says (`sent_as`).
    """
    refunded = money_value(as_dict(ret).get("grandTotal"))
    nothing_refunded = refunded <= 0 if refunded is not None else sent_as == "ReturnCompleted"
    return "ReturnCompleted" if nothing_refunded and "ReturnCompleted" in enabled else "RefundCompleted"


def _completed(doc: dict) -> bool:
    return str(doc.get("returnStatus") or "").upper() == RETURN_COMPLETED_STATUS


def return_refunded(doc: dict, *, enabled: frozenset[str] = frozenset(), **_: Any) -> bool:
    return _completed(doc) and completed_return_event(doc, enabled) == "RefundCompleted"


def return_not_refunded(doc: dict, *, enabled: frozenset[str] = frozenset(), **_: Any) -> bool:
    return _completed(doc) and completed_return_event(doc, enabled) == "ReturnCompleted"


def _json_return_as(event_type: str):
    """sent_as for a JSON return event: the same rule as Centra's, on the event's `return`."""
    return lambda body, enabled: completed_return_event(as_dict(body.get("return")), enabled, event_type)


def customer_created(doc: dict, *, action: str = "", **_: Any) -> bool:
    return action == "create"


# --- object references for the logs (what the admin searches by) ----------------------------------------------


def _order_number_or(*path: str):
    return lambda body: dig(body, path[0], "order", "number") or dig(body, *path)


def _customer_ref(body: dict) -> Any:
    return dig(body, "customer", "id") or dig(body, "customer", "email")


# --- the events, in catalog order ------------------------------------------------------------------------------

declare(
    EventSpec(
        "OrderCreated",
        ("OrderCreated",),
        True,
        "abandoned-cart signal: a checkout with an email and items, order not completed; a cart without "
        "items is refused (400)",
        mapper=lambda event, payload, ctx: map_order_created(payload, ctx),
        sample=samples.ORDER_CREATED,
        serializer=v.OrderCreatedSerializer,
        object_key=cart_key,
        object_ref=lambda body: dig(body, "order", "number") or body.get("selection"),
    )
)
declare(
    EventSpec(
        "OrderPlaced",
        ("OrderPlaced",),
        True,
        "manual-confirmation mode only: an order seen in status PENDING; in auto-confirm mode an OrderPlaced "
        "JSON event is stored as ignored with the reason, never sent",
        mapper=map_order,
        sample=samples.ORDER_PLACED,
        serializer=v.OrderEventSerializer,
        object_key=order_key,
        centra=CentraTrigger("order", order_pending, superseded_by=("OrderCompleted", "OrderCancellation")),
        manual_mode_only=True,
    )
)
declare(
    EventSpec(
        "OrderCompleted",
        ("OrderCompleted",),
        True,
        "auto-confirm mode: an order first seen in any status but CANCELLED; manual mode: an order seen "
        "CONFIRMED, PROCESSING or SHIPPED",
        mapper=map_order,
        sample=samples.ORDER_COMPLETED,
        serializer=v.OrderEventSerializer,
        object_key=order_key,
        centra=CentraTrigger("order", order_completed, superseded_by=("OrderCancellation",)),
    )
)
# Ours: one per shipment; its item fields list that shipment's lines (a partial shipment lists only what left the
# warehouse), the order's lines when the shipment has none.
declare(
    EventSpec(
        "OrderShipped",
        ("OrderShipped",),
        True,
        "a shipment with isShipped: true, one per shipment; item fields from the shipment's lines (else the order's)",
        mapper=lambda event, payload, ctx: map_order_shipped(payload, ctx),
        sample=samples.ORDER_SHIPPED,
        serializer=v.OrderShippedSerializer,
        object_key=shipment_key,
        object_ref=_order_number_or("shipment", "id"),
        order_at=("shipment", "order"),
        centra=CentraTrigger("shipment", shipment_shipped),
    )
)
declare(
    EventSpec(
        "OrderCancellation",
        ("OrderCancellation",),
        False,
        "an order seen CANCELLED",
        mapper=map_order,
        sample=samples.ORDER_CANCELLATION,
        serializer=v.OrderEventSerializer,
        object_key=order_key,
        centra=CentraTrigger("order", order_cancelled),
    )
)
# The article's RefundCompleted fires "when a product is returned": every completed return, refunded or not. Ours:
# ReturnCompleted (off by default) is for merchants who want to tell the two apart; when it is on, a return with
# nothing refunded goes there instead. A return never starts both.
declare(
    EventSpec(
        "RefundCompleted",
        ("RefundCompleted",),
        True,
        "a return completed, refunded or not (Centra's return, or a JSON RefundCompleted or ReturnCompleted "
        "alike), unless ReturnCompleted is on: then only one with a refunded value above zero",
        mapper=map_return,
        sample=samples.REFUND_COMPLETED,
        serializer=v.ReturnEventSerializer,
        object_key=return_key,
        object_ref=_order_number_or("return", "id"),
        order_at=("return", "order"),
        centra=CentraTrigger("return", return_refunded, superseded_by=("ReturnCompleted",)),
        sent_as=_json_return_as("RefundCompleted"),
    )
)
declare(
    EventSpec(
        "ReturnCompleted",
        ("ReturnCompleted",),
        False,
        "when switched on: a return completed with nothing refunded (exchange, store credit), instead of "
        "RefundCompleted",
        mapper=map_return,
        sample=samples.RETURN_COMPLETED,
        serializer=v.ReturnEventSerializer,
        object_key=return_key,
        object_ref=_order_number_or("return", "id"),
        order_at=("return", "order"),
        centra=CentraTrigger("return", return_not_refunded, superseded_by=("RefundCompleted",)),
        sent_as=_json_return_as("ReturnCompleted"),
    )
)
declare(
    EventSpec(
        "Newsletter",
        ("Newsletter",),
        True,
        "newsletter sign-up on the site or in checkout",
        mapper=lambda event, payload, ctx: map_newsletter(payload, ctx),
        sample=samples.NEWSLETTER,
        serializer=v.NewsletterSerializer,
        object_ref=lambda body: body.get("email"),
    )
)
declare(
    EventSpec(
        "CustomerRegistered",
        ("CustomerRegistered",),
        False,
        "a customer account created (native customer webhook or JSON event)",
        mapper=map_customer,
        sample=samples.CUSTOMER_REGISTERED,
        serializer=v.CustomerRegisteredSerializer,
        object_key=customer_key,
        object_ref=_customer_ref,
        # Only a new account is a catalog event; an update would cost a Centra query for nothing.
        centra=CentraTrigger("customer", customer_created, actions=frozenset({"create"})),
    )
)
declare(
    EventSpec(
        "PasswordReset",
        ("PasswordReset",),
        False,
        "'Forgot your password?' with a restore link",
        mapper=map_customer,
        sample=samples.PASSWORD_RESET,
        serializer=v.PasswordResetSerializer,
        object_ref=_customer_ref,
    )
)
declare(
    EventSpec(
        "GiftCertificate",
        ("GiftCertificate",),
        False,
        "a gift certificate bought",
        mapper=lambda event, payload, ctx: map_gift_certificate(payload, ctx),
        sample=samples.GIFT_CERTIFICATE,
        serializer=v.GiftCertificateSerializer,
        object_key=gift_certificate_key,
    )
)
