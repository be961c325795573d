"""Order documents (Centra's DirectToConsumerOrder shape) to Rule fields: base, common, items, billing.

Also the order events themselves: OrderCreated, OrderPlaced, OrderCompleted, OrderShipped, OrderCancellation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from integration.mapping.context import MappingContext, MappingError, Subscriber
from integration.mapping.values import (
    MoneyStyle,
    amount,
    as_dict,
    as_list,
    currency_code,
    decimal,
    dig,
    distinct,
    e164,
    fill_template,
    first_text,
    format_number,
    formatted,
    is_empty,
    language_code,
    money_value,
    rule_datetime,
    text,
)

Fields = dict[str, Any]


def put(fields: Fields, key: str, value: Any) -> None:
    """Set `key` unless the value is empty: an empty value would overwrite what Rule already holds."""
    if not is_empty(value):
        fields[key] = value


def put_money(fields: Fields, key: str, money: Any, style: MoneyStyle) -> None:
    """The plain field (formattedValue as given) and its `...Amount` (two decimals, a dot)."""
    put(fields, key, formatted(money, style))
    put(fields, f"{key}Amount", amount(money))


# --- addresses and the subscriber -----------------------------------------------------------------------------


def street(address: dict) -> str | None:
    """address1, plus ", " and address2 when there is one."""
    return ", ".join(p for p in (text(address.get("address1")), text(address.get("address2"))) if p) or None


def state(address: dict) -> str | None:
    """The state's code, else the free-text stateOrProvince."""
    return first_text(
        dig(address, "state", "code"),
        address.get("stateOrProvince"),
        address.get("state") if isinstance(address.get("state"), str) else None,
    )


def country(address: dict) -> str | None:
    """The ISO 3166 alpha-2 country code (`country.code`, or `country` given as a string)."""
    value = address.get("country")
    return first_text(dig(value, "code"), value if isinstance(value, str) else None)


def phone(address: dict) -> str | None:
    """The address's phone as given: phoneNumber, else cellPhoneNumber."""
    return first_text(address.get("phoneNumber"), address.get("cellPhoneNumber"))


def valid_email(value: Any) -> str | None:
    """A stripped email address, or None when it is missing or has no "@"."""
    email = text(value)
    return email if email and "@" in email and not any(c.isspace() for c in email) else None


def order_email(order: dict, *more: Any) -> str | None:
    """customer.email, else shippingAddress.email, else billingAddress.email, else the extra candidates."""
    candidates = [
        dig(order, "customer", "email"),
        dig(order, "shippingAddress", "email"),
        dig(order, "billingAddress", "email"),
        *more,
    ]
    for candidate in candidates:
        email = valid_email(candidate)
        if email:
            return email
    return None


def order_phone(order: dict) -> str | None:
    """The shipping (else billing) phone in E.164, read with that address's country; None when invalid."""
    for address in (as_dict(order.get("shippingAddress")), as_dict(order.get("billingAddress"))):
        number = phone(address)
        if number:
            return e164(number, country(address) or dig(order, "country", "code"))
    return e164(dig(order, "customer", "phoneNumber"), dig(order, "country", "code"))


def order_language(order: dict) -> str | None:
    """The order's language (ISO 639-1): `language`, else the customer's."""
    return language_code(order.get("language")) or language_code(dig(order, "customer", "language"))


def subscriber_for(
    fields: Fields,
    ctx: MappingContext,
    email: str | None,
    phone_number: str | None,
    language: str | None,
    notes: list[str] | None = None,
) -> Subscriber:
    """A Subscriber, or MappingError when there is no email to send it to."""
    if not email:
        raise MappingError("no email: the document has no customer, shipping or billing email")
    return Subscriber(
        email=email,
        phone_number=phone_number,
        language=language or language_code(ctx.default_language),
        fields=fields,
        notes=list(notes or []),
    )


# --- field groups -----------------------------------------------------------------------------------------------


def money_style(order: dict) -> MoneyStyle:
    """How this order writes money, from its own formattedValues."""
    totals = as_dict(order.get("totals"))
    samples = [
        order.get("grandTotal"),
        *totals.values(),
        *(as_dict(line).get("lineValue") for line in as_list(order.get("lines"))),
    ]
    return MoneyStyle.learn(samples, currency_code(order.get("grandTotal")))


