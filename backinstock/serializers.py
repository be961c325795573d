"""Validation of back-in-stock's JSON event types (declared in backinstock/events.py)."""

from __future__ import annotations

from rest_framework import serializers

from integration.inbound.validation import MAX_COUNT, EmailField

# The columns these values reach (Watcher, ItemStock): longer values would fail in the worker after a 200.
MAX_ITEM_LENGTH = 64
MAX_SKU_LENGTH = 120


class ShipToSerializer(serializers.Serializer):
    countryCode = serializers.CharField(max_length=2, min_length=2)
    stateCode = serializers.CharField(max_length=10, required=False, allow_blank=True, allow_null=True)


class ProductSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True)


class BackInStockSubscribeSerializer(serializers.Serializer):
    """A shopper asks to hear when a size is back: `{"email", "item", "sku", "languageCode", "shipTo", "product"}`."""

    email = EmailField()
    item = serializers.CharField(max_length=MAX_ITEM_LENGTH)
    sku = serializers.CharField(max_length=MAX_SKU_LENGTH, required=False, allow_blank=True)
    languageCode = serializers.CharField(max_length=16, required=False, allow_blank=True)
    shipTo = ShipToSerializer(required=False)
    product = ProductSerializer(required=False)


class BackInStockUnsubscribeSerializer(serializers.Serializer):
    """`{"email", "item"}`."""

    email = EmailField()
    item = serializers.CharField(max_length=MAX_ITEM_LENGTH)


class StockItemSerializer(serializers.Serializer):
    item = serializers.CharField(max_length=MAX_ITEM_LENGTH)
    sku = serializers.CharField(max_length=MAX_SKU_LENGTH, required=False, allow_blank=True)
    available = serializers.IntegerField(min_value=0, max_value=MAX_COUNT)


class StockUpdateSerializer(serializers.Serializer):
    """`{"items": [{"item", "sku", "available"}]}`: the shop's stock figures."""

    items = StockItemSerializer(many=True, allow_empty=False)
