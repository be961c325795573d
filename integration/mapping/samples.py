"""Realistic payloads for the catalog events (each declaration names its own): test calls, previews, tests.

The shapes are the JSON event bodies of docs/internals.md; order documents follow Centra's
DirectToConsumerOrder as returned by the Integration API.
"""

from __future__ import annotations

import copy
from typing import Any

from integration import catalog


def money(value: float, currency: str = "SEK") -> dict[str, Any]:
    """A Centra money object (value, formattedValue, currency) as the samples use it."""
    whole, _, cents = f"{value:,.2f}".partition(".")
    return {
        "value": value,
        "formattedValue": f"{whole.replace(',', ' ')}.{cents} {currency}",
        "currency": {"code": currency},
    }


_ADDRESS = {
    "firstName": "Anna",
    "lastName": "Lindqvist",
    "companyName": "",
    "address1": "Sveavägen 44",
    "address2": "lgh 1102",
    "city": "Stockholm",
    "zipCode": "111 34",
    "stateOrProvince": None,
    "email": "anna.lindqvist@example.com",
    "phoneNumber": "070-123 45 67",
    "cellPhoneNumber": None,
    "country": {"code": "SE", "name": "Sweden"},
    "state": None,
}

ORDER: dict[str, Any] = {
    "id": "0c6a8c4a1d3e5f7b9c1e3a5b7d9f1a3c",
    "number": 10452,
    "status": "CONFIRMED",
    "orderDate": "2026-11-29T11:00:00+00:00",
    "createdAt": "2026-11-29T11:00:00+00:00",
    "otherComment": "Please leave the parcel at the door.",
    "language": {"code": "sv", "languageCode": "sv", "name": "Swedish"},
    "customer": {"id": 7781, "email": "anna.lindqvist@example.com", "firstName": "Anna", "lastName": "Lindqvist"},
    "shippingAddress": _ADDRESS,
    "billingAddress": {**_ADDRESS, "address1": "Box 1234", "address2": None, "zipCode": "111 22"},
    "paymentMethod": {"id": 3, "name": "Klarna Checkout"},
    "shippingPriceGroup": {"shippingOption": {"id": 2, "name": "PostNord Home Delivery"}},
    "grandTotal": money(1347.0),
    "totals": {
        "quantity": 3,
        "lineValues": money(1398.0),
        "discounts": money(-100.0),
        "shipping": money(49.0),
        "handling": money(0.0),
        "taxIncluded": money(269.4),
        "taxAdded": money(0.0),
        "taxDeducted": money(0.0),
    },
    "attributes": [
        {"type": {"name": "giftWrap"}, "elements": [{"key": "message", "value": "Happy birthday!"}]},
    ],
    "lines": [
        {
            "id": 1,
            "productName": "Merino Scarf",
            "productVariantName": "Forest Green",
            "size": "One Size",
            "quantity": 2,
            "taxPercent": 25,
            "discountPercent": 0,
            "folderName": "Accessories",
            "productExternalUrl": "https://shop.example/merino-scarf-forest-green",
            "brand": {"id": 1, "name": "Nordic Wool"},
            "collection": {"id": 4, "name": "AW26"},
            "productSize": {"id": 901, "SKU": "NW-SCARF-GRN-OS", "EAN": "7350012345678"},
            "unitPrice": money(499.0),
            "lineValue": money(998.0),
        },
        {
            "id": 2,
            "productName": "Wool Socks",
            "productVariantName": "Grey Melange",
            "size": "39-42",
            "quantity": 1,
            "taxPercent": 25,
            "discountPercent": 20,
            "folderName": "Socks",
            "productExternalUrl": "https://shop.example/wool-socks-grey",
            "brand": {"id": 1, "name": "Nordic Wool"},
            "collection": {"id": 4, "name": "AW26"},
            "productSize": {"id": 912, "SKU": "NW-SOCK-GRY-3942", "EAN": "7350012345685"},
            "unitPrice": money(400.0),
            "lineValue": money(400.0),
        },
    ],
}

SHIPMENT: dict[str, Any] = {
    "id": 3311,
    "number": "10452-1",
    "isShipped": True,
    "shippedAt": "2026-11-30T08:15:00+00:00",
    "trackingNumber": "00370712345678901234",
    "carrierInformation": {"carrierName": "PostNord", "serviceName": "MyPack Home"},
    "shipmentPlugin": {"id": 5, "name": "PostNord"},
    "order": ORDER,
}

RETURN: dict[str, Any] = {
    "id": 415,
    "returnStatus": "COMPLETED",
    "createdAt": "2026-12-05T09:00:00+00:00",
    "grandTotal": money(400.0),
    "totals": {"handling": money(0.0), "returnCost": money(-39.0), "lineValues": money(400.0)},
    "lines": [{"id": 1, "quantity": 1, "lineValue": money(400.0), "orderLine": ORDER["lines"][1]}],
    "order": ORDER,
}

_CUSTOMER = {
    "id": 7781,
    "email": "anna.lindqvist@example.com",
    "firstName": "Anna",
    "lastName": "Lindqvist",
    "phoneNumber": "+46701234567",
    "language": "sv",
    "billingAddress": {**_ADDRESS, "address2": "lgh 1102"},
}

ORDER_CREATED: dict[str, Any] = {
    "email": "anna.lindqvist@example.com",
    "selection": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "order": {k: v for k, v in ORDER.items() if k not in ("number", "id", "status")},
}
ORDER_PLACED: dict[str, Any] = {"order": {**ORDER, "status": "PENDING"}}
ORDER_COMPLETED: dict[str, Any] = {"order": ORDER}
ORDER_SHIPPED: dict[str, Any] = {"shipment": SHIPMENT}
ORDER_CANCELLATION: dict[str, Any] = {"order": {**ORDER, "status": "CANCELLED"}}
REFUND_COMPLETED: dict[str, Any] = {"return": RETURN}
RETURN_COMPLETED: dict[str, Any] = {"return": {**RETURN, "grandTotal": money(0.0)}}
NEWSLETTER: dict[str, Any] = {
    "email": "erik.berg@example.com",
    "language": "sv-SE",
    "address": {
        "firstName": "Erik",
        "lastName": "Berg",
        "city": "Göteborg",
        "zipCode": "411 05",
        "country": {"code": "SE"},
    },
}
CUSTOMER_REGISTERED: dict[str, Any] = {"customer": _CUSTOMER}
PASSWORD_RESET: dict[str, Any] = {
    "customer": _CUSTOMER,
    "passwordRestoreLink": "https://shop.example/account/reset?token=3f9c2d1e8b7a",
}
GIFT_CERTIFICATE: dict[str, Any] = {
    "order": ORDER,
    "giftCertificate": {
        "name": "Gift card 500 SEK",
        "code": "GC-7K2M-9QXP",
        "link": "https://shop.example/gift-card/GC-7K2M-9QXP",
        "message": "Happy birthday, Erik!",
        "date": "2026-11-29",
        "dueDate": "2027-11-29",
        "description": "Valid for one year in the web shop",
        "friend": "Erik Berg",
        "currency": "SEK",
        "value": money(500.0),
        "valueAsNumber": 500,
    },
}


def sample(event: str) -> dict[str, Any]:
    """A deep copy of the declared sample payload for `event` (callers may change it freely)."""
    return copy.deepcopy(catalog.EVENTS[event].sample)
