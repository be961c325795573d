"""Validation at the door: the envelope and body of each signed JSON event, and Centra's webhook payloads.

One source per event: the serializer its catalog declaration names (the core's are here, declared in
integration/events.py; a plug-in declares its own, e.g. backinstock/serializers.py) decides what is accepted;
nothing else re-implements them. They only validate: the stored payload is the event as sent (minus the
envelope), so keys we do not read are kept and never rejected. Each serializer refuses what the mapping or a
column could not take later (an email over 254 characters, a count past a 32-bit column, a quantity of -1), and
for catalog events the event's own mapper runs once, so an event the mapping cannot send (no email) is a 400
now instead of a failure in the worker. What the envelope validated (id, type, time) is what is stored.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from integration import catalog
from integration.inbound.compiled import NotSure, RawCheckedSerializer, compile_serializer
from integration.mapping.orders import cart_items

MAX_EVENT_ID_LENGTH = 200  # the dedupe key "events:<id>" must fit in 255 characters
MAX_EMAIL_LENGTH = 254  # every email column, and RFC 5321's limit for a forward path
MAX_COUNT = 2**31 - 1  # the integer columns stock figures and quantities reach
MAX_TYPE_LENGTH = 60  # InboundEvent.event_type
MAX_WEBHOOK_ID_LENGTH = 120  # InboundEvent.object_ref


def no_surrounding_whitespace(value: str) -> None:
    # One rule for names the service compares as they are (event type, event id, webhook type): refused, never
    # trimmed, so the validated value and the stored value are the same string.
    if value != value.strip():
        raise serializers.ValidationError(f"{value!r} starts or ends with whitespace")


class ExactCharField(serializers.CharField):
    """Text kept exactly as sent: surrounding whitespace is refused instead of trimmed."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["trim_whitespace"] = False
        super().__init__(**kwargs)
        self.validators.append(no_surrounding_whitespace)


class EmailField(serializers.EmailField):
    """An email address that fits the email columns (DRF's own limit is 320)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", MAX_EMAIL_LENGTH)
        super().__init__(**kwargs)


_NUMBER_SCHEMA = {"oneOf": [{"type": "number"}, {"type": "string", "pattern": "^-?[0-9][0-9 .,]*$"}]}


@extend_schema_field(_NUMBER_SCHEMA)
class NumberField(serializers.Field):
    """A number as the mapping reads it: a JSON number or a numeric string ("1299.5", "1 299,50")."""

    default_error_messages = {"invalid": "must be a number or a numeric string"}

    def to_internal_value(self, data: Any) -> Any:
        from integration.mapping.values import decimal

        if decimal(data) is None:
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({"oneOf": [*_NUMBER_SCHEMA["oneOf"], {"type": "object", "properties": {"value": _NUMBER_SCHEMA}}]})
class AmountField(NumberField):
    """Money as the mapping reads it: a number, a numeric string, or a MonetaryValue `{"value": ...}`."""

    default_error_messages = {"invalid": 'must be a number, a numeric string or a MonetaryValue {{"value": <number>}}'}

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            if data.get("value") is not None:
                super().to_internal_value(data["value"])
            return data
        return super().to_internal_value(data)


def _optional(field_class: type[serializers.Field], **kwargs: Any) -> serializers.Field:
    return field_class(required=False, allow_null=True, **kwargs)


# --- the order document (Centra's DirectToConsumerOrder shape, field-catalog.md) ---------------------------------


class PersonSerializer(serializers.Serializer):
    """A customer or an address: only its email is checked (every other key is read leniently)."""

    email = EmailField(required=False, allow_blank=True, allow_null=True)


class OrderLineSerializer(serializers.Serializer):
    """One order line: Order.IndividualProductCount sums the quantities; the money fields feed Order.Products."""

    quantity = serializers.IntegerField(min_value=0, max_value=MAX_COUNT, required=False, allow_null=True)
    unitPrice = _optional(AmountField)
    lineValue = _optional(AmountField)
    taxPercent = _optional(NumberField)


class TotalsSerializer(serializers.Serializer):
    """`totals`: every amount the common order fields read."""

    lineValues = _optional(AmountField)
    discounts = _optional(AmountField)
    shipping = _optional(AmountField)
    handling = _optional(AmountField)
    taxIncluded = _optional(AmountField)
    taxAdded = _optional(AmountField)
    taxDeducted = _optional(AmountField)
    returnCost = _optional(AmountField)


class CartDocumentSerializer(serializers.Serializer):
    """An order (or a cart without a number yet, e.g. an abandoned checkout) as the mapping reads it."""

    number = serializers.CharField(max_length=64, required=False, allow_blank=True)
    customer = _optional(PersonSerializer)
    shippingAddress = _optional(PersonSerializer)
    billingAddress = _optional(PersonSerializer)
    lines = OrderLineSerializer(many=True, required=False, allow_null=True)
    totals = _optional(TotalsSerializer)
    grandTotal = _optional(AmountField)


class OrderDocumentSerializer(CartDocumentSerializer):
    """An order in Centra's GraphQL shape: the number is required."""

    number = serializers.CharField(max_length=64)


