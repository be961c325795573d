"""Every GraphQL document the project sends to Centra's Integration API.

Fields follow `centra-integration-api-types.md` and stay with those marked [V], [E] or [R] where possible. The
guesses marked [I] in the reference all live in this module and are named here:

- `ORDER_INFERRED_FIELDS`: `DirectToConsumerOrder.language` and the custom `attributes` shape. They are asked
  for separately so that, if a tenant's schema rejects them, the client can ask again without them
  (see `CentraClient.order_by_number`) instead of failing every order.
- `shipments(...)` and `productSizes(...)` as root fields, `CustomerFilter.id`, and the `ReturnStatus` values
  (`RETURN_COMPLETED_STATUS`).
"""

from __future__ import annotations

# [I] The return status that means "completed" (the reference's guess: PENDING COMPLETED CANCELLED).
RETURN_COMPLETED_STATUS = "COMPLETED"

# [I] Field names whose absence from a tenant's schema makes the order query fall back to the plain one.
INFERRED_FIELD_NAMES = ("language", "attributes")

MONEY = """
fragment Money on MonetaryValue { value formattedValue currency { code } }
"""

ADDRESS = """
fragment FullAddress on Address {
  firstName lastName companyName address1 address2 city zipCode stateOrProvince
  email phoneNumber cellPhoneNumber country { code name } state { code name }
}
"""

LINE = """
fragment LineFields on OrderLine {
  id quantity size productNumber productName productBrand productVariantName folderName productExternalUrl
  unitPrice { ...Money } lineValue { ...Money } discountPercent taxPercent
  brand { id name } collection { id name } productSize { id SKU EAN }
}
"""

# [I] Not verified against a live schema: the order's language and the custom attribute shape.
ORDER_INFERRED_FIELDS = """
  ... on DirectToConsumerOrder { language { code languageCode } }
  attributes {
    type { name }
    elements { key ... on AttributeStringElement { value } ... on AttributeChoiceElement { value selectionValue } }
  }
"""


def order_fragment(include_inferred: bool = True) -> str:
    """The order fields the mapping reads (field-catalog.md), with or without the [I] guesses."""
    inferred = ORDER_INFERRED_FIELDS if include_inferred else ""
    return (
        """
fragment OrderFields on Order {
  __typename id number status isOnHold orderDate createdAt updatedAt otherComment
  grandTotal { ...Money }
  totals {
    quantity lineValues { ...Money } handling { ...Money } shipping { ...Money } discounts { ...Money }
    taxAdded { ...Money } taxDeducted { ...Money } taxIncluded { ...Money }
  }
  shippingAddress { ...FullAddress }
  billingAddress { ...FullAddress }
  country { code name }
  paymentMethod { id name }
  shippingPriceGroup { shippingOption { id name } }
  lines { ...LineFields }
  ... on DirectToConsumerOrder { customer { id email firstName lastName phoneNumber } }
"""
        + inferred
        + "}\n"
        + MONEY
        + ADDRESS
        + LINE
    )


SHIPMENT_FIELDS = """
fragment ShipmentFields on Shipment {
  __typename id number createdAt updatedAt shippedAt isGoodToGo isShipped isPaid isCaptured
  trackingNumber returnTrackingNumber numberOfPackages
  carrierInformation { carrierName serviceName }
  shipmentPlugin { id name }
  grandTotal { ...Money }
  shippingAddress { ...FullAddress }
  lines { id quantity lineValue { ...Money } orderLine { ...LineFields } }
  order { ...OrderFields }
}
"""

RETURN_FIELDS = """
fragment ReturnFields on Return {
  __typename id returnStatus createdAt totalQuantity returnedToStock comment
  grandTotal { ...Money }
  totals {
    quantity lineValues { ...Money } handling { ...Money } shipping { ...Money } discounts { ...Money }
    returnCost { ...Money } taxAdded { ...Money } taxDeducted { ...Money } taxIncluded { ...Money }
  }
  lines { id quantity lineValue { ...Money } orderLine { ...LineFields } }
  order { ...OrderFields }
  shipment { id number }
  ... on DirectToConsumerReturn { customer { id email firstName lastName } }
}
"""


def order_by_number(include_inferred: bool = True) -> str:
    """One order by its number (for orders, a webhook's `id` is the number)."""
    return """
query OrderByNumber($number: Int!) {
  orders(where: { number: [$number] }, limit: 1) { ...OrderFields }
}
""" + order_fragment(include_inferred)


def orders_changed(include_inferred: bool = True) -> str:
    """Orders updated in a time range, one page (reconciliation)."""
    return """
query OrdersChanged($from: DateTimeTz!, $to: DateTimeTz!, $limit: Int!, $page: Int!) {
  orders(where: { updatedAt: { from: $from, to: $to } }, limit: $limit, page: $page) { ...OrderFields }
}
""" + order_fragment(include_inferred)


def shipment_by_id(include_inferred: bool = True) -> str:
    """One shipment with its full order. The `shipments` root field is [I]."""
    return (
        """
query ShipmentById($id: Int!) {
  shipments(where: { id: [$id] }, limit: 1) { ...ShipmentFields }
}
"""
        + SHIPMENT_FIELDS
        + order_fragment(include_inferred)
    )


def shipments_changed(include_inferred: bool = True) -> str:
    """Shipments updated in a time range, one page (reconciliation)."""
    return (
        """
query ShipmentsChanged($from: DateTimeTz!, $to: DateTimeTz!, $limit: Int!, $page: Int!) {
  shipments(where: { updatedAt: { from: $from, to: $to } }, limit: $limit, page: $page) { ...ShipmentFields }
}
"""
        + SHIPMENT_FIELDS
        + order_fragment(include_inferred)
    )


