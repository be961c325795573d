"""Which object an event is about: its idempotency key, so each logical event reaches Rule once.

Each function takes the event's payload (a dict) and gives `kind:ref` (`order:10452`, `shipment:3311`,
`return:415`, `cart:<email>:<selection>`), or None when the payload names no object. Events that may rightly
happen again for the same person (Newsletter, PasswordReset, product alerts) declare no key.
"""

from __future__ import annotations

from integration.mapping.orders import selection_id, shipment_order, valid_email
from integration.mapping.values import as_dict, dig, first_text


def order_key(payload: dict) -> str | None:
    order = as_dict(payload.get("order")) if "order" in payload else payload
    ref = first_text(order.get("number"), order.get("id"))
    return f"order:{ref}" if ref else None


def cart_key(payload: dict) -> str | None:
    order = as_dict(payload.get("order"))
    email = valid_email(payload.get("email")) or valid_email(dig(order, "customer", "email"))
    selection = selection_id(payload)
    return f"cart:{email.lower()}:{selection}" if email and selection else None


def shipment_key(payload: dict) -> str | None:
    shipment, _ = shipment_order(payload)
    ref = first_text(shipment.get("id"), shipment.get("number"))
    return f"shipment:{ref}" if ref else None


def return_key(payload: dict) -> str | None:
    ret = as_dict(payload.get("return")) if "return" in payload else payload
    ref = first_text(ret.get("id"))
    return f"return:{ref}" if ref else None


def gift_certificate_key(payload: dict) -> str | None:
    gift = as_dict(payload.get("giftCertificate"))
    ref = first_text(gift.get("code"), gift.get("id"))
    return f"giftcertificate:{ref}" if ref else None


def customer_key(payload: dict) -> str | None:
    customer = as_dict(payload.get("customer"))
    ref = first_text(customer.get("id")) or valid_email(customer.get("email") or payload.get("email"))
    return f"customer:{ref}" if ref else None