def base_fields(fields: Fields, order: dict, *, number: Any = None, fallback_person: Any = None) -> None:
    """Order.Number, Order.Firstname, Order.Lastname (shipping name, else billing, else the customer)."""
    put(fields, "Order.Number", first_text(number, order.get("number")))
    people = [
        as_dict(order.get("shippingAddress")),
        as_dict(order.get("billingAddress")),
        as_dict(order.get("customer")),
        as_dict(fallback_person),
    ]
    put(fields, "Order.Firstname", first_text(*(p.get("firstName") for p in people)))
    put(fields, "Order.Lastname", first_text(*(p.get("lastName") for p in people)))


def vat(totals: dict, style: MoneyStyle) -> tuple[str | None, str | None]:
    """Order.Vat / Order.VatAmount: taxIncluded + taxAdded.

    When only one part is non-zero, its own formattedValue is the sum; otherwise the sum is written in the
    order's money style (ours: Centra has no formattedValue for the sum).
    """
    parts = [p for p in (totals.get("taxIncluded"), totals.get("taxAdded")) if money_value(p) is not None]
    if not parts:
        return None, None
    total = sum((money_value(p) for p in parts), Decimal(0))
    nonzero = [p for p in parts if money_value(p) != 0] or parts[:1]
    plain = formatted(nonzero[0], style) if len(nonzero) == 1 else style.format(total)
    return plain, amount(total)


def vat_percent(lines: list[dict]) -> str | None:
    """The lines' shared taxPercent; else the rate of the line with the largest line value ("25", "12.5")."""
    rates = [(decimal(line.get("taxPercent")), money_value(line.get("lineValue"))) for line in lines]
    rates = [(rate, value) for rate, value in rates if rate is not None]
    if not rates:
        return None
    if len({rate for rate, _ in rates}) == 1:
        return format_number(rates[0][0])
    largest = max(rates, key=lambda pair: pair[1] if pair[1] is not None else Decimal("-Infinity"))
    return format_number(largest[0])


def attribute_fields(fields: Fields, order: dict) -> None:
    """Order.<type>_<element> for each custom order attribute element.

    Kept in this one function because the shape is a guess ([I] in the reference):
    `attributes: [{type: {name}, elements: [{key, value | selectionValue}]}]`.
    """
    for attribute in as_list(order.get("attributes")):
        attribute = as_dict(attribute)
        type_name = first_text(dig(attribute, "type", "name"), attribute.get("type"))
        for element in as_list(attribute.get("elements")):
            element = as_dict(element)
            key = text(element.get("key"))
            if type_name and key:
                # A choice element's `value` is the option's id; its `selectionValue` is what the shopper saw.
                value = first_text(element.get("selectionValue"), element.get("value"))
                put(fields, f"Order.{type_name}_{key}", value)


def common_fields(fields: Fields, order: dict, ctx: MappingContext) -> None:
    """The common order fields (every order event and GiftCertificate; never returns)."""
    shipping = as_dict(order.get("shippingAddress"))
    totals = as_dict(order.get("totals"))
    lines = [as_dict(line) for line in as_list(order.get("lines"))]
    style = money_style(order)
    put(fields, "Order.Date", rule_datetime(order.get("orderDate") or order.get("createdAt"), ctx.time_zone))
    put(fields, "Customer.Number", text(dig(order, "customer", "id")))
    put(fields, "Customer.Language", order_language(order))
    put(fields, "Order.Street", street(shipping))
    put(fields, "Order.City", text(shipping.get("city")))
    put(fields, "Order.Zipcode", text(shipping.get("zipCode")))
    put(fields, "Order.State", state(shipping))
    put(fields, "Order.Country", country(shipping))
    put(fields, "Order.Company", text(shipping.get("companyName")))
    put(fields, "Order.Tele", phone(shipping))
    put_money(fields, "Order.Subtotal", totals.get("lineValues"), style)
    put_money(fields, "Order.Discount", totals.get("discounts"), style)
    put_money(fields, "Order.Shipping", totals.get("shipping"), style)
    put_money(fields, "Order.Total", order.get("grandTotal"), style)
    vat_plain, vat_amount = vat(totals, style)
    put(fields, "Order.Vat", vat_plain)
    put(fields, "Order.VatAmount", vat_amount)
    put(fields, "Order.Vatpercent", vat_percent(lines))
    put(fields, "Order.HandlingAmount", amount(totals.get("handling")))
    # The article lists TaxDeductionAmount with the common fields (sent like HandlingAmount, "0.00" included)
    # and only TaxDeduction under "For tax deduction".
    deducted = totals.get("taxDeducted")
    if (money_value(deducted) or 0) > 0:
        put(fields, "Order.TaxDeduction", formatted(deducted, style))
    put(fields, "Order.TaxDeductionAmount", amount(deducted))
    put(fields, "Order.PaymentMethod", first_text(dig(order, "paymentMethod", "name"), order.get("paymentMethod")))
    put(fields, "Order.DeliveryMethod", text(dig(order, "shippingPriceGroup", "shippingOption", "name")))
    put(fields, "Order.Currency", currency_code(order.get("grandTotal")))
    attribute_fields(fields, order)


