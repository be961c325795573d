"""A generated order history for the fake Centra: years of orders, with shipments, returns, customers and
newsletter subscriptions, built on demand from a seed (nothing stored, nothing committed).

Every document is a pure function of (seed, index), so the same seed always gives the same history and a page
of 200 orders costs 200 documents, not the whole history. Order dates grow with the order number, several
markets sell in their own currency and language, most orders are shipped, some are returned (refunded or
exchanged), a few are cancelled, and the last days' orders are not shipped yet.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DAY = 86400.0


@dataclass(frozen=True)
class Market:
    country: str
    country_name: str
    currency: str
    language: str
    rate: float  # SEK per unit
    style: str  # how formattedValue is written: "suffix-space", "prefix", "comma", "dot-comma"
    cities: tuple[tuple[str, str], ...]
    phone_prefix: str
    tax: float
    carrier: str
    share: int


MARKETS = (
    Market(
        "SE",
        "Sweden",
        "SEK",
        "sv",
        1.0,
        "suffix-space",
        (("Stockholm", "113 50"), ("Göteborg", "411 05"), ("Malmö", "211 20")),
        "070-",
        25.0,
        "PostNord",
        40,
    ),
    Market(
        "NO", "Norway", "NOK", "nb", 0.98, "comma", (("Oslo", "0150"), ("Bergen", "5003")), "+47 9", 25.0, "Bring", 12
    ),
    Market(
        "DK",
        "Denmark",
        "DKK",
        "da",
        1.52,
        "dot-comma",
        (("København", "1050"), ("Aarhus", "8000")),
        "+45 2",
        25.0,
        "GLS",
        10,
    ),
    Market(
        "DE",
        "Germany",
        "EUR",
        "de",
        11.4,
        "prefix",
        (("Berlin", "10115"), ("München", "80331")),
        "+49 151 ",
        19.0,
        "DHL",
        15,
    ),
    Market(
        "FI",
        "Finland",
        "EUR",
        "fi",
        11.4,
        "prefix",
        (("Helsinki", "00100"), ("Tampere", "33100")),
        "+358 40 ",
        24.0,
        "Posti",
        8,
    ),
    Market(
        "GB",
        "United Kingdom",
        "GBP",
        "en",
        13.3,
        "prefix",
        (("London", "SW1A 1AA"), ("Leeds", "LS1 4AP")),
        "+44 7700 ",
        20.0,
        "Royal Mail",
        10,
    ),
    Market(
        "US",
        "United States",
        "USD",
        "en",
        10.5,
        "prefix",
        (("New York", "10001"), ("Austin", "78701")),
        "+1 512 ",
        0.0,
        "UPS",
        5,
    ),
)
SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$"}
FIRST_NAMES = ("Anna", "Erik", "Maja", "Lars", "Sofia", "Oskar", "Ingrid", "Jonas", "Emma", "Lukas", "Aino", "Oliver")
LAST_NAMES = ("Svensson", "Hansen", "Nielsen", "Müller", "Virtanen", "Smith", "Berg", "Lind", "Johnson", "Koch")
PRODUCTS = tuple(
    (f"P{n:03d}", name, brand, folder, price)
    for n, (name, brand, folder, price) in enumerate(
        [
            ("Oxford Shirt", "Acme Studios", "Shirts", 899),
            ("Chino Trousers", "Acme Studios", "Trousers", 1099),
            ("Wool Scarf", "Nordic Wool", "Accessories", 499),
            ("Merino Sweater", "Nordic Wool", "Knitwear", 1499),
            ("Rain Jacket", "Fjord Outdoor", "Outerwear", 2499),
            ("Canvas Sneakers", "Acme Studios", "Shoes", 1199),
            ("Leather Belt", "Acme Studios", "Accessories", 599),
            ("Linen Dress", "Sommar", "Dresses", 1399),
            ("Denim Jacket", "Sommar", "Outerwear", 1899),
            ("Cotton T-shirt", "Acme Studios", "T-shirts", 299),
            ("Beanie", "Nordic Wool", "Accessories", 349),
            ("Down Parka", "Fjord Outdoor", "Outerwear", 3999),
        ],
        start=1,
    )
)
STREETS = ("Storgatan", "Main Street", "Hauptstraße", "Kirkegata")
BRANDS = tuple(sorted({p[2] for p in PRODUCTS}))
SIZES = ("XS", "S", "M", "L", "XL")
COLLECTIONS = ("SS22", "AW22", "SS23", "AW23", "SS24", "AW24", "SS25", "AW25", "SS26")


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _format(value: float, market: Market) -> str:
    whole, cents = f"{value:,.2f}".split(".")
    if market.style == "prefix":
        return f"{SYMBOLS.get(market.currency, '')}{whole}.{cents}"
    if market.style == "comma":
        return f"{whole.replace(',', ' ')},{cents} {market.currency}"
    if market.style == "dot-comma":
        return f"{whole.replace(',', '.')},{cents} {market.currency}"
    return f"{whole.replace(',', ' ')}.{cents} {market.currency}"


def _money(value: float, market: Market) -> dict:
    value = round(value, 2)
    return {"value": value, "formattedValue": _format(value, market), "currency": {"code": market.currency}}


@dataclass(frozen=True)
class OrderState:
    """What happened to one order, cheap to compute (no document): enough to filter on."""

    number: int
    ordered: float
    status: str
    shipped: tuple[float, ...]  # one timestamp per shipment (shipped ones)
    returned: float | None  # when the return was created
    return_status: str
    refunded: bool
    customer: int

    @property
    def updated(self) -> float:
        times = [self.ordered, *self.shipped]
        if self.returned is not None:
            times.append(self.returned + (3 * DAY if self.return_status == "COMPLETED" else 0))
        return max(times)


class GeneratedHistory:
    """`orders` orders between `start` and `end`, numbered from `first_number`, from `seed`."""

    def __init__(
        self,
        orders: int = 10_000,
        seed: int = 1,
        first_number: int = 100_001,
        start: datetime | None = None,
        end: datetime | None = None,
        customers: int | None = None,
    ) -> None:
        self.count = int(orders)
        self.seed = int(seed)
        self.first_number = int(first_number)
        self.end = (end or datetime.now(UTC)).timestamp()
        self.start = (start or datetime.fromtimestamp(self.end, UTC) - timedelta(days=5 * 365)).timestamp()
        self.customer_count = int(customers or max(self.count // 3, 1))
        self.newsletter_count = max(self.count // 5, 1)
        rng = random.Random(self.seed)
        span = self.end - self.start
        # Sorted, so order dates grow with order numbers as in a real shop.
        self.dates = sorted(self.start + rng.random() * span for _ in range(self.count))
        weights = [m.share for m in MARKETS]
        self._market_of_customer = random.Random(self.seed + 7).choices(
            range(len(MARKETS)), weights, k=self.customer_count
        )

    # -- numbers and ids ---------------------------------------------------------------------------------------

    def numbers(self) -> range:
        return range(self.first_number, self.first_number + self.count)

    def index(self, number: int) -> int | None:
        i = int(number) - self.first_number
        return i if 0 <= i < self.count else None

    def order_id(self, number: int) -> str:
        digest = hashlib.md5(f"{self.seed}:{number}".encode(), usedforsecurity=False).hexdigest()[:24]
        return f"{digest}{int(number):08x}"

    def number_of_id(self, order_id: str) -> int | None:
        try:
            number = int(str(order_id)[-8:], 16)
        except ValueError:
            return None
        return number if self.index(number) is not None and self.order_id(number) == order_id else None

    def numbers_between(self, since: float | None, until: float | None) -> range:
        """The order numbers whose order date is in [since, until] (dates grow with numbers)."""
        lo = 0 if since is None else bisect.bisect_left(self.dates, since)
        hi = self.count if until is None else bisect.bisect_right(self.dates, until)
        return range(self.first_number + lo, self.first_number + max(hi, lo))

    # -- state -------------------------------------------------------------------------------------------------

    def state(self, number: int) -> OrderState:
        i = self.index(number)
        if i is None:
            raise KeyError(number)
        rng = random.Random(self.seed * 1_000_003 + i)
        ordered = self.dates[i]
        customer = rng.randrange(self.customer_count) + 1
        age = self.end - ordered
        roll = rng.random()
        shipped: tuple[float, ...] = ()
        returned, return_status, refunded = None, "", False
        if roll < 0.03:
            status = "CANCELLED"
        elif age < 3 * DAY:
            status = rng.choice(("CONFIRMED", "PROCESSING"))
        else:
            status = "ARCHIVED" if roll > 0.95 else "SHIPPED"
            first = ordered + rng.uniform(0.3, 3) * DAY
            shipped = (first,) if rng.random() > 0.1 else (first, first + rng.uniform(1, 5) * DAY)
            if rng.random() < 0.08 and age > 25 * DAY:
                returned = shipped[-1] + rng.uniform(5, 20) * DAY
                return_status = "COMPLETED" if rng.random() < 0.9 else "PENDING"
                refunded = rng.random() < 0.85
        return OrderState(number, ordered, status, shipped, returned, return_status, refunded, customer)

    def market(self, customer: int) -> Market:
        return MARKETS[self._market_of_customer[customer - 1]]

    # -- documents ---------------------------------------------------------------------------------------------

    def customer(self, customer_id: int) -> dict:
        """A Centra Customer (with its billing address)."""
        rng = random.Random(self.seed * 7_000_003 + customer_id)
        market = self.market(customer_id)
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        city, zip_code = rng.choice(market.cities)
        email = f"{first}.{last}.{customer_id}@example.com".lower()
        phone = f"{market.phone_prefix}{rng.randrange(1000000, 9999999)}"
        address = {
            "firstName": first,
            "lastName": last,
            "companyName": None,
            "address1": f"{rng.choice(STREETS)} {rng.randrange(1, 90)}",
            "address2": None,
            "city": city,
            "zipCode": zip_code,
            "stateOrProvince": "TX" if market.country == "US" and city == "Austin" else None,
            "email": email,
            "phoneNumber": phone,
            "cellPhoneNumber": None,
            "country": {"code": market.country, "name": market.country_name},
            "state": None,
        }
        return {
            "id": customer_id,
            "email": email,
            "firstName": first,
            "lastName": last,
            "phoneNumber": phone,
            "totalOrders": 0,
            "attributes": [],
            "billingAddress": address,
            "store": {"id": 1, "name": "Retail", "type": "DIRECT_TO_CONSUMER"},
        }

    def order(self, number: int) -> dict:
        """The full order document (Centra's DirectToConsumerOrder shape), with its shipments."""
        state = self.state(number)
        rng = random.Random(self.seed * 3_000_017 + number)
        customer = self.customer(state.customer)
        market = self.market(state.customer)
        lines = []
        saved = 0.0
        for line_id in range(1, rng.randrange(1, 4) + 1):
            sku, name, brand, folder, price = rng.choice(PRODUCTS)
            size = rng.choice(SIZES)
            quantity = 1 if rng.random() < 0.85 else 2
            unit = round(price / market.rate, 0 if market.currency in ("SEK", "NOK", "DKK") else 2)
            discount = 20.0 if rng.random() < 0.15 else 0.0
            unit_paid = round(unit * (1 - discount / 100), 2)
            saved += (unit - unit_paid) * quantity
            collection = rng.choice(COLLECTIONS)
            lines.append(
                {
                    "__typename": "ProductOrderLine",
                    "id": number * 10 + line_id,
                    "quantity": quantity,
                    "size": size,
                    "productNumber": sku,
                    "productName": name,
                    "productBrand": brand,
                    "productVariantName": rng.choice(("Black", "Navy", "Sand", "Forest")),
                    "folderName": folder,
                    "productExternalUrl": f"https://shop.example/product/{sku.lower()}",
                    "unitPrice": _money(unit_paid, market),
                    "lineValue": _money(unit_paid * quantity, market),
                    "discountPercent": discount,
                    "taxPercent": market.tax,
                    "brand": {"id": BRANDS.index(brand) + 1, "name": brand},
                    "collection": {"id": COLLECTIONS.index(collection) + 1, "name": collection},
                    "productSize": {
                        "id": 20000 + int(sku[1:]) * 10 + SIZES.index(size),
                        "SKU": f"{sku}{size}",
                        "EAN": f"735{int(sku[1:]):04d}{SIZES.index(size):06d}",
                    },
                }
            )
        line_total = round(sum(line["lineValue"]["value"] for line in lines), 2)
        shipping = 0.0 if line_total * market.rate > 1000 else round(49 / market.rate, 2)
        discounts = round(saved, 2)
        grand = round(line_total + shipping, 2)
        tax = round(grand - grand / (1 + market.tax / 100), 2) if market.tax else 0.0
        address = dict(customer["billingAddress"])
        order_id = self.order_id(number)
        doc = {
            "__typename": "DirectToConsumerOrder",
            "id": order_id,
            "number": number,
            "status": state.status,
            "isOnHold": False,
            "orderDate": _stamp(state.ordered),
            "createdAt": _stamp(state.ordered),
            "updatedAt": _stamp(state.updated),
            "otherComment": "",
            "grandTotal": _money(grand, market),
            "totals": {
                "quantity": sum(line["quantity"] for line in lines),
                "lineValues": _money(line_total, market),
                "handling": _money(0, market),
                "shipping": _money(shipping, market),
                "discounts": _money(discounts, market),
                "taxAdded": _money(tax if market.country == "US" else 0, market),
                "taxDeducted": _money(0, market),
                "taxIncluded": _money(0 if market.country == "US" else tax, market),
            },
            "shippingAddress": address,
            "billingAddress": dict(address),
            "country": {"code": market.country, "name": market.country_name},
            "paymentMethod": {"id": 12, "name": rng.choice(("Klarna Checkout", "Adyen", "PayPal"))},
            "shippingPriceGroup": {"shippingOption": {"id": 4, "name": f"{market.carrier} Standard"}},
            "lines": lines,
            "customer": {k: customer[k] for k in ("id", "email", "firstName", "lastName", "phoneNumber")},
            "language": {"code": market.language, "languageCode": market.language},
            "attributes": [],
        }
        doc["shipments"] = self.shipments(number, doc)
        return doc

    def shipments(self, number: int, order: dict | None = None) -> list[dict]:
        """The order's shipments (each with `order` naming the order by number and id)."""
        state = self.state(number)
        if not state.shipped:
            return []
        order = order or self.order(number)
        market = self.market(state.customer)
        result = []
        for k, when in enumerate(state.shipped, start=1):
            lines = order["lines"] if len(state.shipped) == 1 else order["lines"][k - 1 :: len(state.shipped)]
            result.append(
                {
                    "__typename": "DirectToConsumerShipment",
                    "id": number * 10 + k,
                    "number": f"{number}-{k}",
                    "createdAt": _stamp(when - 3600),
                    "updatedAt": _stamp(when),
                    "shippedAt": _stamp(when),
                    "isGoodToGo": True,
                    "isShipped": True,
                    "isPaid": True,
                    "isCaptured": True,
                    "trackingNumber": f"00370{number:010d}{k:02d}",
                    "returnTrackingNumber": None,
                    "numberOfPackages": 1,
                    "carrierInformation": {"carrierName": market.carrier, "serviceName": "Standard"},
                    "shipmentPlugin": {"id": 21, "name": market.carrier},
                    "grandTotal": order["grandTotal"],
                    "shippingAddress": order["shippingAddress"],
                    "lines": [
                        {
                            "id": line["id"] * 10 + k,
                            "quantity": line["quantity"],
                            "lineValue": line["lineValue"],
                            "orderLine": line,
                        }
                        for line in (lines or order["lines"][:1])
                    ],
                    "order": {"number": number, "id": order["id"]},
                }
            )
        return result

    def returns(self, number: int) -> list[dict]:
        """The order's return, if it has one (each with `order` naming the order)."""
        state = self.state(number)
        if state.returned is None:
            return []
        order = self.order(number)
        market = self.market(state.customer)
        line = order["lines"][0]
        value = line["unitPrice"]["value"] if state.refunded else 0.0
        zero = _money(0, market)
        tax = round(value - value / (1 + market.tax / 100), 2) if market.tax else 0.0
        return [
            {
                "__typename": "DirectToConsumerReturn",
                "id": number * 10 + 5,
                "returnStatus": state.return_status,
                "createdAt": _stamp(state.returned),
                "totalQuantity": 1,
                "returnedToStock": True,
                "comment": "Too small" if state.refunded else "Exchange for another size",
                "grandTotal": _money(value, market),
                "totals": {
                    "quantity": 1,
                    "lineValues": _money(value, market),
                    "handling": zero,
                    "shipping": zero,
                    "discounts": zero,
                    "returnCost": zero,
                    "taxAdded": zero,
                    "taxDeducted": zero,
                    "taxIncluded": _money(tax, market),
                },
                "lines": [
                    {"id": line["id"] * 10 + 9, "quantity": 1, "lineValue": _money(value, market), "orderLine": line}
                ],
                "order": {"number": number, "id": order["id"]},
                "shipment": {"id": number * 10 + 1, "number": f"{number}-1"},
                "customer": dict(order["customer"]),
                "refundPaymentHistory": [],
            }
        ]

    def newsletter(self, subscription_id: int) -> dict:
        """A NewsletterSubscription: half from customers, half people who never ordered."""
        rng = random.Random(self.seed * 9_000_011 + subscription_id)
        created = self.start + (self.end - self.start) * (subscription_id - 0.5) / self.newsletter_count
        if subscription_id % 2:
            customer = self.customer(rng.randrange(self.customer_count) + 1)
            email, country = customer["email"], customer["billingAddress"]["country"]
        else:
            market = rng.choice(MARKETS)
            email = f"reader.{subscription_id}@example.org"
            country = {"code": market.country, "name": market.country_name}
        return {
            "id": subscription_id,
            "email": email,
            "isActive": rng.random() < 0.9,
            "createdAt": _stamp(created),
            "country": country,
            "productSize": None,
            "productVariant": None,
            "store": {"id": 1, "name": "Retail", "type": "DIRECT_TO_CONSUMER"},
        }
