"""Validation of signed JSON events: the envelope, then the serializer the event type declares.

The serializer classes of the core's events are here; each catalog declaration (integration/events.py) names
its own, and a plug-in declares the serializers of its types (backinstock/serializers.py).

The serializers only validate: the stored payload is the event as sent (minus the envelope), so keys we do not
read are kept and never rejected. Each serializer requires what the mapping cannot do without.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.dateparse import parse_datetime
from rest_framework import serializers
from rest_framework.fields import empty

from integration import catalog
from integration.mapping.orders import cart_items

MAX_EVENT_ID_LENGTH = 200  # the dedupe key "events:<id>" must fit in 255 characters


class OrderDocumentSerializer(serializers.Serializer):
    """An order in Centra's GraphQL shape; only the number is required."""

    number = serializers.CharField(max_length=64)


class OptionalOrderDocumentSerializer(serializers.Serializer):
    """An order (or cart) without a number yet, e.g. an abandoned checkout."""

    number = serializers.CharField(max_length=64, required=False, allow_blank=True)


class EnvelopeSerializer(serializers.Serializer):
    """`{"id", "type", "occurredAt"}` shared by every JSON event."""

    id = serializers.CharField(max_length=MAX_EVENT_ID_LENGTH)
    type = serializers.CharField(max_length=60)
    occurredAt = serializers.DateTimeField()

    def validate_type(self, value: str) -> str:
        if value not in catalog.INBOUND_TYPES:
            raise serializers.ValidationError(f"unknown event type {value!r}; known types: {', '.join(known_types())}")
        return value


class OrderEventSerializer(serializers.Serializer):
    """OrderPlaced, OrderCompleted, OrderCancellation: `{"order": {...}}`."""

    order = OrderDocumentSerializer()


def _order_email(order: Any) -> str:
    if not isinstance(order, dict):
        return ""
    for holder in (order.get("customer"), order.get("shippingAddress"), order.get("billingAddress")):
        if isinstance(holder, dict) and holder.get("email"):
            return str(holder["email"])
    return str(order.get("email") or "")


EMPTY_CART = "a cart needs at least one item: OrderCreated is sent when one or more items have been added"


class OrderCreatedSerializer(serializers.Serializer):
    """An abandoned-cart signal: `{"email", "selection", "order"}`; the email may sit in the order, and the
    order's `lines` hold at least one item (the same rule as the mapping's, `cart_items`)."""

    email = serializers.EmailField(required=False, allow_blank=True)
    selection = serializers.CharField(max_length=200)
    order = OptionalOrderDocumentSerializer()

    def validate(self, attrs: dict) -> dict:
        problems: dict = {}
        if not attrs.get("email") and not _order_email(self.initial_data.get("order")):
            problems["email"] = "an email is required (event email or order customer email)"
        if not _cart_has_items(self.initial_data):
            problems["order"] = {"lines": [EMPTY_CART]}
        if problems:
            raise serializers.ValidationError(problems)
        return attrs


class ShipmentSerializer(serializers.Serializer):
    order = OrderDocumentSerializer(required=False)


class OrderShippedSerializer(serializers.Serializer):
    """`{"shipment": {..., "order": {...}}}`."""

    shipment = ShipmentSerializer()


class ReturnSerializer(serializers.Serializer):
    order = OrderDocumentSerializer(required=False)


# RefundCompleted, ReturnCompleted: `{"return": {..., "order": {...}}}`; `return` is a Python keyword, so the
# class is built with type() to give the field its real name.
ReturnEventSerializer = type(
    "ReturnEventSerializer",
    (serializers.Serializer,),
    {"return": ReturnSerializer(), "__doc__": 'RefundCompleted, ReturnCompleted: `{"return": {...}}`.'},
)


class NewsletterSerializer(serializers.Serializer):
    """`{"email", "language", "address"}`."""

    email = serializers.EmailField()
    language = serializers.CharField(required=False, allow_blank=True, max_length=16)


class CustomerSerializer(serializers.Serializer):
    email = serializers.EmailField()


class CustomerRegisteredSerializer(serializers.Serializer):
    """`{"customer": {"email", ...}}`."""

    customer = CustomerSerializer()


class PasswordResetSerializer(serializers.Serializer):
    """`{"customer": {"email", ...}, "passwordRestoreLink"}`."""

    customer = CustomerSerializer()
    passwordRestoreLink = serializers.URLField(max_length=2000)


class GiftCertificateDocumentSerializer(serializers.Serializer):
    code = serializers.CharField(required=False, allow_blank=True)


class GiftCertificateSerializer(serializers.Serializer):
    """`{"order": {...}, "giftCertificate": {...}}`."""

    order = OrderDocumentSerializer()
    giftCertificate = GiftCertificateDocumentSerializer()


def known_types() -> list[str]:
    """Every event type the /events endpoint accepts (the catalog's JSON events and the plug-ins' types)."""
    return list(catalog.INBOUND_TYPES)


def body_serializer(event_type: Any) -> type[serializers.Serializer] | None:
    """The declared serializer of an event type, None when /events does not accept it."""
    inbound = catalog.INBOUND_TYPES.get(event_type) if isinstance(event_type, str) else None
    return inbound.serializer if inbound is not None else None


def flatten_errors(detail: Any, prefix: str = "") -> list[tuple[str, str]]:
    """DRF's nested error structure as (dotted field path, message) pairs."""
    if isinstance(detail, dict):
        pairs = []
        for key, value in detail.items():
            name = prefix if key == "non_field_errors" else (f"{prefix}.{key}" if prefix else str(key))
            pairs.extend(flatten_errors(value, name))
        return pairs
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [(prefix, str(item)) for item in detail]
        pairs = []
        for index, item in enumerate(detail):
            if item:
                pairs.extend(flatten_errors(item, f"{prefix}.{index}" if prefix else str(index)))
        return pairs
    return [(prefix, str(detail))]


