"""The sample payload of back in stock's ProductAlert events (test calls, previews, tests)."""

from __future__ import annotations

from typing import Any

from integration.mapping.samples import money

PRODUCT: dict[str, Any] = {
    "name": "Merino Scarf",
    "uri": "https://shop.example/merino-scarf-forest-green",
    "image": "https://cdn.shop.example/img/merino-scarf-green.jpg",
    "brand": "Nordic Wool",
    "variant": "Forest Green",
    "size": "One Size",
    "sku": "NW-SCARF-GRN",
    "sizeSku": "NW-SCARF-GRN-OS",
    "ean": "7350012345678",
    "price": money(499.0),
    "currency": "SEK",
}

PRODUCT_ALERT: dict[str, Any] = {
    "email": "anna.lindqvist@example.com",
    "languageCode": "sv",
    "shipTo": {"countryCode": "SE", "stateCode": None},
    "item": "12366-23400",
    "sku": "NW-SCARF-GRN-OS",
    "product": PRODUCT,
}
