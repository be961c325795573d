"""Returns (Centra's DirectToConsumerReturn) to Rule fields: RefundCompleted and ReturnCompleted.

As the article says, a return carries no common order fields: only the base fields, the item fields of the
lines that came back (no Skus, no Products) and the refund fields.
"""

from __future__ import annotations

from integration.mapping.context import MappingContext, Subscriber
from integration.mapping.orders import (
    Fields,
    base_fields,
    document_lines,
    item_fields,
    order_email,
    order_language,
    order_phone,
    put,
    put_money,
    subscriber_for,
)
from integration.mapping.values import MoneyStyle, as_dict, currency_code, dig, language_code


def map_return(event: str, payload: dict, ctx: MappingContext) -> Subscriber:
    """RefundCompleted / ReturnCompleted: `{"return": {..., "order": {...}}}` (a top-level order also works)."""
    ret = as_dict(payload.get("return")) if "return" in payload else payload
    order = as_dict(ret.get("order")) or as_dict(payload.get("order"))
    totals = as_dict(ret.get("totals"))
    notes: list[str] = []
    # What was refunded for a line is the return line's own value and quantity, not the order line's.
    lines = document_lines(ret.get("lines"), "return", notes)
    style = MoneyStyle.learn(
        [ret.get("grandTotal"), *totals.values(), *(line.get("lineValue") for line in lines), order.get("grandTotal")],
        currency_code(ret.get("grandTotal")),
    )
    fields: Fields = {}
    base_fields(fields, order, fallback_person=ret.get("customer"))
    item_fields(fields, lines, style, returned=True, notes=notes)
    put_money(fields, "Order.RefundValueTotal", ret.get("grandTotal"), style)
    put_money(fields, "Order.RefundHandlingCost", totals.get("handling"), style)
    put_money(fields, "Order.RefundReturnCost", totals.get("returnCost"), style)
    put(fields, "Order.RefundCurrency", currency_code(ret.get("grandTotal")) or currency_code(order.get("grandTotal")))
    email = order_email(order, dig(ret, "customer", "email"), payload.get("email"))
    language = order_language(order) or language_code(dig(ret, "customer", "language"))
    return subscriber_for(fields, ctx, email, order_phone(order), language, notes)
