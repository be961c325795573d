"""Erasure that erases: `forget_subscriber` removes a person from every table that can hold them.

1. A tombstone first (a keyed hash of the normalized email, integration/tombstones.py), so what is on its way
   (a replayed request, a late webhook, a worker mid-way) is dropped instead of re-creating the person.
2. Inbound events that mention the email anywhere (its column, the JSON payload, the error), compared
   normalized (case, surrounding spaces), deleted with the deliveries built from them.
3. Deliveries that mention it (column, request body, last error, notes): deleted; a back-in-stock batch (many
   recipients in one request body, the recipients it records) keeps the others and loses only this person.
4. The admin's change history entries and the refused inbound calls (their first bytes) that name the email, and
   the worker's stored failed tasks (django-q2 keeps their arguments and error pickled: unpickled and checked
   here, as the database cannot search them). Queued tasks carry row ids only, never a person.
5. Every app that stores people answers the core's `subscriber_forgotten` signal (back in stock: watchers).
6. On SQLite, deleted content is overwritten (secure_delete) and the WAL checkpointed.
Searches run in the database (a LIKE over the JSON as text, on SQLite and PostgreSQL) to find candidates, and
each candidate is confirmed in Python with the same comparison, so `joanna@` never matches `anna@`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from django.contrib.admin.models import LogEntry
from django.db import OperationalError, connections, transaction
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from integration import tombstones
from integration.models import Connection, Delivery, DeliveryAttempt, InboundEvent, RejectedCall
from integration.signals import subscriber_forgotten

BATCH_SIZE = 500
REDACTED = "[erased]"

REMAINS_OUTSIDE = [
    "Rule: the subscriber stays in each Rule account unless --rule is given (then deleted there too)",
    "database backups and replicas' history taken before now: they expire with your backup retention",
    "PostgreSQL: deleted rows stay in the table files until (auto)vacuum reuses the space",
    "SQLite: the write-ahead log (db.sqlite3-wal) until a checkpoint (one is run at the end; 'sqlite' says if it "
    "completed)",
    "logs and anything exported from the admin before now",
]


def _needles(email: str) -> list[str]:
    """The email as it can appear in stored text: plain, and as JSON escapes it (SQLite keeps JSON ASCII-only)."""
    ascii_form = json.dumps(email)[1:-1]
    return list(dict.fromkeys([email, ascii_form]))


def _text_match(fields: list[str], needles: list[str]) -> Q:
    q = Q()
    for field in fields:
        for needle in needles:
            q |= Q(**{f"{field}__icontains": needle})
    return q


def _candidates(queryset: QuerySet, json_field: str, text_fields: list[str], needles: list[str]) -> QuerySet:
    """Rows whose text columns or JSON (as text) contain the email, case-insensitively (found by the database)."""
    alias = f"{json_field}_text"
    return queryset.annotate(**{alias: Cast(json_field, TextField())}).filter(
        _text_match([*text_fields, alias], needles)
    )


def _mentions(pattern, *values: Any) -> bool:
    """Whether any text, or any string (key or value) inside any JSON value, holds the email."""
    stack = list(values)
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "@" in item and pattern.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _delete_ids(model, ids: list[int]) -> int:
    total = 0
    for start in range(0, len(ids), BATCH_SIZE):
        with transaction.atomic():
            _, per_model = model.objects.filter(pk__in=ids[start : start + BATCH_SIZE]).delete()
        total += per_model.get(model._meta.label, 0)
    return total


def _scrub(text: str, pattern) -> str:
    return pattern.sub(REDACTED, text or "")


def _without_person(body: Any, pattern) -> tuple[Any, int]:
    """A batch request body without this person's subscriber entries: (new body, entries left)."""
    subscribers = body.get("subscribers") if isinstance(body, dict) else None
    if not isinstance(subscribers, list):
        return body, 0
    kept = [s for s in subscribers if not _mentions(pattern, s)]
    return {**body, "subscribers": kept}, len(kept)


