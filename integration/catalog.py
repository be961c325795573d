"""The field catalog as data: every event, its default Rule tags, and every field it sends.

This module is the single source of the contract with the merchant's Rule account (names are exact, case
included). The admin, the README table, the mapping and the tests read it from here. It follows
`field-catalog.md` and Rule's Centra article; where the article is silent the rule here is ours and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TEXT, DATE, DATETIME, MULTIPLE, JSON = "text", "date", "datetime", "multiple", "json"
FIELD_TYPES = (TEXT, DATE, DATETIME, MULTIPLE, JSON)


@dataclass(frozen=True)
class EventSpec:
    name: str
    default_tags: tuple[str, ...]
    default_enabled: bool
    when: str
    source: str  # "centra" (native webhooks or JSON), "json" (storefront JSON only), "backinstock"
    manual_mode_only: bool = False


@dataclass(frozen=True)
class FieldSpec:
    key: str
    type: str
    source: str
    events: frozenset[str]
    condition: str = ""
    dynamic: bool = False  # a pattern (Order.<attribute>_<element>), not one fixed key
    per_item: bool = False  # a `multiple` with one value per item, repeats kept (not a distinct list)
    group: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "group", self.key.split(".", 1)[0])


EVENTS: dict[str, EventSpec] = {
    e.name: e
    for e in [
        EventSpec(
            "OrderCreated",
            ("OrderCreated",),
            True,
            "abandoned-cart signal: a checkout with an email and items, order not completed; a cart without "
            "items is refused (400)",
            "json",
        ),
        EventSpec(
            "OrderPlaced",
            ("OrderPlaced",),
            True,
            "manual-confirmation mode only: an order seen in status PENDING; in auto-confirm mode an OrderPlaced "
            "JSON event is stored as ignored with the reason, never sent",
            "centra",
            manual_mode_only=True,
        ),
        EventSpec(
            "OrderCompleted",
            ("OrderCompleted",),
            True,
            "auto-confirm mode: an order first seen in any status but CANCELLED; manual mode: an order seen "
            "CONFIRMED, PROCESSING or SHIPPED",
            "centra",
        ),
        # Ours: one per shipment; its item fields list that shipment's lines (a partial shipment lists only what
        # left the warehouse), the order's lines when the shipment has none.
        EventSpec(
            "OrderShipped",
            ("OrderShipped",),
            True,
            "a shipment with isShipped: true, one per shipment; item fields from the shipment's lines (else the "
            "order's)",
            "centra",
        ),
        EventSpec("OrderCancellation", ("OrderCancellation",), False, "an order seen CANCELLED", "centra"),
        # The article's RefundCompleted fires "when a product is returned": every completed return, refunded or
        # not. Ours: ReturnCompleted (off by default) is for merchants who want to tell the two apart; when it
        # is on, a return with nothing refunded goes there instead. A return never starts both.
        EventSpec(
            "RefundCompleted",
            ("RefundCompleted",),
            True,
            "a return completed: every one, refunded or not, unless ReturnCompleted is on (then only those with "
            "a refunded value above zero)",
            "centra",
        ),
        EventSpec(
            "ReturnCompleted",
            ("ReturnCompleted",),
            False,
            "when switched on: a return completed with nothing refunded (exchange, store credit), instead of "
            "RefundCompleted",
            "centra",
        ),
        EventSpec("Newsletter", ("Newsletter",), True, "newsletter sign-up on the site or in checkout", "json"),
        EventSpec(
            "CustomerRegistered",
            ("CustomerRegistered",),
            False,
            "a customer account created (native customer webhook or JSON event)",
            "centra",
        ),
        EventSpec("PasswordReset", ("PasswordReset",), False, "'Forgot your password?' with a restore link", "json"),
        EventSpec("GiftCertificate", ("GiftCertificate",), False, "a gift certificate bought", "json"),
        EventSpec(
            "ProductAlertWaiting",
            ("Rule - Waiting For Product Alert",),
            True,
            "a shopper starts watching an out-of-stock size",
            "backinstock",
        ),
        EventSpec(
            "ProductAlertTriggered",
            ("Rule - Product Alert Triggered",),
            True,
            "stock for a watched size is back",
            "backinstock",
        ),
    ]
}

# Event groups used by the field table below.
ORDER_EVENTS = frozenset({"OrderCreated", "OrderPlaced", "OrderCompleted", "OrderShipped", "OrderCancellation"})
RETURN_EVENTS = frozenset({"RefundCompleted", "ReturnCompleted"})
# Ours: a gift certificate carries its order's base and common fields (the article: "Common Order fields +
# GiftCertificate fields"), not its item fields.
BASE_EVENTS = ORDER_EVENTS | RETURN_EVENTS | {"GiftCertificate"}
COMMON_EVENTS = ORDER_EVENTS | {"GiftCertificate"}
ITEM_EVENTS = ORDER_EVENTS | RETURN_EVENTS
COMPLETED_EVENTS = frozenset({"OrderCompleted", "OrderShipped"})
CUSTOMER_EVENTS = frozenset({"CustomerRegistered", "PasswordReset"})
ALERT_EVENTS = frozenset({"ProductAlertWaiting", "ProductAlertTriggered"})


def _f(key, type_, source, events, condition="", dynamic=False, per_item=False) -> FieldSpec:
    return FieldSpec(key, type_, source, frozenset(events), condition, dynamic, per_item)


def _money(key, source, events, condition="") -> list[FieldSpec]:
    """A money value: the plain field is Centra's formattedValue, `...Amount` the number with two decimals."""
    return [
        _f(key, TEXT, f"{source}.formattedValue", events, condition),
        _f(f"{key}Amount", TEXT, f"{source}.value (two decimals)", events, condition),
    ]