def return_by_id(include_inferred: bool = True) -> str:
    """One return with its full order."""
    return (
        """
query ReturnById($id: Int!) {
  returns(where: { id: [$id] }, limit: 1) { ...ReturnFields }
}
"""
        + RETURN_FIELDS
        + order_fragment(include_inferred)
    )


def returns_created(include_inferred: bool = True) -> str:
    """Returns created in a time range, one page (ReturnFilter has no `updatedAt`)."""
    return (
        """
query ReturnsCreated($from: DateTimeTz!, $to: DateTimeTz!, $limit: Int!, $page: Int!) {
  returns(where: { createdAt: { from: $from, to: $to } }, limit: $limit, page: $page) { ...ReturnFields }
}
"""
        + RETURN_FIELDS
        + order_fragment(include_inferred)
    )


def returns_for_orders(include_inferred: bool = True) -> str:
    """Returns of the given orders, one page: a return completed later touches its order, not its createdAt."""
    return (
        """
query ReturnsForOrders($numbers: [Int!]!, $limit: Int!, $page: Int!) {
  returns(where: { orderNumber: $numbers }, limit: $limit, page: $page) { ...ReturnFields }
}
"""
        + RETURN_FIELDS
        + order_fragment(include_inferred)
    )


# CustomerFilter.id is [I]; `email` filtering is [E].
CUSTOMER_BY_ID = (
    """
query CustomerById($id: Int!) {
  customers(where: { id: [$id] }, limit: 1) {
    id email firstName lastName phoneNumber
    billingAddress { ...FullAddress }
  }
}
"""
    + ADDRESS
)

# A cheap query that needs only Order:read: used to check a token.
TOKEN_CHECK = """
query TokenCheck { orders(limit: 1) { number } }
"""

# The root `productSizes` field is [I] (the sure path is productVariants { productSizes }); stockTotals and
# freeToAllocateQuantity are [V]/[E] and FTA is the cheap figure Centra recommends.
STOCK_FOR_SIZES = """
query StockForSizes($ids: [Int!]!, $limit: Int!) {
  productSizes(where: { id: $ids }, limit: $limit) { id SKU stockTotals { freeToAllocateQuantity } }
}
"""

PRODUCT_FOR_SIZE = """
query ProductForSize($id: Int!) {
  productSizes(where: { id: [$id] }, limit: 1) {
    id SKU EAN description sizeNumber
    stockTotals { freeToAllocateQuantity }
    productVariant {
      id name variantNumber
      product { id name productNumber brand { id name } collection { id name } }
    }
  }
}
"""


# -- history import (integration.history) ----------------------------------------------------------------------
# Orders of a date range, oldest number first, each with its shipments (Order.shipments is [R]); their returns
# come from `returns(where: {orderNumber})` as in reconciliation.

HISTORY_SHIPMENT = """
fragment HistoryShipment on Shipment {
  id number createdAt updatedAt shippedAt isShipped trackingNumber
  carrierInformation { carrierName serviceName }
  shipmentPlugin { id name }
  shippingAddress { ...FullAddress }
  lines { id quantity lineValue { ...Money } orderLine { ...LineFields } }
}
"""

HISTORY_RETURN = """
fragment HistoryReturn on Return {
  __typename id returnStatus createdAt totalQuantity
  grandTotal { ...Money }
  totals {
    quantity lineValues { ...Money } handling { ...Money } shipping { ...Money } discounts { ...Money }
    returnCost { ...Money } taxAdded { ...Money } taxDeducted { ...Money } taxIncluded { ...Money }
  }
  lines { id quantity lineValue { ...Money } orderLine { ...LineFields } }
  order { id number }
  ... on DirectToConsumerReturn { customer { id email firstName lastName } }
}
"""


def history_orders(include_inferred: bool = True) -> str:
    """One page of the orders placed in a date range, by number ascending, with their shipments."""
    return (
        """
query HistoryOrders($from: DateTimeTz!, $to: DateTimeTz!, $limit: Int!, $page: Int!) {
  orders(where: { orderDate: { from: $from, to: $to } }, sort: [number_ASC], limit: $limit, page: $page) {
    ...OrderFields
    shipments { ...HistoryShipment }
  }
}
"""
        + HISTORY_SHIPMENT
        + order_fragment(include_inferred)
    )


HISTORY_RETURNS = (
    """
query HistoryReturns($numbers: [Int!]!, $limit: Int!, $page: Int!) {
  returns(where: { orderNumber: $numbers }, limit: $limit, page: $page) { ...HistoryReturn }
}
"""
    + HISTORY_RETURN
    + MONEY
    + LINE
)

# `counters` is [E]; CustomerFilter has no date, so customers are counted (and imported) whole.
HISTORY_COUNTS = """
query HistoryCounts($from: DateTimeTz!, $to: DateTimeTz!) {
  counters { orders(where: { orderDate: { from: $from, to: $to } }) customers }
}
"""

HISTORY_CUSTOMERS = (
    """
query HistoryCustomers($limit: Int!, $page: Int!) {
  customers(limit: $limit, page: $page) {
    id email firstName lastName phoneNumber
    billingAddress { ...FullAddress }
  }
}
"""
    + ADDRESS
)

# [I] The root `newsletterSubscriptions` field is inferred; NewsletterSubscription's fields are [V].
HISTORY_NEWSLETTER = """
query HistoryNewsletter($limit: Int!, $page: Int!) {
  newsletterSubscriptions(limit: $limit, page: $page) {
    id email isActive createdAt country { code name } productSize { id }
  }
}
"""
