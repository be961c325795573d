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
            "abandoned-cart signal: a checkout with an email and items, order not completed",
            "json",
        ),
        EventSpec(
            "OrderPlaced",
            ("OrderPlaced",),
            True,
            "manual-confirmation mode only: an order seen in status PENDING",
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
        EventSpec("OrderShipped", ("OrderShipped",), True, "a shipment with isShipped: true", "centra"),
        EventSpec("OrderCancellation", ("OrderCancellation",), False, "an order seen CANCELLED", "centra"),
        EventSpec(
            "RefundCompleted",
            ("RefundCompleted",),
            True,
            "a return completed with a refunded value above zero",
            "centra",
        ),
        EventSpec(
            "ReturnCompleted",
            ("ReturnCompleted",),
            False,
            "a return completed with nothing refunded (exchange, store credit)",
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
CUSTOMER_EVENTS = frozenset({"CustomerRegistered", "PasswordReset"})
ALERT_EVENTS = frozenset({"ProductAlertWaiting", "ProductAlertTriggered"})


def _f(key, type_, source, events, condition="", dynamic=False) -> FieldSpec:
    return FieldSpec(key, type_, source, frozenset(events), condition, dynamic)


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
        *_money("Order.TaxDeduction", "totals.taxDeducted", COMMON_EVENTS, "only when above zero"),
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
        _f(
            "Order.RefundValuePcs",
            MULTIPLE,
            "returned lines: lineValue.formattedValue",
            RETURN_EVENTS,
            "returns only",
        ),
        _f(
            "Order.RefundValuePcsAmount",
            MULTIPLE,
            "returned lines: lineValue.value (two decimals)",
            RETURN_EVENTS,
            "returns only",
        ),
        # Event-specific
        _f(
            "Order.CartUrl",
            TEXT,
            "the connection's cart link template with {selection} filled",
            {"OrderCreated"},
            "only when the connection's 'send cart link' is on",
        ),
        _f("Order.Handling", TEXT, "totals.handling.formattedValue", {"OrderCompleted"}),
        _f("Order.BillingFirstname", TEXT, "billingAddress.firstName", {"OrderCompleted"}),
        _f("Order.BillingLastname", TEXT, "billingAddress.lastName", {"OrderCompleted"}),
        _f(
            "Order.BillingStreet",
            TEXT,
            'billingAddress.address1 + ", " + address2 when present',
            {"OrderCompleted"},
        ),
        _f("Order.BillingCity", TEXT, "billingAddress.city", {"OrderCompleted"}),
        _f("Order.BillingZipcode", TEXT, "billingAddress.zipCode", {"OrderCompleted"}),
        _f("Order.BillingState", TEXT, "billingAddress.state.code, else stateOrProvince", {"OrderCompleted"}),
        _f("Order.BillingCountry", TEXT, "billingAddress.country.code", {"OrderCompleted"}),
        _f("Order.BillingTele", TEXT, "billingAddress.phoneNumber, else cellPhoneNumber", {"OrderCompleted"}),
        _f("Order.BillingCompany", TEXT, "billingAddress.companyName", {"OrderCompleted"}),
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
        _f(
            "Order.AdditionalMessage",
            TEXT,
            "the connection's cancellation message, else the order's otherComment",
            {"OrderCancellation"},
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
                ("Value", "value"),
                ("ValueAsNumber", "valueAsNumber (two decimals)"),
            ]
        ],
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


def is_field_allowed(event: str, key: str) -> bool:
    """True when the catalog lets `event` send `key` (dynamic attribute keys count for the events they cover)."""
    events = EVENTS_BY_KEY.get(key)
    if events is not None:
        return event in events
    attr = FIELDS_BY_KEY["Order.<attribute>_<element>"]
    return key.startswith("Order.") and "_" in key and event in attr.events