def _line_brand(line: dict) -> str | None:
    return first_text(dig(line, "brand", "name"), line.get("productBrand"))


def _quantity(line: dict) -> int | None:
    number = decimal(line.get("quantity"))
    return int(number) if number is not None and number == number.to_integral_value() else None


def _json_number(value: Any) -> int | float | None:
    number = decimal(value)
    if number is None:
        return None
    return int(number) if number == number.to_integral_value() else float(number)


# Keys of a shipment or return line that describe the line itself, not the order line it points at.
_OWN_LINE_KEYS = frozenset({"id", "orderLine", "shipmentLine"})


def document_lines(lines: Any, kind: str, notes: list[str]) -> list[dict]:
    """A shipment's or a return's lines as order lines: each line's `orderLine`, with the line's own values
    (quantity, lineValue, unitPrice: what was shipped or refunded) on top. A line that is not an object is
    left out with a note."""
    result = []
    for number, line in enumerate(as_list(lines), start=1):
        if not isinstance(line, dict):
            notes.append(f"{kind} line {number} left out of the item fields: it is not an object ({line!r:.60})")
            continue
        merged = dict(as_dict(line.get("orderLine")))
        merged.update({k: v for k, v in line.items() if k not in _OWN_LINE_KEYS and v is not None})
        if merged:
            result.append(merged)
    return result


def item_fields(
    fields: Fields,
    lines: Iterable[dict],
    style: MoneyStyle,
    *,
    returned: bool = False,
    notes: list[str] | None = None,
) -> None:
    """The item fields of `lines` (distinct values in line order); for returns the refund value of each line."""
    lines = [as_dict(line) for line in lines if isinstance(line, dict)]
    if not lines:
        return
    put(fields, "Order.Brands", distinct(_line_brand(line) for line in lines))
    put(fields, "Order.Types", distinct(line.get("folderName") for line in lines))
    put(fields, "Order.Sizes", distinct(line.get("size") for line in lines))
    put(fields, "Order.Names", distinct(line.get("productName") for line in lines))
    put(fields, "Order.Variations", distinct(line.get("productVariantName") for line in lines))
    put(fields, "Order.Collections", distinct(dig(line, "collection", "name") for line in lines))
    put(fields, "Order.ProductCount", str(len(lines)))
    quantities = [q for q in (_quantity(line) for line in lines) if q is not None]
    if quantities:
        put(fields, "Order.IndividualProductCount", str(sum(quantities)))
    if returned:
        refund_values(fields, lines, style, notes if notes is not None else [])
        return
    put(fields, "Order.Skus", distinct(dig(line, "productSize", "SKU") for line in lines))
    products = []
    for line in lines:
        product = {
            "name": text(line.get("productName")),
            "variant": text(line.get("productVariantName")),
            "size": text(line.get("size")),
            "sku": text(dig(line, "productSize", "SKU")),
            "brand": _line_brand(line),
            "collection": text(dig(line, "collection", "name")),
            "quantity": _quantity(line),
            "unitPrice": formatted(line.get("unitPrice"), style),
            "unitPriceAmount": amount(line.get("unitPrice")),
            "lineValue": formatted(line.get("lineValue"), style),
            "lineValueAmount": amount(line.get("lineValue")),
            "discountPercent": _json_number(line.get("discountPercent")),
            "url": text(line.get("productExternalUrl")),
        }
        product = {k: v for k, v in product.items() if not is_empty(v)}
        if product:
            products.append(product)
    if products:
        put(fields, "Order.Products", json.dumps(products, ensure_ascii=False, separators=(",", ":")))