OptionalOrderDocumentSerializer = CartDocumentSerializer  # the name the event declarations used


# --- the envelope and each event's body ---------------------------------------------------------------------------


class EnvelopeSerializer(serializers.Serializer):
    """`{"id", "type", "occurredAt"}` shared by every JSON event."""

    id = ExactCharField(max_length=MAX_EVENT_ID_LENGTH)
    type = ExactCharField(max_length=MAX_TYPE_LENGTH)
    occurredAt = serializers.DateTimeField()

    def validate_type(self, value: str) -> str:
        if value not in catalog.INBOUND_TYPES:
            raise serializers.ValidationError(f"unknown event type {value!r}; known types: {', '.join(known_types())}")
        return value


class OrderEventSerializer(serializers.Serializer):
    """OrderPlaced, OrderCompleted, OrderCancellation: `{"order": {...}}` (an `email` beside it is a fallback)."""

    order = OrderDocumentSerializer()
    email = EmailField(required=False, allow_blank=True, allow_null=True)


EMPTY_CART = "a cart needs at least one item: OrderCreated is sent when one or more items have been added"


class CartWithItemsSerializer(RawCheckedSerializer, CartDocumentSerializer):
    """An abandoned checkout's cart: its `lines` hold at least one item (the mapping's rule, `cart_items`)."""

    @staticmethod
    def raw_check(data: Any) -> None:
        if not cart_items(data):  # the sent lines: their keys are not all declared above
            raise serializers.ValidationError({"lines": [EMPTY_CART]})


class OrderCreatedSerializer(serializers.Serializer):
    """An abandoned-cart signal: `{"email", "selection", "order"}`; the email may sit in the order, and the
    order's `lines` hold at least one item."""

    email = EmailField(required=False, allow_blank=True, allow_null=True)
    selection = serializers.CharField(max_length=200)
    order = CartWithItemsSerializer()


class ShipmentSerializer(serializers.Serializer):
    order = OrderDocumentSerializer(required=False)
    shippingAddress = _optional(PersonSerializer)
    customer = _optional(PersonSerializer)


class OrderShippedSerializer(serializers.Serializer):
    """`{"shipment": {..., "order": {...}}}`."""

    shipment = ShipmentSerializer()
    order = OrderDocumentSerializer(required=False)
    email = EmailField(required=False, allow_blank=True, allow_null=True)


class ReturnLineSerializer(serializers.Serializer):
    quantity = serializers.IntegerField(min_value=0, max_value=MAX_COUNT, required=False, allow_null=True)
    lineValue = _optional(AmountField)


class ReturnSerializer(serializers.Serializer):
    order = OrderDocumentSerializer(required=False)
    customer = _optional(PersonSerializer)
    lines = ReturnLineSerializer(many=True, required=False, allow_null=True)
    totals = _optional(TotalsSerializer)
    grandTotal = _optional(AmountField)


