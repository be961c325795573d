"""One statement for many new rows: INSERT ... ON CONFLICT (...) DO NOTHING RETURNING, on SQLite and PostgreSQL.

Used where a request or a chunk of work stores many rows at once and a unique key decides what is new: the
inbound door (events, keyed by their dedupe key) and the outbox (deliveries, keyed by their idempotency key).
On PostgreSQL all rows travel as one jsonb parameter, so the statement text is the same whatever the count
(neither psycopg, which re-parses the placeholders of long statements, nor PostgreSQL sees thousands of
parameters); SQLite gets a plain VALUES list (the caller keeps it under SQLite's parameter limit)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django.db import connections
from django.db.models import Model


def insert_new(objects: list[Model], conflict: tuple[str, ...], returning: tuple[str, ...]) -> list[tuple]:
    """Insert the unsaved `objects` (all of one model) whose `conflict` columns are not taken yet; the
    `returning` columns of each row inserted (rows skipped as conflicts return nothing)."""
    if not objects:
        return []
    model = type(objects[0])
    db = connections[model.objects.db]
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    quote = db.ops.quote_name
    columns = ", ".join(quote(f.column) for f in fields)
    if db.vendor == "postgresql":
        records = [{f.column: _json_value(f.value_from_object(obj)) for f in fields} for obj in objects]
        source = (
            f"SELECT {columns} FROM jsonb_to_recordset(%s::jsonb) AS r("
            + ", ".join(f"{quote(f.column)} {f.db_type(db)}" for f in fields)
            + ")"
        )
        params: list[Any] = [json.dumps(records)]
    else:
        placeholders = "(" + ", ".join(["%s"] * len(fields)) + ")"
        source = "VALUES " + ", ".join([placeholders] * len(objects))
        params = [f.get_db_prep_save(f.value_from_object(obj), connection=db) for obj in objects for f in fields]
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({columns}) {source} "
        f"ON CONFLICT ({', '.join(quote(c) for c in conflict)}) DO NOTHING "
        f"RETURNING {', '.join(quote(c) for c in returning)}"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _json_value(value: Any) -> Any:
    """A column value as jsonb_to_recordset reads it back into the column's type (times as ISO 8601)."""
    return value.isoformat() if isinstance(value, datetime) else value
