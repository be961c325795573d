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
from integration.mapping.values import (
    MoneyStyle,
    amount,
    amount_in_text,
    as_dict,
    currency_code,
    first_text,
    formatted,
    is_empty,
    money_value,
    rule_date,
    text,
)


def gift_value(gift: dict, style: MoneyStyle, notes: list[str]) -> tuple[str | None, str | None]:
    """GiftCertificate.Value and ValueAsNumber.

    `value` may be a MonetaryValue, a number, or a display text ("500.00 SEK"). Ours (the article is silent):
    a MonetaryValue gives its formattedValue, a number is written in the order's money style, and a text that
    is not a plain number is sent as given. ValueAsNumber is `valueAsNumber`, else the value's amount (read
    from the text when it is one). What cannot be read is left out with a note on the delivery, never silently.
    """
    value, given_number = gift.get("value"), gift.get("valueAsNumber")
    if isinstance(value, str) and money_value(value) is None:
        plain = text(value)
        candidates = [given_number, amount_in_text(value)]
    else:
        plain = formatted(value, style)
        candidates = [given_number, value]
    number = next((a for a in (amount(c) for c in candidates) if a is not None), None)
    if not is_empty(value) and plain is None:
        notes.append(f"GiftCertificate.Value left out: giftCertificate.value {value!r:.80} could not be read")
    if not is_empty(given_number) and amount(given_number) is None:
        notes.append(f"giftCertificate.valueAsNumber {given_number!r:.80} is not a number; not used")
    if number is None and not (is_empty(value) and is_empty(given_number)):
        notes.append("GiftCertificate.ValueAsNumber left out: no amount could be read from the gift certificate")
    return plain, number


def map_gift_certificate(payload: dict, ctx: MappingContext) -> Subscriber:
    """GiftCertificate: `{"order", "giftCertificate"}`; value may be a MonetaryValue, a number or a text."""
    order = as_dict(payload.get("order"))
    gift = as_dict(payload.get("giftCertificate"))
    notes: list[str] = []
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
    value = gift.get("value")
    currency = first_text(currency_code(gift), currency_code(value), currency_code(order.get("grandTotal")))
    put(fields, "GiftCertificate.Currency", currency)
    plain, number = gift_value(gift, money_style(order), notes)
    put(fields, "GiftCertificate.Value", plain)
    put(fields, "GiftCertificate.ValueAsNumber", number)
    return order_subscriber(fields, order, ctx, valid_email(payload.get("email")), gift.get("email"), notes=notes)