# RefundCompleted, ReturnCompleted: `{"return": {..., "order": {...}}}`; `return` is a Python keyword, so the
# class is built with type() to give the field its real name.
ReturnEventSerializer = type(
    "ReturnEventSerializer",
    (serializers.Serializer,),
    {
        "return": ReturnSerializer(),
        "order": OrderDocumentSerializer(required=False),
        "email": EmailField(required=False, allow_blank=True, allow_null=True),
        "__doc__": 'RefundCompleted, ReturnCompleted: `{"return": {...}}`.',
    },
)


class NewsletterSerializer(serializers.Serializer):
    """`{"email", "language", "address"}`."""

    email = EmailField()
    language = serializers.CharField(required=False, allow_blank=True, max_length=16)
    address = _optional(PersonSerializer)


class CustomerSerializer(serializers.Serializer):
    email = EmailField()


class CustomerRegisteredSerializer(serializers.Serializer):
    """`{"customer": {"email", ...}}`."""

    customer = CustomerSerializer()


class PasswordResetSerializer(serializers.Serializer):
    """`{"customer": {"email", ...}, "passwordRestoreLink"}`."""

    customer = CustomerSerializer()
    passwordRestoreLink = serializers.URLField(max_length=2000)


class GiftCertificateDocumentSerializer(serializers.Serializer):
    code = serializers.CharField(required=False, allow_blank=True, max_length=200)
    email = EmailField(required=False, allow_blank=True, allow_null=True)
    # `value` may be a display text ("500.00 SEK") and an unreadable one is left out with a note on the delivery
    # (integration/mapping/gift_certificates.py), so neither value is refused here.


class GiftCertificateSerializer(serializers.Serializer):
    """`{"order": {...}, "giftCertificate": {...}}`."""

    order = OrderDocumentSerializer()
    giftCertificate = GiftCertificateDocumentSerializer()
    email = EmailField(required=False, allow_blank=True, allow_null=True)


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


@dataclass(frozen=True)
class CheckedEvent:
    """A valid JSON event as it is stored: the envelope as validated, the rest as sent."""

    id: str
    type: str
    occurred_at: datetime
    body: dict


def check_event(event: Any) -> tuple[CheckedEvent | None, list[tuple[str, str]]]:
    """(the event as stored, []) when it is valid, else (None, every problem as (field, message) pairs)."""
    if not isinstance(event, dict):
        return None, [("", f"an event must be a JSON object, got {type(event).__name__}")]
    envelope, problems = run_serializer(EnvelopeSerializer, event)
    event_type = event.get("type")
    serializer_class = body_serializer(event_type)
    body = {k: v for k, v in event.items() if k not in ENVELOPE_KEYS}
    if serializer_class is not None:
        valid_body, body_problems = run_serializer(serializer_class, event)
        problems.extend(body_problems)
        if valid_body is not None and envelope is not None:
            problems.extend(mapping_problems(event_type, body))
    if problems or envelope is None:
        return None, problems
    return CheckedEvent(id=envelope["id"], type=envelope["type"], occurred_at=envelope["occurredAt"], body=body), []


_validators = threading.local()


def run_serializer(serializer_class: type[serializers.Serializer], data: Any) -> tuple[Any, list[tuple[str, str]]]:
    """(validated data, []) or (None, every problem): the serializer's own validation, run on one instance per
    class and thread (building a serializer deep-copies its fields, which cost most of the time per event).

    Valid data is vouched for by the serializer compiled once (`compiled.py`: DRF's success path without its
    machinery, same checks, same values); whatever it is not sure of, every refusal included, is answered by
    the serializer itself."""
    cache = _validators.__dict__.setdefault("instances", {})
    entry = cache.get(serializer_class)
    if entry is None:
        serializer = serializer_class()
        entry = cache[serializer_class] = (serializer, compile_serializer(serializer_class()))
    serializer, compiled_check = entry
    with contextlib.suppress(NotSure):  # the compiled checks vouch only for what DRF surely accepts
        return compiled_check(data), []
    try:
        return serializer.run_validation(data), []
    except serializers.ValidationError as exc:
        return None, flatten_errors(exc.detail)