def validate_event(event: Any) -> list[tuple[str, str]]:
    """Every problem with one JSON event, as (field, message) pairs; empty when it is valid."""
    if not isinstance(event, dict):
        return [("", f"an event must be a JSON object, got {type(event).__name__}")]
    if _plainly_valid(event):
        return []
    envelope = EnvelopeSerializer(data=event)
    problems = [] if envelope.is_valid() else flatten_errors(envelope.errors)
    event_type = event.get("type")
    serializer_class = body_serializer(event_type)
    if serializer_class is not None:
        body = serializer_class(data=event)
        if not body.is_valid():
            problems.extend(flatten_errors(body.errors))
    return problems


# --- the fast path ----------------------------------------------------------------------------------------------
# Building and running DRF serializers costs about 1 ms per event. Most events are plainly valid, so a check
# compiled once from the same serializer declarations answers "certainly valid" for them; anything it is not sure
# about (a number where a string is expected, null, a custom validator it does not know, ...) goes through the
# serializers, which then name every problem exactly as before. The check only ever says yes when DRF would.

_Check = Callable[[Any], bool]


def _compile_char(field: serializers.CharField) -> _Check:
    validators = list(field.validators)  # max/min length, NUL and surrogate characters, email or URL format

    def check(value: Any) -> bool:
        if type(value) in (int, float):  # DRF reads a number as its str()
            value = str(value)
        elif type(value) is not str:
            return False
        text = value.strip() if field.trim_whitespace else value
        if not text:
            return field.allow_blank
        try:
            for validator in validators:
                validator(text)
        except (DjangoValidationError, serializers.ValidationError):
            return False
        return True

    return check


def _compile_integer(field: serializers.IntegerField) -> _Check:
    low, high = field.min_value, field.max_value

    def check(value: Any) -> bool:
        return type(value) is int and (low is None or value >= low) and (high is None or value <= high)

    return check


def _compile_list(field: serializers.ListSerializer) -> _Check | None:
    child = _compile_serializer(type(field.child))
    if child is None or field.max_length is not None or field.min_length is not None:
        return None

    def check(value: Any) -> bool:
        if type(value) is not list or (not value and not field.allow_empty):
            return False
        return all(child(item) for item in value)

    return check


def _compile_field(field: serializers.Field) -> _Check | None:
    if isinstance(field, serializers.ListSerializer):
        return _compile_list(field)
    if isinstance(field, serializers.Serializer):
        return _compile_serializer(type(field))
    if isinstance(field, serializers.CharField) and type(field) in (
        serializers.CharField,
        serializers.EmailField,
        serializers.URLField,
    ):
        return _compile_char(field)
    if type(field) is serializers.IntegerField:
        return _compile_integer(field)
    return None  # a kind of field this check does not know: always ask DRF


@functools.cache
def _compile_serializer(serializer_class: type[serializers.Serializer]) -> _Check | None:
    """A check of a dict against the serializer's declared fields, or None when DRF must always decide."""
    own_hooks = [
        name
        for name, value in vars(serializer_class).items()
        if name == "validate" or (name.startswith("validate_") and callable(value))
    ]
    extra = _KNOWN_HOOKS.get(serializer_class)
    if own_hooks and extra is None:
        return None
    checks = []
    for name, field in serializer_class._declared_fields.items():
        if field.read_only or field.source not in (None, name) or field.default is not empty:
            return None
        check = _compile_field(field)
        if check is None:
            return None
        checks.append((name, field.required, field.allow_null, check))

    def check_document(value: Any) -> bool:
        if type(value) is not dict:
            return False
        for name, required, allow_null, check in checks:
            if name not in value:
                if required:
                    return False
            elif value[name] is None:
                if not allow_null:
                    return False
            elif not check(value[name]):
                return False
        return extra is None or extra(value)

    return check_document


def _check_envelope_time(value: Any) -> bool:
    """occurredAt as DRF's DateTimeField reads it: ISO 8601; a naive time is taken in TIME_ZONE (UTC here)."""
    if type(value) is not str:
        return False
    try:
        parsed = parse_datetime(value)
    except ValueError:
        return False
    return parsed is not None and 1 < parsed.year < 9999 and (parsed.tzinfo is not None or settings.TIME_ZONE == "UTC")


def _check_envelope(event: dict) -> bool:
    event_type = event.get("type")
    return (
        type(event_type) is str
        and event_type in catalog.INBOUND_TYPES
        and _ENVELOPE_ID(event.get("id"))
        and _check_envelope_time(event.get("occurredAt"))
    )


def _cart_has_items(event: dict) -> bool:
    order = event.get("order")
    return isinstance(order, dict) and bool(cart_items(order))


def _order_created_is_complete(event: dict) -> bool:
    has_email = bool(str(event.get("email") or "").strip()) or bool(_order_email(event.get("order")))
    return has_email and _cart_has_items(event)


# Serializers with their own validate methods, and the same rule for the fast path.
_KNOWN_HOOKS: dict[type, _Check] = {OrderCreatedSerializer: _order_created_is_complete}
_ENVELOPE_ID = _compile_char(EnvelopeSerializer._declared_fields["id"])


def _plainly_valid(event: dict) -> bool:
    """True only when the envelope and the body certainly pass their serializers."""
    if not _check_envelope(event):
        return False
    body_check = _compile_serializer(catalog.INBOUND_TYPES[event["type"]].serializer)
    return body_check is not None and body_check(event)
