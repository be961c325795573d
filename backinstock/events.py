"""Back in stock's events, declared from BackInStockConfig.ready(): the two catalog events it sends to Rule
(with the fields only they carry), the three JSON types the shop sends it and the Storefront API webhook keys it
reads.

The core knows none of this: it reads the catalog registry (integration/catalog.py), so without this app the
service runs with the core's events only.
"""

from __future__ import annotations

from integration.catalog import (
    TEXT,
    EventSpec,
    InboundType,
    declare,
    declare_catalogue_keys,
    declare_inbound,
    field_spec,
)

from . import serializers as s
from .mapping import map_product_alert
from .samples import PRODUCT_ALERT

ALERT_EVENTS = frozenset({"ProductAlertWaiting", "ProductAlertTriggered"})
ALERT_FIELDS = [
    field_spec(f"ProductAlert.{name}", TEXT, f"product {src}", ALERT_EVENTS)
    for name, src in [
        ("DisplayName", "name"),
        ("DisplayUri", "uri"),
        ("DisplayImage", "image"),
        ("Brand", "brand"),
        ("Variant", "variant"),
        ("Size", "size"),
        ("SKU", "sku"),
        ("SizeSKU", "sizeSku"),
        ("EAN", "ean"),
        ("PriceInRegion", "price (formatted)"),
        ("PriceInRegionAmount", "price (two decimals)"),
        ("CurrencyInRegion", "currency"),
    ]
]


def declare_events() -> None:
    """Register back in stock's catalog events and inbound types (once, from the AppConfig)."""
    declare(
        EventSpec(
            "ProductAlertWaiting",
            ("Rule - Waiting For Product Alert",),
            True,
            "a shopper starts watching an out-of-stock size",
            mapper=lambda event, payload, ctx: map_product_alert(payload, ctx),
            sample=PRODUCT_ALERT,
            emitted_by="backinstock",
        ),
        fields=ALERT_FIELDS,
    )
    declare(
        EventSpec(
            "ProductAlertTriggered",
            ("Rule - Product Alert Triggered",),
            True,
            "stock for a watched size is back",
            mapper=lambda event, payload, ctx: map_product_alert(payload, ctx),
            sample=PRODUCT_ALERT,
            emitted_by="backinstock",
        )
    )
    declare_inbound(
        InboundType("BackInStockSubscribe", s.BackInStockSubscribeSerializer, object_ref=lambda body: body.get("item"))
    )
    declare_inbound(
        InboundType(
            "BackInStockUnsubscribe", s.BackInStockUnsubscribeSerializer, object_ref=lambda body: body.get("item")
        )
    )
    declare_inbound(InboundType("StockUpdate", s.StockUpdateSerializer, object_ref=_stock_items))
    # Centra's Storefront API webhook says product data changed: re-check the stock of watched sizes.
    declare_catalogue_keys("DisplayItems", "Products")


def _stock_items(body: dict) -> str:
    return ",".join(str(i.get("item")) for i in body.get("items", []) if isinstance(i, dict))