def validate_event(event: Any) -> list[tuple[str, str]]:
    """Every problem with one JSON event, as (field, message) pairs; empty when it is valid."""
    return check_event(event)[1]


ENVELOPE_KEYS = frozenset({"id", "type", "occurredAt"})
_EMAIL = EmailValidator()


def mapping_problems(event_type: str, body: dict) -> list[tuple[str, str]]:
    """Run a catalog event's mapper once: what it cannot send (no email) is refused now, with its reason."""
    from integration.mapping import MappingContext, MappingError, map_event

    if event_type not in catalog.EVENTS:
        return []  # the plug-ins' own types (back in stock) have no mapper of their own
    try:
        subscriber = map_event(event_type, body, MappingContext())
    except MappingError as exc:
        reason = str(exc)
        return [("email" if reason.startswith("no email") else "", reason)]
    try:
        if len(subscriber.email) > MAX_EMAIL_LENGTH:
            raise DjangoValidationError(f"longer than {MAX_EMAIL_LENGTH} characters")
        _EMAIL(subscriber.email)
    except DjangoValidationError:
        return [("email", f"the subscriber's email {subscriber.email[:80]!r} is not a valid email address")]
    return []


# --- Centra's webhook plugin --------------------------------------------------------------------------------------


class WebhookEventSerializer(serializers.Serializer):
    """One Integration API event: `{"type", "action", "date", "id"}`; for the types we process, `id` is Centra's
    numeric id (for orders the order number), which the worker fetches."""

    type = ExactCharField(max_length=MAX_TYPE_LENGTH)
    id = ExactCharField(max_length=MAX_WEBHOOK_ID_LENGTH)
    action = ExactCharField(max_length=MAX_TYPE_LENGTH, required=False, allow_blank=True)
    date = serializers.CharField(max_length=64, required=False, allow_blank=True, trim_whitespace=False)

    def validate(self, attrs: dict) -> dict:
        if attrs["type"] in catalog.centra_kinds() and not _CENTRA_ID.fullmatch(attrs["id"]):
            raise serializers.ValidationError({"id": f"a {attrs['type']} event needs Centra's numeric id"})
        return attrs


_CENTRA_ID = re.compile(r"[0-9]{1,20}")
_CATALOGUE_IDS = serializers.ListField(
    child=ExactCharField(max_length=64),
    error_messages={"not_a_list": "must be a list of ids, got {input_type}"},
)


def check_webhook_events(events: list[Any]) -> tuple[list[dict], list[dict]]:
    """(each event's validated type, id, action and date; []) or ([], every problem with its index)."""
    validated, errors = [], []
    for index, event in enumerate(events):
        valid, problems = run_serializer(WebhookEventSerializer, event)
        validated.append(valid)
        errors.extend({"index": index, "field": field, "message": message} for field, message in problems)
    return (validated, []) if not errors else ([], errors)


def check_catalogue(document: dict) -> tuple[dict[str, list[str]], list[dict]]:
    """Storefront catalogue keys with their ids as text, or every problem: a key is a name (at most 60
    characters, no surrounding whitespace) and its ids a list of strings or integers."""
    validated: dict[str, list[str]] = {}
    errors = []
    for key, ids in document.items():
        try:
            ExactCharField(max_length=MAX_TYPE_LENGTH).run_validation(key)
            validated[key] = _CATALOGUE_IDS.run_validation(ids)
        except serializers.ValidationError as exc:
            errors.extend({"field": f, "message": m} for f, m in flatten_errors(exc.detail, repr(key[:60])))
    return (validated, []) if not errors else ({}, errors)


@functools.cache
def documented_events() -> list[type[serializers.Serializer]]:
    """One serializer per event type for the OpenAPI schema: the envelope with `type` fixed to that type, and
    the type's own body fields (the same classes that validate; only this combination is for the docs)."""
    documented = []
    for name in known_types():
        body = body_serializer(name)
        fields = {"type": serializers.ChoiceField(choices=[name]), "__doc__": body.__doc__}
        documented.append(type(f"{name}Event", (EnvelopeSerializer, body), fields))
    return documented
