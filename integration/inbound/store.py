"""Step 1 of an event's flow: read, check and store inbound events, then enqueue their processing on commit.

Everything here is independent of DRF so the views stay thin: each check raises InboundError with the HTTP
status and the JSON body the sender gets.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from integration import catalog
from integration.bulk import insert_new
from integration.inbound import strict_json
from integration.inbound.signature import HEADER, SignatureError, verify_signature
from integration.inbound.tokens import inbound_connection
from integration.inbound.validation import (
    CheckedEvent,
    check_catalogue,
    check_event,
    check_webhook_events,
    known_types,
)
from integration.mapping.values import dig, zone
from integration.models import Connection, InboundEvent
from integration.queue import enqueue, shared_broker
from integration.tombstones import drop_forgotten_rows

log = logging.getLogger(__name__)

MAX_EVENTS_PER_REQUEST = 100
PROCESS_TASK = "integration.tasks.process_inbound_batch"
JSON_CONTENT_TYPE = "application/json"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


class InboundError(Exception):
    """A request we refuse: `status` and `body` are what the sender gets (every refusal of both endpoints is
    one of these, so the view answers, and can record, refusals in one place)."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.reason = message
        self.headers = headers or {}
        self.body = {"error": message, **extra}


@dataclass
class NewEvent:
    """One event ready to store (an InboundEvent row before it exists)."""

    source: str
    dedupe_key: str
    event_type: str
    payload: dict
    object_ref: str = ""
    email: str = ""
    occurred_at: datetime | None = None
    ignore_reason: str = ""


@dataclass
class StoreResult:
    accepted: int = 0
    duplicates: int = 0
    stored_ids: list[int] = field(default_factory=list)

    def as_response(self) -> dict:
        return {"accepted": self.accepted, "duplicates": self.duplicates}


# --- request checks -------------------------------------------------------------------------------------------


def read_body(request: HttpRequest) -> bytes:
    """The raw body, refused with 413 when over INBOUND_MAX_BODY_BYTES (by header, then by what really came)."""
    limit = settings.INBOUND_MAX_BODY_BYTES
    declared = (request.META.get("CONTENT_LENGTH") or "").strip()
    if declared and not _DECIMAL.fullmatch(declared):
        raise InboundError(400, "Content-Length must be a number of bytes")
    if declared and int(declared) > limit:
        raise InboundError(413, f"body is larger than {limit} bytes")
    # Read at most one byte past the limit: a sender without (or lying about) Content-Length cannot make us
    # hold more than that in memory.
    body = request.read(limit + 1)
    if len(body) > limit:
        raise InboundError(413, f"body is larger than {limit} bytes")
    return body