def refund_values(fields: Fields, lines: list[dict], style: MoneyStyle, notes: list[str]) -> None:
    """Order.RefundValuePcs / ...Amount: one value per returned line, in line order, repeats kept (the article:
    "for each item"); a line whose value cannot be read is left out with a note."""
    for key, value_of in (
        ("Order.RefundValuePcs", lambda money: formatted(money, style)),
        ("Order.RefundValuePcsAmount", amount),
    ):
        values = [value_of(line.get("lineValue")) for line in lines]
        missing = [str(number) for number, value in enumerate(values, start=1) if value is None]
        if missing:
            notes.append(f"{key}: returned line {', '.join(missing)} has no readable lineValue; left out")
        put(fields, key, [value for value in values if value is not None])


def billing_fields(fields: Fields, order: dict) -> None:
    """Order.Billing*: the billing address, with the same rules as the shipping fields."""
    billing = as_dict(order.get("billingAddress"))
    put(fields, "Order.BillingFirstname", text(billing.get("firstName")))
    put(fields, "Order.BillingLastname", text(billing.get("lastName")))
    put(fields, "Order.BillingStreet", street(billing))
    put(fields, "Order.BillingCity", text(billing.get("city")))
    put(fields, "Order.BillingZipcode", text(billing.get("zipCode")))
    put(fields, "Order.BillingState", state(billing))
    put(fields, "Order.BillingCountry", country(billing))
    put(fields, "Order.BillingTele", phone(billing))
    put(fields, "Order.BillingCompany", text(billing.get("companyName")))


def tracking_link(templates: dict[str, str], carrier: str | None, tracking: str | None) -> str | None:
    """The carrier's tracking template (exact name, then any case), else "default", with {tracking} filled."""
    template = None
    if carrier:
        template = templates.get(carrier) or next(
            (tpl for name, tpl in templates.items() if name.strip().lower() == carrier.strip().lower()), None
        )
    return fill_template(template or templates.get("default"), "tracking", tracking)


# --- the order events -------------------------------------------------------------------------------------------


def order_subscriber(
    fields: Fields, order: dict, ctx: MappingContext, *more_emails: Any, notes: list[str] | None = None
) -> Subscriber:
    """The subscriber of an order document with the given fields."""
    return subscriber_for(
        fields, ctx, order_email(order, *more_emails), order_phone(order), order_language(order), notes
    )


def completed_fields(fields: Fields, order: dict, style: MoneyStyle) -> None:
    """What a completed order carries beyond the common fields: Order.Handling and the billing address.

    Ours: the article lists carrier and tracking "(If we have a delivery (OrderShipped))" inside its
    OrderCompleted-only list, so a shipped order carries these as well as a completed one."""
    put(fields, "Order.Handling", formatted(dig(order, "totals", "handling"), style))
    billing_fields(fields, order)


def map_order(event: str, payload: dict, ctx: MappingContext) -> Subscriber:
    """OrderPlaced, OrderCompleted, OrderCancellation: `{"order": {...}}` (a bare order document also works)."""
    order = as_dict(payload.get("order")) if "order" in payload else payload
    fields: Fields = {}
    base_fields(fields, order)
    common_fields(fields, order, ctx)
    style = money_style(order)
    item_fields(fields, as_list(order.get("lines")), style)
    if event == "OrderCompleted":
        completed_fields(fields, order, style)
    if event == "OrderCancellation":
        # Ours: the merchant's message only; the shopper's order comment is not a message to them.
        put(fields, "Order.AdditionalMessage", text(ctx.cancellation_message))
        put(fields, "Order.CompanyUrl", text(ctx.shop_url))
    return order_subscriber(fields, order, ctx, payload.get("email"))


def selection_id(payload: dict) -> str | None:
    """The cart's selection id: the event's `selection` (a string or an object with an id)."""
    selection = payload.get("selection")
    order = as_dict(payload.get("order"))
    return first_text(
        dig(selection, "id"),
        dig(selection, "selection"),
        selection,
        order.get("selection"),
        dig(order, "selection", "id"),
    )


