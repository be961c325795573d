"""A local Centra for tests, demos and benchmarks: a GraphQL server over stored documents, and a webhook sender.

The server validates every query against `integration/sandbox/centra_schema.graphql` with graphql-core and executes it
with resolvers over the stored orders, shipments, returns, customers and product sizes, so a query the project
sends that the schema does not allow fails here the way Centra would answer it (`{"errors": [...]}`). Failure
modes (429, 500, GraphQL errors, an expired token, a missing permission, slowness) are set from Python with
`fail(...)` or over HTTP with `POST /_fake/control`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
from graphql import GraphQLSchema, build_schema, graphql_sync

from integration.inbound.signature import HEADER, sign
from integration.sandbox import fast_graphql
from integration.sandbox.history import GeneratedHistory, OrderState

SCHEMA_PATH = Path(__file__).with_name("centra_schema.graphql")
CONTROL_PATH = "/_fake/control"
FAILURE_MODES = ("rate_limit", "server_error", "graphql_error", "expired_token", "forbidden", "slow")


INTERFACE_DEFAULTS = {
    "Order": "DirectToConsumerOrder",
    "Shipment": "DirectToConsumerShipment",
    "Return": "DirectToConsumerReturn",
    "OrderLine": "ProductOrderLine",
    "AttributeElement": "AttributeStringElement",
    "OrderDiscount": "AppliedVoucherDiscount",
    "AppliedVoucher": "AppliedVoucherDiscount",
}


def load_schema() -> GraphQLSchema:
    """The project's copy of Centra's schema, with the fake's resolvers attached."""
    schema = build_schema(SCHEMA_PATH.read_text())
    for interface, concrete in INTERFACE_DEFAULTS.items():
        schema.get_type(interface).resolve_type = _type_resolver(concrete)
    return schema


def _type_resolver(default: str):
    def resolve(value: Any, info: Any, abstract_type: Any) -> str:
        return (value.get("__typename") if isinstance(value, dict) else None) or default

    return resolve


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _in_range(value: Any, span: dict | None) -> bool:
    if not span:
        return True
    when = _parse_time(value)
    if when is None:
        return False
    start, end = _parse_time(span.get("from")), _parse_time(span.get("to"))
    return (start is None or when >= start) and (end is None or when <= end)


def _listed(value: Any, allowed: list | None) -> bool:
    return allowed is None or value in allowed or str(value) in [str(a) for a in allowed]


def _matches(value: Any, match: dict | None) -> bool:
    if not match:
        return True
    text = "" if value is None else str(value)
    if match.get("equals") is not None and text != match["equals"]:
        return False
    return match.get("contains") is None or match["contains"] in text


def _page(rows: list, limit: int | None, page: int | None) -> list:
    if not limit:
        return rows
    start = (max(page or 1, 1) - 1) * limit
    return rows[start : start + limit]


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _touches(state: OrderState, lo: float, hi: float) -> bool:
    """Whether anything of a generated order (placed, shipped, returned) happened in [lo, hi]."""
    times = [state.ordered, state.updated, *state.shipped]
    if state.returned is not None:
        times.append(state.returned)
    return any(lo <= t <= hi for t in times)