FIELDS: tuple[FieldSpec, ...] = tuple(
    [
        # Base fields
        _f(
            "Order.Number",
            TEXT,
            "number (OrderCreated: the selection id when no order number exists yet)",
            BASE_EVENTS,
        ),
        _f("Order.Firstname", TEXT, "shippingAddress.firstName, else billing, else customer", BASE_EVENTS),
        _f("Order.Lastname", TEXT, "shippingAddress.lastName, else billing, else customer", BASE_EVENTS),
        # Common order fields
        _f("Order.Date", DATETIME, "orderDate, else createdAt, in the connection's time zone", COMMON_EVENTS),
        _f("Customer.Number", TEXT, "customer.id", COMMON_EVENTS),
        _f("Customer.Language", TEXT, "language.code (ISO 639-1)", COMMON_EVENTS),
        _f("Order.Street", TEXT, 'shippingAddress.address1 + ", " + address2 when present', COMMON_EVENTS),
        _f("Order.City", TEXT, "shippingAddress.city", COMMON_EVENTS),
        _f("Order.Zipcode", TEXT, "shippingAddress.zipCode", COMMON_EVENTS),
        _f("Order.State", TEXT, "shippingAddress.state.code, else stateOrProvince", COMMON_EVENTS),
        _f("Order.Country", TEXT, "shippingAddress.country.code (ISO 3166 alpha-2)", COMMON_EVENTS),
        _f("Order.Company", TEXT, "shippingAddress.companyName", COMMON_EVENTS),
        _f("Order.Tele", TEXT, "shippingAddress.phoneNumber, else cellPhoneNumber, as given", COMMON_EVENTS),
        *_money("Order.Subtotal", "totals.lineValues", COMMON_EVENTS),
        *_money("Order.Discount", "totals.discounts", COMMON_EVENTS),
        *_money("Order.Shipping", "totals.shipping", COMMON_EVENTS),
        *_money("Order.Total", "grandTotal", COMMON_EVENTS),
        *_money("Order.Vat", "totals.taxIncluded + totals.taxAdded", COMMON_EVENTS),
        _f(
            "Order.Vatpercent",
            TEXT,
            "the lines' taxPercent when they share one, else the rate of the largest line value",
            COMMON_EVENTS,
        ),
        _f("Order.HandlingAmount", TEXT, "totals.handling.value (two decimals)", COMMON_EVENTS),
        # The article lists TaxDeductionAmount among the common fields (beside HandlingAmount, sent "0.00" too);
        # only TaxDeduction is under "For tax deduction".
        _f(
            "Order.TaxDeduction",
            TEXT,
            "totals.taxDeducted.formattedValue",
            COMMON_EVENTS,
            "only when above zero",
        ),
        _f("Order.TaxDeductionAmount", TEXT, "totals.taxDeducted.value (two decimals)", COMMON_EVENTS),
        _f("Order.PaymentMethod", TEXT, "paymentMethod.name", COMMON_EVENTS),
        _f("Order.DeliveryMethod", TEXT, "shippingPriceGroup.shippingOption.name", COMMON_EVENTS),
        _f("Order.Currency", TEXT, "grandTotal.currency.code", COMMON_EVENTS),
        _f(
            "Order.<attribute>_<element>",
            TEXT,
            "each custom order attribute element, e.g. Order.giftWrap_message",
            COMMON_EVENTS,
            dynamic=True,
        ),
        # Items (returns: the returned lines)
        _f("Order.Brands", MULTIPLE, "lines: brand.name, else productBrand", ITEM_EVENTS),
        _f("Order.Types", MULTIPLE, "lines: folderName", ITEM_EVENTS),
        _f("Order.Sizes", MULTIPLE, "lines: size", ITEM_EVENTS),
        _f("Order.Names", MULTIPLE, "lines: productName", ITEM_EVENTS),
        _f("Order.Variations", MULTIPLE, "lines: productVariantName", ITEM_EVENTS),
        _f("Order.Collections", MULTIPLE, "lines: collection.name", ITEM_EVENTS),
        _f("Order.ProductCount", TEXT, "number of lines", ITEM_EVENTS),
        _f("Order.IndividualProductCount", TEXT, "sum of quantity", ITEM_EVENTS),
        _f("Order.Skus", MULTIPLE, "lines: productSize.SKU", ORDER_EVENTS, "not for returns"),
        _f(
            "Order.Products",
            JSON,
            "one object per line: name, variant, size, sku, brand, collection, quantity, unitPrice, "
            "unitPriceAmount, lineValue, lineValueAmount, discountPercent, url",
            ORDER_EVENTS,
            "not for returns",
        ),
        # Ours: the article says "for each item"; one value per returned line, in line order, repeats kept (two
        # lines of 400 give two values), so a template can pair them with the lines. A line whose value cannot be
        # read is left out with a note on the delivery.
        _f(
            "Order.RefundValuePcs",
            MULTIPLE,
            "each returned line's lineValue.formattedValue, one per line, repeats kept",
            RETURN_EVENTS,
            "returns only",
            per_item=True,
        ),
        _f(
            "Order.RefundValuePcsAmount",
            MULTIPLE,
            "each returned line's lineValue.value (two decimals), one per line, repeats kept",
            RETURN_EVENTS,
            "returns only",
            per_item=True,
        ),
        # Event-specific
        # Ours: 'send cart link' on needs a template with {selection}; the admin and the `connection` command
        # refuse it without one, and a link that still cannot be built leaves a note on the delivery.
        _f(
            "Order.CartUrl",
            TEXT,
            "the connection's cart link template with {selection} filled",
            {"OrderCreated"},
            "only when the connection's 'send cart link' is on; it needs a template",
        ),
        # Ours: the article's "Only for OrderCompleted" list also holds carrier and tracking "(If we have a
        # delivery (OrderShipped))": a shipped order carries what a completed one does, plus the delivery.
        _f("Order.Handling", TEXT, "totals.handling.formattedValue", COMPLETED_EVENTS),
        _f("Order.BillingFirstname", TEXT, "billingAddress.firstName", COMPLETED_EVENTS),
        _f("Order.BillingLastname", TEXT, "billingAddress.lastName", COMPLETED_EVENTS),
        _f(
            "Order.BillingStreet",
            TEXT,
            'billingAddress.address1 + ", " + address2 when present',
            COMPLETED_EVENTS,
        ),
        _f("Order.BillingCity", TEXT, "billingAddress.city", COMPLETED_EVENTS),
        _f("Order.BillingZipcode", TEXT, "billingAddress.zipCode", COMPLETED_EVENTS),
        _f("Order.BillingState", TEXT, "billingAddress.state.code, else stateOrProvince", COMPLETED_EVENTS),
        _f("Order.BillingCountry", TEXT, "billingAddress.country.code", COMPLETED_EVENTS),
        _f("Order.BillingTele", TEXT, "billingAddress.phoneNumber, else cellPhoneNumber", COMPLETED_EVENTS),
        _f("Order.BillingCompany", TEXT, "billingAddress.companyName", COMPLETED_EVENTS),
        _f(
            "Order.Carrier",
            TEXT,
            "carrierInformation.carrierName, else shipmentPlugin.name",
            {"OrderShipped"},
        ),
        _f("Order.Trackingno", TEXT, "trackingNumber", {"OrderShipped"}),
        _f(
            "Order.Trackinglink",
            TEXT,
            "the connection's tracking link template for the carrier (else the default) with {tracking} filled",
            {"OrderShipped"},
            "only when a template and a tracking number exist",
        ),
        # Ours: the message is the merchant's; the shopper's order comment (otherComment) is never sent here.
        _f(
            "Order.AdditionalMessage",
            TEXT,
            "the connection's cancellation message",
            {"OrderCancellation"},
            "only when one is configured",
        ),
        _f("Order.CompanyUrl", TEXT, "the connection's shop URL", {"OrderCancellation"}),
        *_money("Order.RefundValueTotal", "return grandTotal", RETURN_EVENTS),
        *_money("Order.RefundHandlingCost", "return totals.handling", RETURN_EVENTS),
        *_money("Order.RefundReturnCost", "return totals.returnCost", RETURN_EVENTS),
        _f("Order.RefundCurrency", TEXT, "return grandTotal.currency.code", RETURN_EVENTS),
        *[
            _f(f"GiftCertificate.{name}", TEXT, f"giftCertificate.{src}", {"GiftCertificate"})
            for name, src in [
                ("Name", "name"),
                ("Code", "code"),
                ("Link", "link"),
                ("Message", "message"),
                ("Description", "description"),
                ("Friend", "friend"),
                ("Currency", "currency"),
            ]
        ],
        # Ours (the article is silent on the shape): value may be a MonetaryValue, a number or a display text.
        _f(
            "GiftCertificate.Value",
            TEXT,
            "giftCertificate.value: its formattedValue, a number in the order's money style, or a text as given",
            {"GiftCertificate"},
        ),
        _f(
            "GiftCertificate.ValueAsNumber",
            TEXT,
            'giftCertificate.valueAsNumber, else the value\'s amount (read from a text like "500.00 SEK") '
            "(two decimals)",
            {"GiftCertificate"},
            "a value that cannot be read leaves a note on the delivery",
        ),
        _f("GiftCertificate.Date", DATE, "giftCertificate.date", {"GiftCertificate"}),
        _f("GiftCertificate.DueDate", DATE, "giftCertificate.dueDate", {"GiftCertificate"}),
        # Non-order events
        _f("Contact.Language", TEXT, "event language (ISO 639-1)", {"Newsletter"}),
        *[
            _f(f"Address.{name}", TEXT, f"event address.{src}", {"Newsletter"})
            for name, src in [
                ("Firstname", "firstName"),
                ("Lastname", "lastName"),
                ("Street", "address1 (+ address2)"),
                ("City", "city"),
                ("Zipcode", "zipCode"),
                ("State", "state.code, else stateOrProvince"),
                ("Country", "country.code"),
            ]
        ],
        *[
            _f(f"Customer.{name}", TEXT, f"customer {src}", CUSTOMER_EVENTS)
            for name, src in [
                ("Firstname", "firstName"),
                ("Lastname", "lastName"),
                ("Language", "language (ISO 639-1)"),
                ("Tele", "phoneNumber, else billingAddress.phoneNumber"),
                ("City", "billingAddress.city"),
                ("Country", "billingAddress.country.code"),
                ("Zipcode", "billingAddress.zipCode"),
                ("Address1", "billingAddress.address1"),
                ("Address2", "billingAddress.address2"),
            ]
        ],
        _f("Customer.PasswordRestoreLink", TEXT, "event passwordRestoreLink", {"PasswordReset"}),
        *[
            _f(f"ProductAlert.{name}", TEXT, f"product {src}", ALERT_EVENTS)
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
        ],
    ]
)

