"""GiftCertificate: the common order fields of the order that bought it, plus GiftCertificate.*."""

from __future__ import annotations

from integration.mapping.context import MappingContext, Subscriber
from integration.mapping.orders import (
    Fields,
    base_fields,
    common_fields,
    money_style,
    order_subscriber,
    put,
    valid_email,
)
from integration.mapping.values import amount, as_dict, currency_code, first_text, formatted, rule_date, text


def map_gift_certificate(payload: dict, ctx: MappingContext) -> Subscriber:
    """GiftCertificate: `{"order", "giftCertificate"}`; value may be a MonetaryValue or a plain number."""
    order = as_dict(payload.get("order"))
    gift = as_dict(payload.get("giftCertificate"))
    value = gift.get("value")
    fields: Fields = {}
    base_fields(fields, order)
    common_fields(fields, order, ctx)
    put(fields, "GiftCertificate.Name", text(gift.get("name")))
    put(fields, "GiftCertificate.Code", text(gift.get("code")))
    put(fields, "GiftCertificate.Link", text(gift.get("link")))
    put(fields, "GiftCertificate.Message", text(gift.get("message")))
    put(fields, "GiftCertificate.Date", rule_date(gift.get("date"), ctx.time_zone))
    put(fields, "GiftCertificate.DueDate", rule_date(gift.get("dueDate"), ctx.time_zone))
    put(fields, "GiftCertificate.Description", text(gift.get("description")))
    put(fields, "GiftCertificate.Friend", text(gift.get("friend")))
    currency = first_text(currency_code(gift), currency_code(value), currency_code(order.get("grandTotal")))
    put(fields, "GiftCertificate.Currency", currency)
    put(fields, "GiftCertificate.Value", formatted(value, money_style(order)))
    put(fields, "GiftCertificate.ValueAsNumber", amount(gift.get("valueAsNumber", value)))
    return order_subscriber(fields, order, ctx, valid_email(payload.get("email")), gift.get("email"))
