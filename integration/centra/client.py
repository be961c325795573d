"""Centra's Integration API (GraphQL over HTTPS) with the connection's token: fetch orders, shipments, returns,
customers and stock. Passing faults raise CentraUnavailable (retry later); answers that will not change on a
retry raise CentraQueryError with Centra's own message. The token never appears in an error or a log."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import requests

from integration import upstream
from integration.centra import queries

log = logging.getLogger(__name__)

PAGE_SIZE = 50
STOCK_BATCH = 100


class CentraError(Exception):
    """Anything that went wrong talking to Centra."""


class CentraUnavailable(CentraError):
    """A passing fault (429, 5xx, timeout, connection error): try again later. `retry_after` is Centra's
    Retry-After header as sent (read by integration.retry); `rate_limited` is True for a 429."""

    def __init__(self, message: str, retry_after: str | None = None, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited


class CentraQueryError(CentraError):
    """Centra refused the query (GraphQL errors, expired token, missing permission): a retry will not help."""


class CentraNotConfigured(CentraError):
    """The connection has no Centra API URL or token."""


def _error_messages(body: Any) -> str:
    """Centra's messages from a GraphQL `errors` list (or a plain `message`), joined, verbatim."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
        if body.get("message"):
            return str(body["message"])
    return ""


def _as_time(value: datetime) -> str:
    """Centra's DateTimeTz input: ISO 8601 with an offset, in UTC."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _size_id(item: int | str) -> int:
    """A size id from an int, a digit string, or a Checkout API item "<display item>-<size id>"."""
    text = str(item).strip()
    return int(text.rsplit("-", 1)[-1])


class CentraClient:
    """One Centra tenant's Integration API, called with one token."""

    def __init__(
        self,
        api_url: str,
        token: str,
        timeout: tuple[float, float] = (3, 20),
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url
        self._token = token
        self.timeout = timeout
        self.session = session or upstream.checked_session()
        # Set once a tenant rejects the [I] order fields, so later queries skip them at once.
        self.include_inferred = True

    def __repr__(self) -> str:
        return f"CentraClient({self.api_url!r})"

    @classmethod
    def for_connection(cls, connection, **kwargs: Any) -> CentraClient:
        """The client for a connection's Centra settings; CentraNotConfigured without a token or URL."""
        if not connection.centra_api_token:
            raise CentraNotConfigured("no Centra API token")
        if not connection.centra_api_url:
            raise CentraNotConfigured("no Centra API URL")
        bound, target = connection.centra_api_token_origin, upstream.origin(connection.centra_api_url)
        if bound != target:
            # The token goes only where it was entered for (integration/upstream.py).
            raise CentraNotConfigured(
                f"the Centra API token was entered for {bound or 'no address'}, not {target}; "
                "enter the token again for this address"
            )
        return cls(connection.centra_api_url, connection.centra_api_token, **kwargs)

    # -- transport ---------------------------------------------------------------------------------------------

    def query(self, document: str, variables: dict | None = None) -> dict:
        """Run one GraphQL document and return its `data`."""
        started = time.monotonic()
        try:
            response = self.session.post(
                self.api_url,
                json={"query": document, "variables": variables or {}},
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,  # the token goes to this URL only, never to where a redirect points
            )
        except upstream.RefusedRequest as exc:
            raise CentraQueryError(str(exc)) from None
        except requests.Timeout as exc:
            raise CentraUnavailable(f"Centra did not answer in time ({exc.__class__.__name__})") from None
        except requests.RequestException as exc:
            raise CentraUnavailable(f"cannot reach Centra ({exc.__class__.__name__})") from None
        elapsed_ms = int((time.monotonic() - started) * 1000)
        log.info("centra query %s: %s in %d ms", _operation_name(document), response.status_code, elapsed_ms)
        try:
            body = response.json()
        except ValueError:
            body = None
        status = response.status_code
        if status == 429:
            retry_after = response.headers.get("Retry-After")
            raise CentraUnavailable(
                f"Centra rate limit (429), Retry-After: {retry_after or 'not given'}", retry_after, rate_limited=True
            )
        if status >= 500 or status == 408:
            detail = _error_messages(body) or response.reason or ""
            raise CentraUnavailable(f"Centra answered {status} {detail}".strip(), response.headers.get("Retry-After"))
        if status in (401, 403):
            detail = _error_messages(body) or response.reason or ""
            raise CentraQueryError(f"Centra answered {status}: {detail}".strip())
        if body is None or not isinstance(body, dict):
            raise CentraQueryError(f"Centra answered {status} without a JSON body")
        message = _error_messages(body) if body.get("errors") else ""
        if message:
            raise CentraQueryError(message)
        if status >= 400:
            raise CentraQueryError(f"Centra answered {status}: {_error_messages(body) or response.reason}")
        return body.get("data") or {}

    def _order_query(self, build, variables: dict) -> dict:
        """Run a document that embeds the order fields; without the [I] fields if the tenant rejects them."""
        if self.include_inferred:
            try:
                return self.query(build(True), variables)
            except CentraQueryError as exc:
                if not _rejects_inferred_field(str(exc)):
                    raise
                log.warning("Centra rejected an inferred order field; asking without language/attributes")
                self.include_inferred = False
        return self.query(build(False), variables)

    # -- single objects ----------------------------------------------------------------------------------------

    def order_by_number(self, number: int | str) -> dict | None:
        """The order with this number (its full document), or None."""
        data = self._order_query(queries.order_by_number, {"number": int(number)})
        return _first(data.get("orders"))

    def shipment_by_id(self, shipment_id: int | str) -> dict | None:
        """The shipment with its full order, or None."""
        data = self._order_query(queries.shipment_by_id, {"id": int(shipment_id)})
        return _first(data.get("shipments"))

    def return_by_id(self, return_id: int | str) -> dict | None:
        """The return with its full order, or None."""
        data = self._order_query(queries.return_by_id, {"id": int(return_id)})
        return _first(data.get("returns"))

    def customer_by_id(self, customer_id: int | str) -> dict | None:
        """The customer with its billing address, or None."""
        return _first(self.query(queries.CUSTOMER_BY_ID, {"id": int(customer_id)}).get("customers"))

    # -- changed since (reconciliation) ------------------------------------------------------------------------

    def _pages(self, build, root: str, variables: dict, limit: int | None) -> Iterator[dict]:
        limit = limit or PAGE_SIZE
        page = 1
        while True:
            data = self._order_query(build, {**variables, "limit": limit, "page": page})
            rows = data.get(root) or []
            yield from rows
            if len(rows) < limit:
                return
            page += 1

    def orders_changed(self, since: datetime, until: datetime, limit: int | None = None) -> Iterator[dict]:
        """Every order updated in [since, until], page by page until a short page."""
        span = {"from": _as_time(since), "to": _as_time(until)}
        return self._pages(queries.orders_changed, "orders", span, limit)

    def shipments_changed(self, since: datetime, until: datetime, limit: int | None = None) -> Iterator[dict]:
        """Every shipment updated in [since, until], page by page."""
        span = {"from": _as_time(since), "to": _as_time(until)}
        return self._pages(queries.shipments_changed, "shipments", span, limit)

    def returns_created(self, since: datetime, until: datetime, limit: int | None = None) -> Iterator[dict]:
        """Every return created in [since, until], page by page."""
        span = {"from": _as_time(since), "to": _as_time(until)}
        return self._pages(queries.returns_created, "returns", span, limit)

    def returns_for_orders(self, numbers: Iterable[int], limit: int | None = None) -> Iterator[dict]:
        """Every return of these orders, page by page."""
        numbers = sorted({int(n) for n in numbers})
        limit = limit or PAGE_SIZE
        for start in range(0, len(numbers), limit):
            yield from self._pages(
                queries.returns_for_orders, "returns", {"numbers": numbers[start : start + limit]}, limit
            )

    # -- history import ----------------------------------------------------------------------------------------

    def history_orders(self, since: datetime, until: datetime, page: int, limit: int = PAGE_SIZE) -> list[dict]:
        """One page of the orders placed in [since, until], by number ascending, each with its shipments."""
        variables = {"from": _as_time(since), "to": _as_time(until), "limit": limit, "page": page}
        return self._order_query(queries.history_orders, variables).get("orders") or []

    def history_returns(self, numbers: Iterable[int], limit: int = PAGE_SIZE) -> list[dict]:
        """Every return of these orders (each naming its order by id and number)."""
        numbers = sorted({int(n) for n in numbers})
        found: list[dict] = []
        for start in range(0, len(numbers), limit):
            chunk, page = numbers[start : start + limit], 1
            while True:
                variables = {"numbers": chunk, "limit": limit, "page": page}
                rows = self.query(queries.HISTORY_RETURNS, variables).get("returns") or []
                found.extend(rows)
                if len(rows) < limit:
                    break
                page += 1
        return found

    def history_counts(self, since: datetime, until: datetime) -> dict:
        """{"orders": placed in [since, until], "customers": all customer accounts} from Centra's counters."""
        data = self.query(queries.HISTORY_COUNTS, {"from": _as_time(since), "to": _as_time(until)})
        return data.get("counters") or {}

    def history_customers(self, page: int, limit: int = PAGE_SIZE) -> list[dict]:
        """One page of customer accounts, by id."""
        return self.query(queries.HISTORY_CUSTOMERS, {"limit": limit, "page": page}).get("customers") or []

    def history_newsletter(self, page: int, limit: int = PAGE_SIZE) -> list[dict]:
        """One page of newsletter subscriptions."""
        data = self.query(queries.HISTORY_NEWSLETTER, {"limit": limit, "page": page})
        return data.get("newsletterSubscriptions") or []

    # -- stock and products (back in stock) --------------------------------------------------------------------

    def stock_for_items(self, size_ids: Iterable[int | str]) -> dict[int | str, int]:
        """Free-to-allocate stock per size id ({size id as given: FTA}); sizes Centra does not know are left out."""
        wanted: dict[int, list[int | str]] = {}
        for item in size_ids:
            wanted.setdefault(_size_id(item), []).append(item)
        ids = sorted(wanted)
        result: dict[int | str, int] = {}
        for start in range(0, len(ids), STOCK_BATCH):
            batch = ids[start : start + STOCK_BATCH]
            data = self.query(queries.STOCK_FOR_SIZES, {"ids": batch, "limit": len(batch)})
            for size in data.get("productSizes") or []:
                fta = ((size.get("stockTotals") or {}).get("freeToAllocateQuantity")) or 0
                for original in wanted.get(int(size["id"]), []):
                    result[original] = int(fta)
        return result

    def product_for_size(self, size_id: int | str) -> dict | None:
        """The size with its variant and product (name, brand, collection, SKU, EAN), or None."""
        return _first(self.query(queries.PRODUCT_FOR_SIZE, {"id": _size_id(size_id)}).get("productSizes"))


def _first(rows: list | None) -> dict | None:
    return rows[0] if rows else None


def _operation_name(document: str) -> str:
    for word in ("query", "mutation"):
        head = document.strip().split("{", 1)[0]
        if head.startswith(word):
            return head[len(word) :].split("(", 1)[0].strip() or "anonymous"
    return "anonymous"


def _rejects_inferred_field(message: str) -> bool:
    # graphql-js and webonyx (PHP) quote names with ", graphql-core with '.
    return "Cannot query field" in message and any(
        f'"{name}"' in message or f"'{name}'" in message for name in queries.INFERRED_FIELD_NAMES
    )


def verify_token(connection) -> tuple[bool, str]:
    """Check the connection's Centra URL and token with a cheap query: (works, what Centra said)."""
    try:
        CentraClient.for_connection(connection).query(queries.TOKEN_CHECK)
    except CentraError as exc:
        return False, str(exc)
    return True, "Centra API token works (Order:read)"