def now_iso() -> str:
    """The current time as Centra prints a DateTimeTz."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass
class Failure:
    mode: str
    times: int | None = 1  # None: until cleared
    message: str = ""
    retry_after: int = 30
    delay: float = 0.0


class FakeCentraStore:
    """The stored documents (Centra's GraphQL shape) and the resolvers that read them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.orders: dict[int, dict] = {}
        self.shipments: dict[int, dict] = {}
        self.returns: dict[int, dict] = {}
        self.customers: dict[int, dict] = {}
        self.sizes: dict[int, dict] = {}
        self.newsletter: dict[int, dict] = {}
        # A generated history (integration.sandbox.history) served beside the stored documents; stored ones win.
        self.history: GeneratedHistory | None = None

    # -- resolvers ---------------------------------------------------------------------------------------------

    def root(self) -> dict:
        return {
            "orders": self.resolve_orders,
            "order": self.resolve_order,
            "shipments": self.resolve_shipments,
            "returns": self.resolve_returns,
            "customers": self.resolve_customers,
            "productSizes": self.resolve_product_sizes,
            "products": self.resolve_products,
            "counters": self.resolve_counters,
            "newsletterSubscriptions": self.resolve_newsletter_subscriptions,
        }

    def resolve_orders(
        self,
        info: Any,
        where: dict | None = None,
        limit: int | None = None,
        page: int | None = None,
        sort: list | None = None,
    ) -> list:
        numbers = self._order_numbers(where or {})
        if sort and "number_DESC" in sort:
            numbers = numbers[::-1]
        with self.lock:
            return [self._order_doc(n) for n in _page(numbers, limit, page)]

    def _order_numbers(self, where: dict) -> Sequence[int]:
        """The numbers of the orders matching an OrderFilter, ascending (stored orders win over generated)."""
        with self.lock:
            stored = [
                n
                for n, o in self.orders.items()
                if _listed(n, where.get("number"))
                and _listed(o.get("id"), where.get("id"))
                and _listed(o.get("status"), where.get("status"))
                and _in_range(o.get("updatedAt"), where.get("updatedAt"))
                and _in_range(o.get("createdAt"), where.get("createdAt"))
                and _in_range(o.get("orderDate"), where.get("orderDate"))
                and _listed((o.get("customer") or {}).get("id"), where.get("customerId"))
            ]
            generated = self._generated_numbers(where) if self.history is not None else []
            if not self.orders:  # only the generated history: already ascending (a range when unfiltered)
                return generated
            return sorted(set(stored) | {n for n in generated if n not in self.orders})

    def _generated_numbers(self, where: dict) -> list[int]:
        history = self.history
        span = where.get("orderDate") or where.get("createdAt") or {}
        start, end = _parse_time(span.get("from")), _parse_time(span.get("to"))
        rest_keys = ["status", "updatedAt", "customerId"]
        if where.get("number") is not None:
            candidates = [int(n) for n in where["number"] if history.index(int(n)) is not None]
            rest_keys += ["orderDate", "createdAt"]
        elif where.get("id") is not None:
            candidates = [n for n in (history.number_of_id(i) for i in where["id"]) if n is not None]
            rest_keys += ["orderDate", "createdAt"]
        else:  # order dates grow with numbers: the date range is a range of numbers (sliced, not listed)
            candidates = history.numbers_between(start.timestamp() if start else None, end.timestamp() if end else None)
        rest = {k: where[k] for k in rest_keys if where.get(k) is not None}
        if not rest:
            return candidates
        kept = []
        for number in candidates:
            state = history.state(number)
            if (
                _listed(state.status, rest.get("status"))
                and _listed(state.customer, rest.get("customerId"))
                and _in_range(_stamp(state.updated), rest.get("updatedAt"))
                and _in_range(_stamp(state.ordered), rest.get("orderDate"))
                and _in_range(_stamp(state.ordered), rest.get("createdAt"))
            ):
                kept.append(number)
        return kept

    def _order_doc(self, number: int) -> dict:
        if number in self.orders:
            return self._order_view(self.orders[number])
        return self.history.order(number)

    def resolve_counters(self, info: Any) -> dict:
        return {
            "orders": lambda info, where=None: len(self._order_numbers(where or {})),
            "customers": lambda info, where=None: len(self.resolve_customers(info, where)),
        }

    def resolve_newsletter_subscriptions(self, info: Any, limit: int | None = None, page: int | None = None) -> list:
        with self.lock:
            ids = set(self.newsletter)
            if self.history is not None:
                ids |= set(range(1, self.history.newsletter_count + 1))
            rows = _page(sorted(ids), limit, page)
            return [
                copy.deepcopy(self.newsletter[i]) if i in self.newsletter else self.history.newsletter(i) for i in rows
            ]

    def resolve_order(self, info: Any, id: str) -> dict | None:
        with self.lock:
            found = next((self._order_view(o) for o in self.orders.values() if o.get("id") == id), None)
            if found is None and self.history is not None:
                number = self.history.number_of_id(id)
                found = self.history.order(number) if number is not None and number not in self.orders else None
            return found

    def resolve_shipments(
        self, info: Any, where: dict | None = None, limit: int | None = None, page: int | None = None
    ) -> list:
        where = where or {}
        with self.lock:
            docs = {i: s for i, s in self.shipments.items()}
            for number in self._generated_for(where, "orderId", key=lambda i: i // 10, updated=True):
                for shipment in self.history.shipments(number):
                    docs.setdefault(shipment["id"], shipment)
            rows = [
                self._shipment_view(s)
                for i, s in sorted(docs.items())
                if _listed(i, where.get("id"))
                and _listed(s.get("number"), where.get("number"))
                and (where.get("isShipped") is None or bool(s.get("isShipped")) == where["isShipped"])
                and _in_range(s.get("updatedAt"), where.get("updatedAt"))
                and _in_range(s.get("createdAt"), where.get("createdAt"))
                and _listed((s.get("order") or {}).get("id"), where.get("orderId"))
            ]
        return _page(rows, limit, page)

    def _generated_for(self, where: dict, order_key: str, key, updated: bool = False) -> list[int]:
        """Generated order numbers whose shipments/returns may match `where` (narrowed by ids when given)."""
        history = self.history
        if history is None:
            return []
        if where.get("id") is not None:
            numbers = {key(int(i)) for i in where["id"]}
        elif where.get(order_key) is not None:
            refs = where[order_key]
            numbers = {history.number_of_id(r) for r in refs} if order_key == "orderId" else {int(r) for r in refs}
        else:
            numbers = set(history.numbers())
            span = where.get("updatedAt") if updated else where.get("createdAt")
            if span:
                start, end = _parse_time(span.get("from")), _parse_time(span.get("to"))
                lo = start.timestamp() if start else float("-inf")
                hi = end.timestamp() if end else float("inf")
                numbers = {n for n in numbers if _touches(history.state(n), lo, hi)}
        return sorted(n for n in numbers if n is not None and history.index(n) is not None and n not in self.orders)

    def resolve_returns(
        self, info: Any, where: dict | None = None, limit: int | None = None, page: int | None = None
    ) -> list:
        where = where or {}
        with self.lock:
            docs = {i: r for i, r in self.returns.items()}
            for number in self._generated_for(where, "orderNumber", key=lambda i: i // 10):
                for ret in self.history.returns(number):
                    docs.setdefault(ret["id"], ret)
            rows = [
                self._return_view(r)
                for i, r in sorted(docs.items())
                if _listed(i, where.get("id"))
                and _listed(r.get("returnStatus"), where.get("returnStatus"))
                and _in_range(r.get("createdAt"), where.get("createdAt"))
                and _listed((r.get("order") or {}).get("number"), where.get("orderNumber"))
                and _listed((r.get("order") or {}).get("id"), where.get("orderId"))
            ]
        return _page(rows, limit, page)

    def resolve_customers(
        self, info: Any, where: dict | None = None, limit: int | None = None, page: int | None = None
    ) -> list:
        where = where or {}
        with self.lock:
            ids = set(self.customers)
            if self.history is not None:
                ids |= set(range(1, self.history.customer_count + 1))
            if where.get("id") is not None:
                ids &= {int(i) for i in where["id"]}
            rows = []
            for i in sorted(ids):
                doc = copy.deepcopy(self.customers[i]) if i in self.customers else self.history.customer(i)
                if _matches(doc.get("email"), where.get("email")):
                    rows.append(doc)
        return _page(rows, limit, page)

    def resolve_product_sizes(
        self, info: Any, where: dict | None = None, limit: int | None = None, page: int | None = None
    ) -> list:
        where = where or {}
        with self.lock:
            rows = [
                copy.deepcopy(s)
                for i, s in sorted(self.sizes.items())
                if _listed(i, where.get("id"))
                and _matches(s.get("SKU"), where.get("SKU"))
                and _matches(s.get("EAN"), where.get("EAN"))
            ]
        return _page(rows, limit, page)

    def resolve_products(
        self, info: Any, where: dict | None = None, limit: int | None = None, page: int | None = None
    ) -> list:
        where = where or {}
        products: dict[int, dict] = {}
        with self.lock:
            for size in self.sizes.values():
                variant = size.get("productVariant") or {}
                product = variant.get("product") or {}
                if "id" not in product:
                    continue
                entry = products.setdefault(product["id"], {**product, "variants": {}})
                bare = {k: v for k, v in size.items() if k != "productVariant"}
                entry["variants"].setdefault(variant.get("id"), {**variant, "productSizes": []})["productSizes"].append(
                    bare
                )
        rows = [
            {**p, "variants": list(p["variants"].values())}
            for i, p in sorted(products.items())
            if _listed(i, where.get("id"))
            and _matches(p.get("productNumber"), where.get("productNumber"))
            and _matches(p.get("name"), where.get("name"))
        ]
        return _page(rows, limit, page)

    # Shipments and returns point at their order; the view embeds the order's current state, as Centra would.
    def _order_view(self, order: dict) -> dict:
        view = copy.deepcopy(order)
        if "shipments" not in view:  # Order.shipments [R]: the stored shipments that name this order
            view["shipments"] = [
                copy.deepcopy(s)
                for s in self.shipments.values()
                if (s.get("order") or {}).get("number") == order.get("number")
            ]
        return view

    def _order_for(self, ref: dict | None) -> dict | None:
        if not ref:
            return None
        if ref.get("number") in self.orders:
            return self._order_view(self.orders[ref["number"]])
        if self.history is not None and self.history.index(ref.get("number") or 0) is not None:
            return self.history.order(ref["number"])
        found = next((o for o in self.orders.values() if ref.get("id") and o.get("id") == ref.get("id")), None)
        return self._order_view(found) if found else copy.deepcopy(ref)

    def _shipment_view(self, shipment: dict) -> dict:
        view = copy.deepcopy(shipment)
        view["order"] = self._order_for(shipment.get("order"))
        return view

    def _return_view(self, ret: dict) -> dict:
        view = copy.deepcopy(ret)
        view["order"] = self._order_for(ret.get("order"))
        ref = ret.get("shipment") or {}
        if ref.get("id") in self.shipments:
            view["shipment"] = self._shipment_view(self.shipments[ref["id"]])
        return view


class FakeCentra:
    """The fake Centra GraphQL server (stdlib ThreadingHTTPServer in a thread)."""

    def __init__(
        self, token: str = "centra-test-token", host: str = "127.0.0.1", port: int = 0, on_query=None, fast=False
    ) -> None:
        self.token = token
        # Validate with graphql-core, then project the stored dicts directly (integration/sandbox/fast_graphql.py):
        # what the history import's large pages and the benchmark use.
        self.fast = fast
        self.on_query = on_query  # called with (status, operation, variables) after each answer: the command prints it
        self.store = FakeCentraStore()
        self.schema = load_schema()
        self.queries: list[dict] = []
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The GraphQL endpoint (what a connection's Centra API URL is set to)."""
        return f"http://{self._server.server_address[0]}:{self.port}/graphql"

    def start(self) -> FakeCentra:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-centra", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        self._server.serve_forever()

    # -- data --------------------------------------------------------------------------------------------------

    def add_order(self, doc: dict, touch: bool = True) -> dict:
        """Store (or replace) an order by number; `touch` stamps updatedAt now, as Centra does on a change."""
        doc = copy.deepcopy(doc)
        if touch:
            doc["updatedAt"] = now_iso()
        with self.store.lock:
            self.store.orders[int(doc["number"])] = doc
        return doc

    def add_shipment(self, doc: dict, touch: bool = True) -> dict:
        """Store (or replace) a shipment by id; its `order` needs only `number` (the stored order is embedded)."""
        doc = copy.deepcopy(doc)
        if touch:
            doc["updatedAt"] = now_iso()
        with self.store.lock:
            self.store.shipments[int(doc["id"])] = doc
        return doc

    def add_return(self, doc: dict) -> dict:
        """Store (or replace) a return by id; its `order` needs only `number`."""
        doc = copy.deepcopy(doc)
        with self.store.lock:
            self.store.returns[int(doc["id"])] = doc
        return doc

    def add_customer(self, doc: dict) -> dict:
        """Store (or replace) a customer by id."""
        doc = copy.deepcopy(doc)
        with self.store.lock:
            self.store.customers[int(doc["id"])] = doc
        return doc

    def set_stock(self, size_id: int | str, fta: int, product: dict | None = None) -> dict:
        """Set a size's free-to-allocate stock; `product` replaces its details (SKU, EAN, productVariant...)."""
        size_id = int(size_id)
        with self.store.lock:
            size = self.store.sizes.setdefault(
                size_id, {"id": size_id, "SKU": f"SKU-{size_id}", "preorder": False, "isActive": True}
            )
            if product:
                size.update(copy.deepcopy(product))
                size["id"] = size_id
            size["stockTotals"] = {**(size.get("stockTotals") or {}), "freeToAllocateQuantity": int(fta)}
            return copy.deepcopy(size)

    def generate_history(self, orders: int = 10_000, seed: int = 1, **kwargs: Any) -> GeneratedHistory:
        """Serve a generated history (see integration.sandbox.history) beside the stored documents."""
        history = GeneratedHistory(orders=orders, seed=seed, **kwargs)
        self.fast = True
        with self.store.lock:
            self.store.history = history
        return history

    def add_newsletter_subscription(self, doc: dict) -> dict:
        """Store (or replace) a newsletter subscription by id."""
        doc = copy.deepcopy(doc)
        with self.store.lock:
            self.store.newsletter[int(doc["id"])] = doc
        return doc

    def load_dir(self, directory: str | Path) -> int:
        """Load documents from DIR/{orders,shipments,returns,customers,product_sizes}/*.json (one or a list)."""
        loaders = {
            "orders": lambda d: self.add_order(d, touch=False),
            "shipments": lambda d: self.add_shipment(d, touch=False),
            "returns": self.add_return,
            "customers": self.add_customer,
            "product_sizes": lambda d: self.set_stock(
                d["id"], (d.get("stockTotals") or {}).get("freeToAllocateQuantity", 0), d
            ),
        }
        count = 0
        for kind, load in loaders.items():
            for path in sorted(Path(directory, kind).glob("*.json")):
                docs = json.loads(path.read_text())
                for doc in docs if isinstance(docs, list) else [docs]:
                    load(doc)
                    count += 1
        return count

    # -- failure modes -----------------------------------------------------------------------------------------

    def fail(
        self, mode: str, times: int | None = 1, message: str = "", retry_after: int = 30, delay: float = 0.0
    ) -> None:
        """Make the next `times` requests (None: all until `clear_failures`) fail in this mode."""
        if mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {mode!r}; one of {', '.join(FAILURE_MODES)}")
        with self._lock:
            self._failures.append(Failure(mode, times, message, retry_after, delay))

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _next_failure(self) -> Failure | None:
        with self._lock:
            if not self._failures:
                return None
            failure = self._failures[0]
            if failure.times is not None:
                failure.times -= 1
                if failure.times <= 0:
                    self._failures.pop(0)
            return failure

    # -- answering ---------------------------------------------------------------------------------------------

    def answer(self, authorization: str | None, body: bytes) -> tuple[int, dict, dict]:
        """(status, headers, JSON body) for one GraphQL request."""
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 400, {}, {"errors": [{"message": "Request body is not valid JSON"}]}
        with self._lock:
            self.queries.append({"query": request.get("query", ""), "variables": request.get("variables") or {}})
        if authorization != f"Bearer {self.token}":
            return 401, {}, {"errors": [{"message": "Unauthorized: invalid or missing API token"}]}
        failure = self._next_failure()
        if failure is not None:
            if failure.mode == "slow":
                time.sleep(failure.delay)
            elif failure.mode == "rate_limit":
                return (
                    429,
                    {"Retry-After": str(failure.retry_after)},
                    {"errors": [{"message": failure.message or "Too many requests"}]},
                )
            elif failure.mode == "server_error":
                return 500, {}, {"errors": [{"message": failure.message or "Internal server error"}]}
            elif failure.mode == "graphql_error":
                return 200, {}, {"data": None, "errors": [{"message": failure.message or "Internal error"}]}
            elif failure.mode == "expired_token":
                return 401, {}, {"errors": [{"message": failure.message or "Unauthorized: API token has expired"}]}
            elif failure.mode == "forbidden":
                return 403, {}, {"errors": [{"message": failure.message or "Forbidden: missing permission"}]}
        query = request.get("query")
        if not isinstance(query, str) or not query.strip():
            return 400, {}, {"errors": [{"message": "Must provide query string."}]}
        if self.fast:
            with contextlib.suppress(fast_graphql.FastPathUnsupported):  # then the full executor below answers
                return (
                    200,
                    {},
                    fast_graphql.execute(
                        self.schema, query, self.store.root(), request.get("variables") or {}, INTERFACE_DEFAULTS
                    ),
                )
        result = graphql_sync(
            self.schema,
            query,
            root_value=self.store.root(),
            variable_values=request.get("variables") or {},
            operation_name=request.get("operationName"),
        )
        out: dict = {}
        if result.errors:
            out["errors"] = [e.formatted for e in result.errors]
        if result.data is not None or not result.errors:
            out["data"] = result.data
        return 200, {}, out

    def control(self, command: dict) -> dict:
        """Apply a JSON control command: {"fail": {...}}, {"clear": true}, {"add_order": doc}, ..."""
        if command.get("clear"):
            self.clear_failures()
        if "fail" in command:
            self.fail(**command["fail"])
        for key, add in (
            ("add_order", self.add_order),
            ("add_shipment", self.add_shipment),
            ("add_return", self.add_return),
            ("add_customer", self.add_customer),
        ):
            if key in command:
                add(command[key])
        if "set_stock" in command:
            self.set_stock(**command["set_stock"])
        with self._lock:
            return {"failures": [f.__dict__ for f in self._failures], "queries": len(self.queries)}


def _handler_for(fake: FakeCentra) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeCentra/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _send(self, status: int, headers: dict, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client went away (a killed worker): nobody to answer

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            if self.path.startswith(CONTROL_PATH):
                try:
                    self._send(200, {}, fake.control(json.loads(body or b"{}")))
                except (ValueError, TypeError) as exc:
                    self._send(400, {}, {"error": str(exc)})
                return
            status, headers, answer = fake.answer(self.headers.get("Authorization"), body)
            self._send(status, headers, answer)
            if fake.on_query is not None and fake.queries:
                fake.on_query(status, fake.queries[-1])

        def do_GET(self) -> None:
            self._send(405, {"Allow": "POST"}, {"errors": [{"message": "Use POST for GraphQL requests"}]})

    return Handler


def webhook_body(events: list[dict]) -> bytes:
    """The raw form body Centra's webhook plugin sends: payload=<URL-encoded JSON>."""
    payload = json.dumps({"events": events}, separators=(",", ":"))
    return urllib.parse.urlencode({"payload": payload}).encode()


def send_webhook(
    url: str, secret: str, events: list[dict], timeout: float = 5.0, timestamp: int | None = None
) -> requests.Response:
    """Sign and POST events to `url` the way Centra's webhook plugin does (5 s timeout, like Centra)."""
    body = webhook_body(events)
    headers = {"Content-Type": "application/x-www-form-urlencoded", HEADER: sign(secret, body, timestamp)}
    return requests.post(url, data=body, headers=headers, timeout=timeout)


def webhook_event(kind: str, object_id: int | str, action: str = "update") -> dict:
    """One Integration API webhook event as Centra writes it (`date` without a time zone)."""
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return {"type": kind, "action": action, "date": date, "id": int(object_id)}