def _redact_batch(delivery: Delivery, body: Any, pattern) -> None:
    with transaction.atomic():
        delivery.request_body = body
        delivery.last_error = _scrub(delivery.last_error, pattern)
        delivery.notes = _scrub(delivery.notes, pattern)
        delivery.save(update_fields=["request_body", "last_error", "notes", "updated_at"])
        for attempt in DeliveryAttempt.objects.filter(delivery=delivery):
            attempt.response_body = _scrub(attempt.response_body, pattern)
            attempt.error = _scrub(attempt.error, pattern)
            attempt.note = _scrub(attempt.note, pattern)
            attempt.save(update_fields=["response_body", "error", "note"])


def _erase_inbound(email: str, pattern, needles: list[str], connection: Connection | None) -> list[int]:
    queryset = InboundEvent.objects.all()
    if connection is not None:
        queryset = queryset.filter(connection=connection)
    found = _candidates(queryset, "payload", ["email", "object_ref", "error"], needles)
    return [
        pk
        for pk, *values in found.values_list("pk", "email", "object_ref", "error", "payload").iterator()
        if _mentions(pattern, *values)
    ]


def _erase_deliveries(pattern, needles: list[str], connection: Connection | None, inbound_ids: list[int]) -> dict:
    queryset = Delivery.objects.all()
    if connection is not None:
        queryset = queryset.filter(connection=connection)
    found = _candidates(queryset, "request_body", ["email", "last_error", "notes"], needles)
    delete, redacted = [], 0
    rows = found.values_list("pk", "email", "last_error", "notes", "request_body").iterator()
    for pk, *values in rows:
        if not _mentions(pattern, *values):
            continue
        body, others = _without_person(values[3], pattern)
        if others:  # a batch: the other recipients keep their delivery, without this person
            _redact_batch(Delivery.objects.get(pk=pk), body, pattern)
            redacted += 1
        else:
            delete.append(pk)
    # Deliveries built from the person's inbound events (e.g. another buyer's order shipped to them: the body
    # holds their name and address, not necessarily their email).
    for start in range(0, len(inbound_ids), BATCH_SIZE):
        chunk = inbound_ids[start : start + BATCH_SIZE]
        delete.extend(queryset.filter(inbound_event_id__in=chunk).values_list("pk", flat=True))
    return {"deleted": _delete_ids(Delivery, sorted(set(delete))), "batches_redacted": redacted}


def _erase_admin_history(pattern, needles: list[str]) -> int:
    found = LogEntry.objects.filter(_text_match(["object_repr", "change_message"], needles))
    ids = [
        pk for pk, *values in found.values_list("pk", "object_repr", "change_message") if _mentions(pattern, *values)
    ]
    return _delete_ids(LogEntry, ids)


def _erase_rejected_calls(pattern, needles: list[str], connection: Connection | None) -> int:
    """Refused inbound calls keep the first bytes of their body: those naming the email go."""
    found = RejectedCall.objects.filter(_text_match(["body_start", "reason"], needles))
    if connection is not None:
        found = found.filter(connection=connection)
    ids = [pk for pk, *values in found.values_list("pk", "body_start", "reason") if _mentions(pattern, *values)]
    return _delete_ids(RejectedCall, ids)


def _erase_failed_tasks(pattern) -> int:
    """django-q2's failed-task records (pickled arguments and error text): those naming the email go."""
    from django_q.models import Failure

    ids = [
        pk
        for pk, args, kwargs, result in Failure.objects.values_list("pk", "args", "kwargs", "result").iterator(
            chunk_size=BATCH_SIZE
        )
        if _mentions(pattern, repr(args), repr(kwargs), str(result))
    ]
    deleted = 0
    for start in range(0, len(ids), BATCH_SIZE):
        deleted += Failure.objects.filter(pk__in=ids[start : start + BATCH_SIZE]).delete()[0]
    return deleted


