"""Who was forgotten: emails normalized, found in any JSON, hashed with a key into tombstones, and the check that
drops an event about a forgotten person (at the door and again when processing)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import Q

from integration.models import Connection, ErasureKey, ForgottenSubscriber

# Good enough to find addresses inside free text and JSON strings; what counts is the comparison after it.
_EMAIL = re.compile(r"[^\s@<>()\[\],;:\"'/\\]+@[^\s@<>()\[\],;:\"'/\\]+\.[^\s@<>()\[\],;:\"'/\\]+")


def normalize_email(value: str) -> str:
    """How an email is compared: surrounding whitespace (any kind) dropped, lower case."""
    return (value or "").strip().lower()


def mention_pattern(email: str) -> re.Pattern:
    """Matches `email` inside a longer text, case-insensitively, but not as part of another address
    (anna@example.com is not in joanna@example.com or anna@example.com.evil)."""
    return re.compile(r"(?<![\w.+\-])" + re.escape(normalize_email(email)) + r"(?![\w\-]|\.\w)", re.IGNORECASE)


def emails_in(value: Any) -> set[str]:
    """Every email-looking string inside a JSON value (keys and values, any depth), normalized."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "@" in item:
                found.update(normalize_email(m) for m in _EMAIL.findall(item))
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


def _key(*, create: bool = False) -> bytes | None:
    """The installation's erasure key (made by the first erasure; every process reads the same row). Not cached:
    a key cached from a row whose transaction was rolled back would never match the tombstones written later."""
    if create:
        row, _ = ErasureKey.objects.get_or_create(pk=1, defaults={"key": secrets.token_hex(32)})
        return row.key.encode()
    key = ErasureKey.objects.filter(pk=1).values_list("key", flat=True).first()
    return key.encode() if key else None


def _hash(key: bytes, email: str) -> str:
    return hmac.new(key, normalize_email(email).encode(), hashlib.sha256).hexdigest()


def email_hash(email: str) -> str:
    """The tombstone's keyed hash (HMAC-SHA256 with the erasure key) of a normalized email."""
    return _hash(_key(create=True), email)


def bury(email: str, connection: Connection | None, now: datetime) -> ForgottenSubscriber:
    """Record (or refresh) the tombstone of `email` for one connection or all."""
    stone, _ = ForgottenSubscriber.objects.update_or_create(
        email_hash=email_hash(email), connection=connection, defaults={"forgotten_at": now}
    )
    return stone


def forgotten(connection_id: int, emails: Iterable[str]) -> dict[str, datetime]:
    """Which of these (normalized) emails were forgotten, for this connection or all: {email: when} (one query)."""
    emails = [e for e in emails if e]
    key = _key() if emails else None
    if key is None:  # nobody was ever forgotten
        return {}
    by_hash = {_hash(key, e): e for e in emails}
    found: dict[str, datetime] = {}
    stones = ForgottenSubscriber.objects.filter(email_hash__in=list(by_hash)).filter(
        Q(connection_id=connection_id) | Q(connection__isnull=True)
    )
    for digest, when in stones.values_list("email_hash", "forgotten_at"):
        email = by_hash[digest]
        found[email] = max(when, found.get(email, when))
    return found


def anyone_forgotten(connection_id: int) -> bool:
    """Whether any tombstone could apply to this connection's events (its own or one for all): one query. When
    none can, nobody's email needs looking for."""
    return ForgottenSubscriber.objects.filter(Q(connection_id=connection_id) | Q(connection__isnull=True)).exists()


def drop_reason(when: datetime) -> str:
    return (
        f"dropped: about a subscriber erased on {when:%Y-%m-%d %H:%M} UTC (forget_subscriber); "
        "nothing of the event was kept"
    )


def _reason(stones: dict[str, datetime], emails: set[str], occurred_at: datetime | None) -> str:
    # An event that happened after the erasure is kept: the person came back (a new sign-up, a new order).
    dates = [stones[e] for e in emails if e in stones]
    if not dates or (occurred_at is not None and occurred_at > max(dates)):
        return ""
    return drop_reason(max(dates))


def check(connection_id: int, payload: Any, occurred_at: datetime | None, *extra_emails: str, lookup=None) -> str:
    """The reason to drop an event about a forgotten person ("" to keep it): an email in it (or given) that was
    forgotten before the event happened, or with no time known. `lookup` answers as `forgotten` does (set-based
    processing reads the tombstones of a whole chunk at once)."""
    emails = emails_in(payload) | {normalize_email(e) for e in extra_emails if e}
    return _reason((lookup or forgotten)(connection_id, emails), emails, occurred_at)


def drop_forgotten_rows(connection: Connection, rows: list) -> None:
    """Inbound rows (integration.inbound.store.NewEvent) about a forgotten person: stored as ignored, with the
    reason and without the payload, email or a reference that holds an email. One query for the request."""
    emails = {id(row): (emails_in(row.payload) | {normalize_email(row.email)}) - {""} for row in rows}
    everyone = set().union(*emails.values()) if emails else set()
    if not everyone:
        return
    stones = forgotten(connection.pk, everyone)
    if not stones:
        return
    for row in rows:
        reason = _reason(stones, emails[id(row)], row.occurred_at)
        if reason:
            row.payload, row.email, row.ignore_reason = {}, "", reason
            if "@" in row.object_ref:
                row.object_ref = ""
