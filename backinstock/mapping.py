"""Back in stock's mapping: ProductAlertWaiting and ProductAlertTriggered, with the watched size as ProductAlert.*.

Pure like the core's mapping (integration/mapping/), whose helpers it uses; no models, no database."""

from __future__ import annotations

from integration.mapping.context import MappingContext, Subscriber
from integration.mapping.orders import Fields, put, subscriber_for, valid_email
from integration.mapping.values import MoneyStyle, amount, as_dict, currency_code, first_text, formatted, language_code


def map_product_alert(payload: dict, ctx: MappingContext) -> Subscriber:
    """ProductAlert*: `{"email", "languageCode", "shipTo", "item", "sku", "product"}`.

    `product` is the watched size (name, uri, image, brand, variant, size, sku, sizeSku, ean, price, currency);
    `price` may be a MonetaryValue or a plain number.
    """
    product = as_dict(payload.get("product"))
    price = product.get("price")
    currency = first_text(
        product.get("currency") if isinstance(product.get("currency"), str) else None,
        currency_code(product),
        currency_code(price),
    )
    fields: Fields = {}
    put(fields, "ProductAlert.DisplayName", first_text(product.get("name"), product.get("displayName")))
    put(fields, "ProductAlert.DisplayUri", first_text(product.get("uri"), product.get("url")))
    put(fields, "ProductAlert.DisplayImage", first_text(product.get("image"), product.get("imageUrl")))
    put(fields, "ProductAlert.Brand", first_text(product.get("brand")))
    put(fields, "ProductAlert.Variant", first_text(product.get("variant")))
    put(fields, "ProductAlert.Size", first_text(product.get("size")))
    put(fields, "ProductAlert.SKU", first_text(product.get("sku"), payload.get("sku")))
    put(fields, "ProductAlert.SizeSKU", first_text(product.get("sizeSku")))
    put(fields, "ProductAlert.EAN", first_text(product.get("ean")))
    put(
        fields,
        "ProductAlert.PriceInRegion",
        first_text(product.get("priceFormatted"), formatted(price, MoneyStyle.learn([price], currency))),
    )
    put(fields, "ProductAlert.PriceInRegionAmount", amount(price))
    put(fields, "ProductAlert.CurrencyInRegion", currency)
    language = language_code(payload.get("languageCode")) or language_code(payload.get("language"))
    return subscriber_for(fields, ctx, valid_email(payload.get("email")), None, language)