def _checkpoint_sqlite() -> str | None:
    """SQLite only: copy the WAL into the database and truncate it (deleted pages were zeroed by secure_delete)."""
    db = connections["default"]
    if db.vendor != "sqlite":
        return None
    later = "SQLite's automatic checkpoint completes it (after 1000 pages of writes) or the next forget_subscriber"
    if db.in_atomic_block:
        return f"WAL not checkpointed: called inside a transaction; {later}"
    try:
        with db.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            busy, _log, _done = cursor.fetchone()
    except OperationalError:
        busy = 1
    if busy:
        return f"WAL checkpoint incomplete: another process was using the database; {later}"
    return "WAL checkpointed and truncated"


def _secure_delete_on() -> None:
    db = connections["default"]
    if db.vendor == "sqlite":
        with db.cursor() as cursor:
            cursor.execute("PRAGMA secure_delete = ON")


def forget_subscriber(email: str, *, connection: Connection | None = None, at_rule: bool = False) -> dict:
    """Erase everything stored about `email` (one connection or all; with `at_rule`, the subscriber at Rule too)
    and leave a tombstone; returns what was erased, per table, and what remains outside."""
    email = tombstones.normalize_email(email)
    if not email or "@" not in email:
        raise ValueError("an email is required")
    pattern = tombstones.mention_pattern(email)
    needles = _needles(email)
    tombstones.bury(email, connection, timezone.now())
    _secure_delete_on()

    inbound_ids = _erase_inbound(email, pattern, needles, connection)
    deliveries = _erase_deliveries(pattern, needles, connection, inbound_ids)
    result: dict[str, Any] = {
        "email": email,
        "deliveries_deleted": deliveries["deleted"],
        "batch_deliveries_redacted": deliveries["batches_redacted"],
        "inbound_events_deleted": _delete_ids(InboundEvent, inbound_ids),
        "admin_history_entries_deleted": _erase_admin_history(pattern, needles),
        "rejected_calls_deleted": _erase_rejected_calls(pattern, needles, connection),
        "failed_tasks_deleted": _erase_failed_tasks(pattern),
    }
    for _receiver, counts in subscriber_forgotten.send(
        sender=Connection, email=email, connection=connection, mentions=lambda text: bool(pattern.search(text or ""))
    ):
        result.update(counts or {})
    result["tombstone"] = "kept: a keyed hash of the email; events about them from before now are dropped"
    if at_rule:
        connections_ = [connection] if connection else list(Connection.objects.all())
        result["rule"] = [delete_at_rule(conn, email) for conn in connections_]
    sqlite = _checkpoint_sqlite()
    if sqlite:
        result["sqlite"] = sqlite
    result["remains_outside"] = [line for line in REMAINS_OUTSIDE if not (at_rule and line.startswith("Rule"))]
    return result


def delete_at_rule(connection: Connection, email: str) -> dict:
    """DELETE /subscribers/<email>?identified_by=email on the connection's Rule account."""
    from integration.rule.client import RuleClient, RuleRequestError, error_message

    if not connection.rule_api_key:
        return {"connection": connection.name, "ok": False, "message": "no Rule API key"}
    client = RuleClient.for_connection(connection)
    try:
        response = client.send("DELETE", f"/subscribers/{quote(email, safe='@')}", params={"identified_by": "email"})
    except RuleRequestError as exc:
        return {"connection": connection.name, "ok": False, "message": str(exc)}
    finally:
        client.session.close()
    if 200 <= response.status_code < 300:
        return {
            "connection": connection.name,
            "ok": True,
            "status_code": response.status_code,
            "message": "deleted at Rule",
        }
    if response.status_code == 404:
        # Nothing to erase there is what the person asked for.
        return {"connection": connection.name, "ok": True, "status_code": 404, "message": "not found at Rule"}
    return {
        "connection": connection.name,
        "ok": False,
        "status_code": response.status_code,
        "message": error_message(response),
    }