# A key may be listed twice for different events (Customer.Language: common order fields and customer events).
FIELDS_BY_KEY: dict[str, FieldSpec] = {}
EVENTS_BY_KEY: dict[str, frozenset[str]] = {}
for _spec in FIELDS:
    FIELDS_BY_KEY.setdefault(_spec.key, _spec)
    EVENTS_BY_KEY[_spec.key] = EVENTS_BY_KEY.get(_spec.key, frozenset()) | _spec.events
EVENT_CHOICES = [(name, name) for name in EVENTS]
AUTOMATION_CHOICES = [("reset", "reset"), ("force", "force"), ("none", "none (no automation)")]
DEFAULT_AUTOMATION = "reset"

# Inbound JSON event types that are not Rule events of their own.
BACK_IN_STOCK_TYPES = ("BackInStockSubscribe", "BackInStockUnsubscribe", "StockUpdate")
# Inbound JSON event types that map straight to one catalog event.
JSON_EVENT_TYPES = tuple(name for name, spec in EVENTS.items() if spec.source != "backinstock")


def fields_for_event(event: str) -> list[FieldSpec]:
    """The catalog's fields for an event, in catalog order."""
    return [f for f in FIELDS if event in f.events]


def field_type(key: str) -> str:
    """The Rule type of a key, also for dynamic `Order.<attribute>_<element>` keys (text)."""
    spec = FIELDS_BY_KEY.get(key)
    return spec.type if spec else TEXT


def is_per_item(key: str) -> bool:
    """True for a `multiple` that keeps one value per item (repeats included) instead of a distinct list."""
    spec = FIELDS_BY_KEY.get(key)
    return bool(spec and spec.per_item)


def is_field_allowed(event: str, key: str) -> bool:
    """True when the catalog lets `event` send `key` (dynamic attribute keys count for the events they cover)."""
    events = EVENTS_BY_KEY.get(key)
    if events is not None:
        return event in events
    attr = FIELDS_BY_KEY["Order.<attribute>_<element>"]
    return key.startswith("Order.") and "_" in key and event in attr.events
