"""Reading the history from Centra one page at a time, and turning each page into planned, mapped subscribers.

Orders come by order date in [since, until] (until = when the import started; later orders are the live path's),
oldest number first, each with its shipments; their returns in one more query per page. Customers and newsletter
subscriptions come whole (Centra's filters have no date for customers; subscriptions are filtered here)."""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from datetime import datetime

from integration.centra.client import CentraClient
from integration.history.models import CUSTOMERS, NEWSLETTER, ORDERS
from integration.history.plan import Planned, plan_customer, plan_newsletter, plan_order
from integration.mapping import FlowConfig, MappingContext, MappingError, map_event, subscriber_body

PAGE_SIZE = 200


@dataclass
class Mapped:
    """A planned object with its `subscribers` entry (or why it cannot be sent)."""

    planned: Planned
    subscriber: dict | None = None
    email: str = ""
    error: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Page:
    objects: list[Planned]
    read: int
    last: bool


def read_page(
    client: CentraClient,
    kind: str,
    page: int,
    since: datetime,
    until: datetime,
    *,
    manual_confirmation: bool,
    enabled: Container[str],
    page_size: int = PAGE_SIZE,
) -> Page:
    """One page of `kind` from Centra, planned (no database, one or two Centra queries)."""
    if kind == ORDERS:
        orders = client.history_orders(since, until, page, page_size)
        with_shipments = [o["number"] for o in orders if o.get("shipments")]
        returns: dict[int, list[dict]] = {}
        for ret in client.history_returns(with_shipments, page_size) if with_shipments else []:
            returns.setdefault((ret.get("order") or {}).get("number"), []).append(ret)
        objects = [plan_order(o, returns.get(o["number"], []), manual_confirmation, enabled) for o in orders]
        return Page(objects, len(orders), len(orders) < page_size)
    if kind == CUSTOMERS:
        customers = client.history_customers(page, page_size)
        return Page([plan_customer(c, enabled) for c in customers], len(customers), len(customers) < page_size)
    if kind == NEWSLETTER:
        rows = client.history_newsletter(page, page_size)
        objects = [p for p in (plan_newsletter(s, since, enabled) for s in rows) if p is not None]
        return Page(objects, len(objects), len(rows) < page_size)
    raise ValueError(f"unknown kind {kind!r}")


def map_planned(planned: Planned, ctx: MappingContext, flows: dict[str, FlowConfig]) -> Mapped:
    """The `subscribers` entry of a planned object, mapped exactly as its live flow would map it."""
    mapped = Mapped(planned)
    if planned.event is None:
        return mapped
    try:
        subscriber = map_event(planned.event, planned.payload, ctx)
        mapped.subscriber = subscriber_body(planned.event, subscriber, flows[planned.event], mapped.notes)
    except MappingError as exc:
        mapped.error = str(exc)
        return mapped
    mapped.email = mapped.subscriber["email"]
    return mapped