def require_content_type(request: HttpRequest, expected: str) -> None:
    """415 unless the request's media type is `expected` (parameters such as charset are fine)."""
    media_type = (request.META.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
    if media_type != expected:
        raise InboundError(415, f"Content-Type must be {expected}", got=media_type or None)


_DECIMAL = re.compile(r"[0-9]{1,20}")
# What a URL token can look like (secrets.token_urlsafe): anything else is unknown without asking the database
# (a NUL in the path reached PostgreSQL as a 503).
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def connection_for_token(token: str) -> Connection:
    """The connection whose URL token this is, or 404 (loading only what storing needs: no other secret is
    decrypted on the request path)."""
    if not _TOKEN.fullmatch(token):
        raise InboundError(404, "unknown endpoint")
    connection = inbound_connection(token)
    if connection is None:
        raise InboundError(404, "unknown endpoint")
    return connection


def check_signature(request: HttpRequest, body: bytes, connection: Connection) -> int:
    """401 unless the signature header signs these exact bytes; returns the signed timestamp."""
    header = request.META.get("HTTP_" + HEADER.upper().replace("-", "_"))
    try:
        return verify_signature(
            header, body, connection.signing_secret_list, tolerance=settings.SIGNATURE_TOLERANCE_SECONDS
        )
    except SignatureError as exc:
        # The reason names what is wrong, never a secret or the expected value.
        raise InboundError(401, f"signature rejected: {exc}") from exc


# --- JSON events ----------------------------------------------------------------------------------------------


def parse_json_events(body: bytes) -> list[Any]:
    """The events of a JSON body: one event object or `{"events": [...]}` (at most 100)."""
    try:
        document = strict_json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InboundError(400, f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    except ValueError as exc:
        raise InboundError(400, f"body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InboundError(400, 'body must be a JSON object: one event or {"events": [...]}')
    if "events" in document and "type" not in document:
        events = document["events"]
        if not isinstance(events, list) or not events:
            raise InboundError(400, '"events" must be a non-empty list')
        if len(events) > MAX_EVENTS_PER_REQUEST:
            raise InboundError(400, f"at most {MAX_EVENTS_PER_REQUEST} events per request, got {len(events)}")
        return events
    return [document]


def validate_json_events(events: list[Any]) -> list[CheckedEvent]:
    """The events as they will be stored, or 400 naming every problem of every event (one bad event rejects
    the request)."""
    checked, errors = [], []
    unknown = False
    for index, event in enumerate(events):
        event_id = event.get("id") if isinstance(event, dict) else None
        valid, problems = check_event(event)
        if valid is not None:
            checked.append(valid)
        for field_name, message in problems:
            errors.append({"index": index, "id": event_id, "field": field_name, "message": message})
            unknown = unknown or (field_name == "type" and message.startswith("unknown event type"))
    if errors:
        extra: dict[str, Any] = {"errors": errors}
        if unknown:
            extra["known_types"] = known_types()
        raise InboundError(400, f"{len(errors)} problem(s) in the events; nothing was stored", **extra)
    return checked


def _order_email(order: Any) -> str:
    for holder in ("customer", "shippingAddress", "billingAddress"):
        email = dig(order, holder, "email")
        if email:
            return str(email)
    return str(dig(order, "email") or "")


def describe_json_event(event_type: str, body: dict) -> tuple[str, str]:
    """(object_ref, email) of a JSON event body, for the admin's search and the logs, as its type declares."""
    declared = catalog.INBOUND_TYPES.get(event_type)
    order_at = declared.order_at if declared else ("order",)
    if declared is not None and declared.object_ref is not None:
        ref = declared.object_ref(body)
    else:
        ref = dig(body, *order_at, "number")
    email = body.get("email") or dig(body, "customer", "email") or _order_email(dig(body, *order_at))
    return str(ref or "").strip()[:120], str(email or "").strip()[:254]


def json_events_to_store(connection: Connection, events: list[CheckedEvent]) -> list[NewEvent]:
    """Validated JSON events as rows to store; an event that is not to be sent (its flow off, OrderPlaced in
    auto-confirm mode: catalog.json_event_target) is kept but marked ignored, with the reason."""
    enabled = connection.enabled_events()
    rows = []
    for event in events:
        object_ref, email = describe_json_event(event.type, event.body)
        reason = ""
        if event.type in catalog.EVENTS:  # (a plug-in's own input types are handled by the plug-in)
            _, reason = catalog.json_event_target(
                event.type, event.body, manual_confirmation=connection.manual_confirmation, enabled=enabled
            )
        rows.append(
            NewEvent(
                source=InboundEvent.Source.EVENTS,
                dedupe_key=f"events:{event.id}",  # the id is at most 200 characters: the key is never cut
                event_type=event.type,
                payload=event.body,
                object_ref=object_ref,
                email=email,
                occurred_at=event.occurred_at,  # DRF's reading: a time without an offset is in UTC (TIME_ZONE)
                ignore_reason=reason,
            )
        )
    return rows


# --- Centra's webhook plugin ----------------------------------------------------------------------------------


def parse_webhook_form(body: bytes) -> Any:
    """The JSON inside Centra's form body `payload=<urlencoded JSON>`."""
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise InboundError(400, "form body is not UTF-8 (after URL decoding)") from exc
    values = form.get("payload")
    if not values or not values[0].strip():
        raise InboundError(400, 'form field "payload" is missing')
    if len(values) > 1:
        raise InboundError(400, f'form field "payload" is given {len(values)} times; send it once')
    try:
        return strict_json.loads(values[0])
    except ValueError as exc:
        raise InboundError(400, f'form field "payload" is not valid JSON: {exc}') from exc


def webhook_events_to_store(connection: Connection, document: Any, signed_at: int) -> list[NewEvent]:
    """Rows for a webhook payload: Integration API `{"events": [...]}` or Storefront `{"DisplayItems": [...]}`."""
    if not isinstance(document, dict) or not document:
        raise InboundError(400, "payload must be a non-empty JSON object")
    if "events" in document:
        if len(document) > 1:
            others = ", ".join(sorted(repr(key[:60]) for key in document if key != "events"))
            raise InboundError(400, f'a payload holds "events" or catalogue keys, not both (also: {others})')
        return _integration_api_rows(document["events"], zone(connection.time_zone))
    return _catalogue_rows(document, signed_at)


def _key_digest(*parts: Any) -> str:
    # The whole key, unambiguously: parts may hold ":" or be thousands of characters long, so neither joining
    # nor cutting them can tell two events apart.
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def _integration_api_rows(events: Any, zone: ZoneInfo) -> list[NewEvent]:
    if not isinstance(events, list):
        raise InboundError(400, '"events" must be a list')
    if len(events) > MAX_EVENTS_PER_REQUEST:
        raise InboundError(400, f"at most {MAX_EVENTS_PER_REQUEST} events per call, got {len(events)}")
    checked, errors = check_webhook_events(events)
    if errors:
        raise InboundError(400, f"{len(errors)} problem(s) in the events; nothing was stored", errors=errors)
    # The Centra kinds the catalog turns into events (order, shipment, ...); `account` and anything new are kept
    # but not processed.
    kinds = set(catalog.centra_kinds())
    rows = []
    for raw, event in zip(events, checked, strict=True):
        event_type, object_id = event["type"], event["id"]
        action, date = event.get("action", ""), event.get("date", "")
        rows.append(
            NewEvent(
                source=InboundEvent.Source.WEBHOOK,
                dedupe_key=f"webhook:{event_type[:20]}:{_key_digest(event_type, action, object_id, date)}",
                event_type=event_type,
                payload=raw,
                object_ref=object_id,
                occurred_at=_centra_date(date, zone),
                ignore_reason="" if event_type in kinds else f"webhook type {event_type!r} is not used",
            )
        )
    return rows


def _centra_date(value: str, zone: ZoneInfo) -> datetime | None:
    # Centra's webhook dates carry no zone: they are the store's clock, i.e. the connection's time zone.
    try:
        parsed = parse_datetime(value) if value else None
    except ValueError:
        return None
    if parsed is not None and timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=zone)
    return parsed


def _catalogue_rows(document: dict, signed_at: int) -> list[NewEvent]:
    catalogue, errors = check_catalogue(document)
    if errors:
        raise InboundError(400, f"{len(errors)} problem(s) in the catalogue keys; nothing was stored", errors=errors)
    rows = []
    for key, id_list in catalogue.items():
        rows.append(
            NewEvent(
                source=InboundEvent.Source.WEBHOOK,
                dedupe_key=f"webhook:{key[:20]}:{_key_digest(key, sorted(id_list), signed_at)}",
                event_type=key,
                payload={"key": key, "ids": id_list},
                object_ref=",".join(id_list)[:120],
                # Keys a plug-in declared (back in stock: DisplayItems, Products) are processed; others kept.
                ignore_reason="" if key in catalog.CATALOGUE_KEYS else f"catalogue key {key!r} is not used",
            )
        )
    return rows


# --- storing --------------------------------------------------------------------------------------------------


def store_events(connection: Connection, rows: list[NewEvent]) -> StoreResult:
    """Store every row in one transaction; a known dedupe key counts as a duplicate and is not processed again.

    Set-based: one INSERT ... ON CONFLICT DO NOTHING RETURNING for all rows (a key another request stored, even
    one committed a moment ago, is simply not inserted), one UPDATE of duplicate_count per distinct increment
    (usually one), and one task on commit carrying the ids of the new events to process.
    """
    result = StoreResult()
    # A replayed request or a late event about someone erased is kept only as an ignored row with the reason.
    if connection.__dict__.get("anyone_forgotten", True):  # (read with the connection: no tombstone, no scan)
        drop_forgotten_rows(connection, rows)
    first_of_key: dict[str, NewEvent] = {}
    repeats: Counter[str] = Counter()
    for row in rows:
        if row.dedupe_key in first_of_key:
            repeats[row.dedupe_key] += 1  # the same event twice in one request
        else:
            first_of_key[row.dedupe_key] = row
    with transaction.atomic():
        inserted = _insert_new(connection, list(first_of_key.values()), timezone.now())
        for key, row in first_of_key.items():
            if key not in inserted:
                repeats[key] += 1
                continue
            result.accepted += 1
            if not row.ignore_reason:
                result.stored_ids.append(inserted[key])
        _count_duplicates(connection, repeats)
        if result.stored_ids:
            transaction.on_commit(functools.partial(enqueue_processing, list(result.stored_ids)))
    result.duplicates = sum(repeats.values())
    return result


def _insert_new(connection: Connection, rows: list[NewEvent], now: datetime) -> dict[str, int]:
    """Insert the rows whose dedupe key the connection does not have yet; {dedupe_key: id} of those inserted."""
    events = [_unsaved(connection, row, now) for row in rows]
    return {key: pk for pk, key in insert_new(events, ("connection_id", "dedupe_key"), ("id", "dedupe_key"))}


def _unsaved(connection: Connection, row: NewEvent, now: datetime) -> InboundEvent:
    ignored = bool(row.ignore_reason)
    return InboundEvent(
        connection=connection,
        source=row.source,
        dedupe_key=row.dedupe_key,
        event_type=row.event_type,
        object_ref=row.object_ref,
        email=row.email,
        payload=row.payload,
        occurred_at=row.occurred_at,
        received_at=now,
        status=InboundEvent.Status.IGNORED if ignored else InboundEvent.Status.RECEIVED,
        processed_at=now if ignored else None,
        error=row.ignore_reason,
    )


def _count_duplicates(connection: Connection, repeats: Counter[str]) -> None:
    """duplicate_count += n for every known key: one UPDATE per distinct n (almost always just n = 1)."""
    by_increment: dict[int, list[str]] = {}
    for key, times in repeats.items():
        by_increment.setdefault(times, []).append(key)
    for times, keys in by_increment.items():
        InboundEvent.objects.filter(connection=connection, dedupe_key__in=keys).update(
            duplicate_count=F("duplicate_count") + times
        )


def enqueue_processing(inbound_ids: list[int]) -> None:
    """Hand one request's new events to the worker as one task; if the broker is down the sweeper picks the
    stored rows up later (one by one)."""
    enqueue(PROCESS_TASK, inbound_ids, broker=shared_broker(), what=f"{len(inbound_ids)} inbound event(s)")
