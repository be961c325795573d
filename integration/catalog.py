"""The catalog: every event the bridge sends to Rule, declared once, and every field those events send.

An event is one `EventSpec` (its default tags, when it fires, its validation serializer, its mapper, its object
key, its sample and, for events Centra sends, how Centra's state decides it), passed to `declare()`. The core's
events are declared in `integration/events.py`, a plug-in's in its own module from its AppConfig.ready()
(`backinstock/events.py`). Inbound validation, processing, the Centra sync, the admin, the preview, test calls,
the README table and the tests all read the registry here; nothing else lists events.

The fields are the contract with the merchant's Rule account (names are exact, case included). They follow
`field-catalog.md` and Rule's Centra article; where the article is silent the rule here is ours and says so.
This module holds data only: it imports nothing of the service, so the mapping and the models can read it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

TEXT, DATE, DATETIME, MULTIPLE, JSON = "text", "date", "datetime", "multiple", "json"
FIELD_TYPES = (TEXT, DATE, DATETIME, MULTIPLE, JSON)

# mapper(event, payload, ctx) -> Subscriber (integration.mapping); kept as plain callables so this module stays
# free of imports.
Mapper = Callable[[str, dict, Any], Any]


@dataclass(frozen=True)
class CentraTrigger:
    """How Centra's *current* state of one object decides an event (events Centra's webhooks announce).

    `kind` is the webhook type and the object fetched for it (order, shipment, return, customer); `fires(doc,
    manual_confirmation=..., action=..., enabled=...)` says whether the object's state means this event for a
    connection in that mode with those flows on (`enabled`: a frozenset of event names); `actions`, when
    given, are the webhook actions that can fire it at all (others are ignored without asking Centra);
    `superseded_by` names the events on the same object that make this one stale once delivered.
    """

    kind: str
    fires: Callable[..., bool]
    actions: frozenset[str] | None = None
    superseded_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class InboundType:
    """A JSON event type the /events endpoint accepts: its body serializer (DRF) and what the logs search by.

    Every catalog event with a serializer is one; a plug-in may add types of its own that are not catalog events
    (back in stock's BackInStockSubscribe). `object_ref(body)` is the order number, id or item shown and searched
    in the admin (default: the number of the order at `order_at`); the email is read from the body's `email`,
    its `customer.email` or the order at `order_at`.
    """

    name: str
    serializer: type
    object_ref: Callable[[dict], Any] | None = None
    order_at: tuple[str, ...] = ("order",)


@dataclass(frozen=True)
class EventSpec:
    """One catalog event, everything the service knows about it."""

    name: str
    default_tags: tuple[str, ...]
    default_enabled: bool
    when: str  # when it fires, in the merchant's words (README table, admin)
    mapper: Mapper
    sample: dict  # a realistic payload: test calls, preview, docs
    serializer: type | None = None  # validates the JSON event body at /events; None: not accepted as JSON
    object_key: Callable[[dict], str | None] | None = None  # the object it is about: each reaches Rule once
    object_ref: Callable[[dict], Any] | None = None  # see InboundType
    order_at: tuple[str, ...] = ("order",)
    centra: CentraTrigger | None = None  # None: Centra's webhooks never announce it
    manual_mode_only: bool = False  # only ever sent in Centra's manual-confirmation mode
    emitted_by: str = ""  # a plug-in that emits it itself (e.g. "backinstock"), for the docs
    # sent_as(body, enabled) -> the catalog event a JSON event of this type is sent as, when the connection's
    # flows decide it (the completed-return events); None: sent as its own type.
    sent_as: Callable[[dict, frozenset[str]], str] | None = None

    @property
    def accepts_json(self) -> bool:
        return self.serializer is not None

    @property
    def source(self) -> str:
        """Where it comes from: "centra" (native webhooks or JSON), "json" (JSON events only), or the plug-in."""
        if self.centra is not None:
            return "centra"
        return "json" if self.accepts_json else self.emitted_by

    def inbound_type(self) -> InboundType | None:
        if self.serializer is None:
            return None
        return InboundType(self.name, self.serializer, self.object_ref, self.order_at)


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


def field_spec(key, type_, source, events, condition="", dynamic=False, per_item=False) -> FieldSpec:
    """One field: its Rule key and type, where its value comes from, the events that send it."""
    return FieldSpec(key, type_, source, frozenset(events), condition, dynamic, per_item)


def _money(key, source, events, condition="") -> list[FieldSpec]:
    """A money value: the plain field is Centra's formattedValue, `...Amount` the number with two decimals."""
    return [
        field_spec(key, TEXT, f"{source}.formattedValue", events, condition),
        field_spec(f"{key}Amount", TEXT, f"{source}.value (two decimals)", events, condition),
    ]


# The core events' fields; a plug-in adds its own with declare(spec, fields=...).
FIELDS: list[FieldSpec] = list(
    [
        # Base fields
        field_spec(
            "Order.Number",
            TEXT,
            "number (OrderCreated: the selection id when no order number exists yet)",
            BASE_EVENTS,
        ),
        field_spec("Order.Firstname", TEXT, "shippingAddress.firstName, else billing, else customer", BASE_EVENTS),
        field_spec("Order.Lastname", TEXT, "shippingAddress.lastName, else billing, else customer", BASE_EVENTS),
        # Common order fields
        field_spec("Order.Date", DATETIME, "orderDate, else createdAt, in the connection's time zone", COMMON_EVENTS),
        field_spec("Customer.Number", TEXT, "customer.id", COMMON_EVENTS),
        field_spec("Customer.Language", TEXT, "language.code (ISO 639-1)", COMMON_EVENTS),
        field_spec("Order.Street", TEXT, 'shippingAddress.address1 + ", " + address2 when present', COMMON_EVENTS),
        field_spec("Order.City", TEXT, "shippingAddress.city", COMMON_EVENTS),
        field_spec("Order.Zipcode", TEXT, "shippingAddress.zipCode", COMMON_EVENTS),
        field_spec("Order.State", TEXT, "shippingAddress.state.code, else stateOrProvince", COMMON_EVENTS),
        field_spec("Order.Country", TEXT, "shippingAddress.country.code (ISO 3166 alpha-2)", COMMON_EVENTS),
        field_spec("Order.Company", TEXT, "shippingAddress.companyName", COMMON_EVENTS),
        field_spec("Order.Tele", TEXT, "shippingAddress.phoneNumber, else cellPhoneNumber, as given", COMMON_EVENTS),
        *_money("Order.Subtotal", "totals.lineValues", COMMON_EVENTS),
        *_money("Order.Discount", "totals.discounts", COMMON_EVENTS),
        *_money("Order.Shipping", "totals.shipping", COMMON_EVENTS),
        *_money("Order.Total", "grandTotal", COMMON_EVENTS),
        *_money("Order.Vat", "totals.taxIncluded + totals.taxAdded", COMMON_EVENTS),
        field_spec(
            "Order.Vatpercent",
            TEXT,
            "the lines' taxPercent when they share one, else the rate of the largest line value",
            COMMON_EVENTS,
        ),
        field_spec("Order.HandlingAmount", TEXT, "totals.handling.value (two decimals)", COMMON_EVENTS),
        # The article lists TaxDeductionAmount among the common fields (beside HandlingAmount, sent "0.00" too);
        # only TaxDeduction is under "For tax deduction".
        field_spec(
            "Order.TaxDeduction",
            TEXT,
            "totals.taxDeducted.formattedValue",
            COMMON_EVENTS,
            "only when above zero",
        ),
        field_spec("Order.TaxDeductionAmount", TEXT, "totals.taxDeducted.value (two decimals)", COMMON_EVENTS),
        field_spec("Order.PaymentMethod", TEXT, "paymentMethod.name", COMMON_EVENTS),
        field_spec("Order.DeliveryMethod", TEXT, "shippingPriceGroup.shippingOption.name", COMMON_EVENTS),
        field_spec("Order.Currency", TEXT, "grandTotal.currency.code", COMMON_EVENTS),
        field_spec(
            "Order.<attribute>_<element>",
            TEXT,
            "each custom order attribute element, e.g. Order.giftWrap_message",
            COMMON_EVENTS,
            dynamic=True,
        ),
        # Items (returns: the returned lines)
        field_spec("Order.Brands", MULTIPLE, "lines: brand.name, else productBrand", ITEM_EVENTS),
        field_spec("Order.Types", MULTIPLE, "lines: folderName", ITEM_EVENTS),
        field_spec("Order.Sizes", MULTIPLE, "lines: size", ITEM_EVENTS),
        field_spec("Order.Names", MULTIPLE, "lines: productName", ITEM_EVENTS),
        field_spec("Order.Variations", MULTIPLE, "lines: productVariantName", ITEM_EVENTS),
        field_spec("Order.Collections", MULTIPLE, "lines: collection.name", ITEM_EVENTS),
        field_spec("Order.ProductCount", TEXT, "number of lines", ITEM_EVENTS),
        field_spec("Order.IndividualProductCount", TEXT, "sum of quantity", ITEM_EVENTS),
        field_spec("Order.Skus", MULTIPLE, "lines: productSize.SKU", ORDER_EVENTS, "not for returns"),
        field_spec(
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
        field_spec(
            "Order.RefundValuePcs",
            MULTIPLE,
            "each returned line's lineValue.formattedValue, one per line, repeats kept",
            RETURN_EVENTS,
            "returns only",
            per_item=True,
        ),
        field_spec(
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
        field_spec(
            "Order.CartUrl",
            TEXT,
            "the connection's cart link template with {selection} filled",
            {"OrderCreated"},
            "only when the connection's 'send cart link' is on; it needs a template",
        ),
        # Ours: the article's "Only for OrderCompleted" list also holds carrier and tracking "(If we have a
        # delivery (OrderShipped))": a shipped order carries what a completed one does, plus the delivery.
        field_spec("Order.Handling", TEXT, "totals.handling.formattedValue", COMPLETED_EVENTS),
        field_spec("Order.BillingFirstname", TEXT, "billingAddress.firstName", COMPLETED_EVENTS),
        field_spec("Order.BillingLastname", TEXT, "billingAddress.lastName", COMPLETED_EVENTS),
        field_spec(
            "Order.BillingStreet",
            TEXT,
            'billingAddress.address1 + ", " + address2 when present',
            COMPLETED_EVENTS,
        ),
        field_spec("Order.BillingCity", TEXT, "billingAddress.city", COMPLETED_EVENTS),
        field_spec("Order.BillingZipcode", TEXT, "billingAddress.zipCode", COMPLETED_EVENTS),
        field_spec("Order.BillingState", TEXT, "billingAddress.state.code, else stateOrProvince", COMPLETED_EVENTS),
        field_spec("Order.BillingCountry", TEXT, "billingAddress.country.code", COMPLETED_EVENTS),
        field_spec("Order.BillingTele", TEXT, "billingAddress.phoneNumber, else cellPhoneNumber", COMPLETED_EVENTS),
        field_spec("Order.BillingCompany", TEXT, "billingAddress.companyName", COMPLETED_EVENTS),
        field_spec(
            "Order.Carrier",
            TEXT,
            "carrierInformation.carrierName, else shipmentPlugin.name",
            {"OrderShipped"},
        ),
        field_spec("Order.Trackingno", TEXT, "trackingNumber", {"OrderShipped"}),
        field_spec(
            "Order.Trackinglink",
            TEXT,
            "the connection's tracking link template for the carrier (else the default) with {tracking} filled",
            {"OrderShipped"},
            "only when a template and a tracking number exist",
        ),
        # Ours: the message is the merchant's; the shopper's order comment (otherComment) is never sent here.
        field_spec(
            "Order.AdditionalMessage",
            TEXT,
            "the connection's cancellation message",
            {"OrderCancellation"},
            "only when one is configured",
        ),
        field_spec("Order.CompanyUrl", TEXT, "the connection's shop URL", {"OrderCancellation"}),
        *_money("Order.RefundValueTotal", "return grandTotal", RETURN_EVENTS),
        *_money("Order.RefundHandlingCost", "return totals.handling", RETURN_EVENTS),
        *_money("Order.RefundReturnCost", "return totals.returnCost", RETURN_EVENTS),
        field_spec("Order.RefundCurrency", TEXT, "return grandTotal.currency.code", RETURN_EVENTS),
        *[
            field_spec(f"GiftCertificate.{name}", TEXT, f"giftCertificate.{src}", {"GiftCertificate"})
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
        field_spec(
            "GiftCertificate.Value",
            TEXT,
            "giftCertificate.value: its formattedValue, a number in the order's money style, or a text as given",
            {"GiftCertificate"},
        ),
        field_spec(
            "GiftCertificate.ValueAsNumber",
            TEXT,
            'giftCertificate.valueAsNumber, else the value\'s amount (read from a text like "500.00 SEK") '
            "(two decimals)",
            {"GiftCertificate"},
            "a value that cannot be read leaves a note on the delivery",
        ),
        field_spec("GiftCertificate.Date", DATE, "giftCertificate.date", {"GiftCertificate"}),
        field_spec("GiftCertificate.DueDate", DATE, "giftCertificate.dueDate", {"GiftCertificate"}),
        # Non-order events
        field_spec("Contact.Language", TEXT, "event language (ISO 639-1)", {"Newsletter"}),
        *[
            field_spec(f"Address.{name}", TEXT, f"event address.{src}", {"Newsletter"})
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
            field_spec(f"Customer.{name}", TEXT, f"customer {src}", CUSTOMER_EVENTS)
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
        field_spec("Customer.PasswordRestoreLink", TEXT, "event passwordRestoreLink", {"PasswordReset"}),
    ]
)

# --- the registry ----------------------------------------------------------------------------------------------

EVENTS: dict[str, EventSpec] = {}  # catalog order: the order of declaration
INBOUND_TYPES: dict[str, InboundType] = {}  # every JSON type /events accepts
# Storefront/Checkout API webhook keys (e.g. DisplayItems) that a plug-in processes; others are stored ignored.
CATALOGUE_KEYS: list[str] = []
# A key may be listed twice for different events (Customer.Language: common order fields and customer events).
FIELDS_BY_KEY: dict[str, FieldSpec] = {}
EVENTS_BY_KEY: dict[str, frozenset[str]] = {}
AUTOMATION_CHOICES = [("reset", "reset"), ("force", "force"), ("none", "none (no automation)")]
DEFAULT_AUTOMATION = "reset"


def _index_fields() -> None:
    FIELDS_BY_KEY.clear()
    EVENTS_BY_KEY.clear()
    _FIELD_FACTS.clear()
    for spec in FIELDS:
        FIELDS_BY_KEY.setdefault(spec.key, spec)
        EVENTS_BY_KEY[spec.key] = EVENTS_BY_KEY.get(spec.key, frozenset()) | spec.events


def declare(spec: EventSpec, fields: Iterable[FieldSpec] = ()) -> EventSpec:
    """Add one catalog event (and the fields only it, or its plug-in, sends). Declaring a name twice is a bug."""
    if spec.name in EVENTS or spec.name in INBOUND_TYPES:
        raise ValueError(f"event {spec.name!r} is declared twice")
    EVENTS[spec.name] = spec
    inbound = spec.inbound_type()
    if inbound is not None:
        INBOUND_TYPES[spec.name] = inbound
    if fields:
        FIELDS.extend(fields)
        _index_fields()
    return spec


def declare_inbound(inbound: InboundType) -> InboundType:
    """Add a JSON type /events accepts that is not a catalog event of its own (a plug-in's input)."""
    if inbound.name in INBOUND_TYPES or inbound.name in EVENTS:
        raise ValueError(f"inbound type {inbound.name!r} is declared twice")
    INBOUND_TYPES[inbound.name] = inbound
    return inbound


def declare_catalogue_keys(*keys: str) -> None:
    """Storefront/Checkout API webhook keys a plug-in handles (back in stock: DisplayItems, Products)."""
    CATALOGUE_KEYS.extend(k for k in keys if k not in CATALOGUE_KEYS)


def undeclare(name: str) -> None:
    """Remove an event or inbound type and its own fields (tests that declare a throw-away event)."""
    EVENTS.pop(name, None)
    INBOUND_TYPES.pop(name, None)
    FIELDS[:] = [f for f in FIELDS if f.events != {name}]
    _index_fields()


def event_choices() -> list[tuple[str, str]]:
    """Flow.event's choices: read when validating, so a new event needs no schema migration."""
    return [(name, name) for name in EVENTS]


def json_event_types() -> list[str]:
    """The catalog events a JSON event may carry (their bodies are the mapper's payload)."""
    return [name for name, spec in EVENTS.items() if spec.accepts_json]


MANUAL_MODE_ONLY = (
    "{event} is sent only in manual-confirmation mode; this connection auto-confirms orders (turn on "
    "'manual confirmation' if Centra's auto-confirm is off)"
)


def json_event_target(
    event_type: str, body: dict, *, manual_confirmation: bool, enabled: frozenset[str]
) -> tuple[str | None, str]:
    """What a JSON event of `event_type` becomes for a connection in this mode with these flows on: the catalog
    event it is sent as and "", or None and why it is not sent (it is kept and shown as ignored with that)."""
    spec = EVENTS.get(event_type)
    if spec is None or not spec.accepts_json:
        return None, f"{event_type!r} is not a catalog event"
    if spec.manual_mode_only and not manual_confirmation:
        return None, MANUAL_MODE_ONLY.format(event=event_type)
    event = spec.sent_as(body, enabled) if spec.sent_as is not None else event_type
    if event not in enabled:
        return None, f"flow {event} is disabled"
    return event, ""


def centra_kinds() -> list[str]:
    """The Centra webhook types turned into catalog events (each object is fetched and its state decides)."""
    kinds: list[str] = []
    for spec in EVENTS.values():
        if spec.centra is not None and spec.centra.kind not in kinds:
            kinds.append(spec.centra.kind)
    return kinds


def centra_events(kind: str) -> list[EventSpec]:
    """The catalog events a Centra object of this kind may mean, in catalog order."""
    return [spec for spec in EVENTS.values() if spec.centra is not None and spec.centra.kind == kind]


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


def field_facts(event: str, key: str) -> tuple[bool, str, bool]:
    """(is_field_allowed, field_type, is_per_item) of one key for one event, worked out once per pair: mapping
    asks it for every field of every subscriber. Forgotten when the catalog changes (declare, undeclare)."""
    facts = _FIELD_FACTS.get((event, key))
    if facts is None:
        facts = (is_field_allowed(event, key), field_type(key), is_per_item(key))
        if len(_FIELD_FACTS) < 100_000:  # dynamic attribute keys are many: a bound, not a leak
            _FIELD_FACTS[(event, key)] = facts
    return facts


_FIELD_FACTS: dict[tuple[str, str], tuple[bool, str, bool]] = {}
_index_fields()