def cart_items(order: dict) -> list[dict]:
    """The cart's item lines (non-empty objects in `lines`): OrderCreated needs at least one."""
    return [line for line in as_list(order.get("lines")) if isinstance(line, dict) and line]


def cart_url(ctx: MappingContext, selection: str | None, notes: list[str]) -> str | None:
    """Order.CartUrl when the connection's 'send cart link' is on; a note when it is on but cannot be built."""
    if not ctx.send_cart_link:
        return None
    link = fill_template(ctx.cart_link_template, "selection", selection)
    if link is None:
        if not text(ctx.cart_link_template):
            why = "the connection has no cart link template"
        elif "{selection}" not in ctx.cart_link_template:
            why = "the connection's cart link template has no {selection}"
        else:
            why = "the cart has no selection id"
        notes.append(f"Order.CartUrl left out: 'send cart link' is on but {why}")
    return link


def map_order_created(payload: dict, ctx: MappingContext) -> Subscriber:
    """OrderCreated (abandoned cart): `{"email", "selection", "order"}`; the number is the selection id until
    the order has one, and the cart link is sent when the connection's setting is on.

    A cart without items is a MappingError: the article's OrderCreated is "when one or more items have been
    added", and a Rule call without item fields would start the merchant's automation on an empty cart."""
    order = as_dict(payload.get("order"))
    lines = cart_items(order)
    if not lines:
        raise MappingError("OrderCreated: the cart has no items (order.lines is empty)")
    selection = selection_id(payload)
    notes: list[str] = []
    fields: Fields = {}
    base_fields(fields, order, number=first_text(order.get("number"), selection))
    common_fields(fields, order, ctx)
    item_fields(fields, lines, money_style(order))
    put(fields, "Order.CartUrl", cart_url(ctx, selection, notes))
    email = valid_email(payload.get("email")) or order_email(order)
    return subscriber_for(fields, ctx, email, order_phone(order), order_language(order), notes)


def shipment_order(payload: dict) -> tuple[dict, dict]:
    """(shipment, order) from `{"shipment": {..., "order": {...}}}` or `{"shipment": {...}, "order": {...}}`."""
    shipment = as_dict(payload.get("shipment")) if "shipment" in payload else payload
    order = dict(as_dict(shipment.get("order")) or as_dict(payload.get("order")))
    # A shipment may go to another address than the order's; the shipment's own address wins when given.
    if isinstance(shipment.get("shippingAddress"), dict) and shipment["shippingAddress"]:
        order["shippingAddress"] = shipment["shippingAddress"]
    if not order.get("customer") and isinstance(shipment.get("customer"), dict):
        order["customer"] = shipment["customer"]
    return shipment, order


def shipped_lines(shipment: dict, order: dict, notes: list[str]) -> list[dict]:
    """What this shipment holds: its own lines when it has any (a partial shipment lists only what left the
    warehouse), else the order's lines."""
    lines = document_lines(shipment.get("lines"), "shipment", notes)
    return lines or [line for line in as_list(order.get("lines")) if isinstance(line, dict)]


def map_order_shipped(payload: dict, ctx: MappingContext) -> Subscriber:
    """OrderShipped, one per shipment: the order's fields from the shipment's order, the item fields of what
    this shipment holds, the billing fields as on OrderCompleted, plus carrier, tracking number and link."""
    shipment, order = shipment_order(payload)
    notes: list[str] = []
    style = money_style(order)
    fields: Fields = {}
    base_fields(fields, order)
    common_fields(fields, order, ctx)
    item_fields(fields, shipped_lines(shipment, order, notes), style)
    completed_fields(fields, order, style)
    carrier = first_text(dig(shipment, "carrierInformation", "carrierName"), dig(shipment, "shipmentPlugin", "name"))
    tracking = text(shipment.get("trackingNumber"))
    put(fields, "Order.Carrier", carrier)
    put(fields, "Order.Trackingno", tracking)
    put(fields, "Order.Trackinglink", tracking_link(ctx.tracking_link_templates, carrier, tracking))
    return order_subscriber(fields, order, ctx, payload.get("email"), notes=notes)
