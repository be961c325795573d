"""Validation of signed JSON events: the envelope, then one serializer per event type.

The serializers only validate: the stored payload is the event as sent (minus the envelope), so keys we do not
read are kept and never rejected. Each serializer requires what the mapping cannot do without.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

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
        if value not in BODY_SERIALIZERS:
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


class OrderCreatedSerializer(serializers.Serializer):
    """An abandoned-cart signal: `{"email", "selection", "order"}`; the email may sit in the order."""

    email = serializers.EmailField(required=False, allow_blank=True)
    selection = serializers.CharField(max_length=200)
    order = OptionalOrderDocumentSerializer()

    def validate(self, attrs: dict) -> dict:
        if not attrs.get("email") and not _order_email(self.initial_data.get("order")):
            raise serializers.ValidationError({"email": "an email is required (event email or order customer email)"})
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


class ShipToSerializer(serializers.Serializer):
    countryCode = serializers.CharField(max_length=2, min_length=2)
    stateCode = serializers.CharField(max_length=10, required=False, allow_blank=True, allow_null=True)


class ProductSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True)


class BackInStockSubscribeSerializer(serializers.Serializer):
    """A shopper asks to hear when a size is back: `{"email", "item", "sku", "languageCode", "shipTo", "product"}`."""

    email = serializers.EmailField()
    item = serializers.CharField(max_length=100)
    sku = serializers.CharField(max_length=100, required=False, allow_blank=True)
    languageCode = serializers.CharField(max_length=16, required=False, allow_blank=True)
    shipTo = ShipToSerializer(required=False)
    product = ProductSerializer(required=False)


class BackInStockUnsubscribeSerializer(serializers.Serializer):
    """`{"email", "item"}`."""

    email = serializers.EmailField()
    item = serializers.CharField(max_length=100)


class StockItemSerializer(serializers.Serializer):
    item = serializers.CharField(max_length=100)
    sku = serializers.CharField(max_length=100, required=False, allow_blank=True)
    available = serializers.IntegerField(min_value=0)


class StockUpdateSerializer(serializers.Serializer):
    """`{"items": [{"item", "sku", "available"}]}`: the shop's stock figures."""

    items = StockItemSerializer(many=True, allow_empty=False)


BODY_SERIALIZERS: dict[str, type[serializers.Serializer]] = {
    "OrderCreated": OrderCreatedSerializer,
    "OrderPlaced": OrderEventSerializer,
    "OrderCompleted": OrderEventSerializer,
    "OrderCancellation": OrderEventSerializer,
    "OrderShipped": OrderShippedSerializer,
    "RefundCompleted": ReturnEventSerializer,
    "ReturnCompleted": ReturnEventSerializer,
    "Newsletter": NewsletterSerializer,
    "CustomerRegistered": CustomerRegisteredSerializer,
    "PasswordReset": PasswordResetSerializer,
    "GiftCertificate": GiftCertificateSerializer,
    "BackInStockSubscribe": BackInStockSubscribeSerializer,
    "BackInStockUnsubscribe": BackInStockUnsubscribeSerializer,
    "StockUpdate": StockUpdateSerializer,
}


def known_types() -> list[str]:
    """Every event type the /events endpoint accepts."""
    return list(BODY_SERIALIZERS)


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
    envelope = EnvelopeSerializer(data=event)
    problems = [] if envelope.is_valid() else flatten_errors(envelope.errors)
    body_serializer = BODY_SERIALIZERS.get(event.get("type"))  # type: ignore[arg-type]
    if body_serializer is not None:
        body = body_serializer(data=event)
        if not body.is_valid():
            problems.extend(flatten_errors(body.errors))
    return problems
