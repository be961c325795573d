"""Refused inbound calls, kept so the merchant can see them (the console's connection and home pages).

The views call `record()` from the one place every refusal passes (`except InboundError`), so an accepted request
costs nothing extra. What is kept: time, endpoint, the answer, the reason, the sender's address and at most the
first RejectedCall.BODY_LIMIT bytes of the body. Never a header (the signature, cookies), never a secret.
"""

from __future__ import annotations

import logging
import re

from django.db import DatabaseError
from django.http import HttpRequest

from integration.models import Connection, RejectedCall

log = logging.getLogger(__name__)

REASON_LIMIT = 1000
SENDER_LIMIT = 100
PROBLEMS_SHOWN = 3
TRIM_EVERY = 10  # trim the oldest rows on every 10th refusal: the log stays within KEEP + TRIM_EVERY rows
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def record(
    request: HttpRequest,
    endpoint: str,
    status: int,
    body: dict,
    *,
    raw_body: bytes = b"",
    token: str = "",
    connection: Connection | None = None,
) -> RejectedCall | None:
    """Keep one refused call (the answer `status` with the JSON `body` the sender got); never raises."""
    try:
        connection_id = connection.pk if connection is not None else _connection_id(token)
        call = RejectedCall.objects.create(
            connection_id=connection_id,
            endpoint=endpoint,
            status_code=status,
            reason=reason_of(body),
            sender=sender_of(request),
            body_start=body_start(raw_body),
        )
        if call.pk % TRIM_EVERY == 0:
            trim(connection_id)
        return call
    except DatabaseError as exc:  # the sender's answer matters more than our record of it
        log.warning("refused inbound call not recorded: %s", exc.__class__.__name__)
        return None


def _connection_id(token: str) -> int | None:
    if not _TOKEN.fullmatch(token or ""):
        return None
    return Connection.objects.filter(token=token).values_list("pk", flat=True).first()


def reason_of(body: dict) -> str:
    """The error the sender got, with the first few problems a 400 named."""
    reason = str(body.get("error", ""))
    problems = body.get("errors") or []
    if isinstance(problems, list) and problems:
        shown = [_problem(p) for p in problems[:PROBLEMS_SHOWN]]
        more = len(problems) - PROBLEMS_SHOWN
        reason += ": " + "; ".join(shown) + (f"; and {more} more" if more > 0 else "")
    return reason[:REASON_LIMIT]


def _problem(problem: object) -> str:
    if not isinstance(problem, dict):
        return str(problem)
    where = problem.get("field") or ""
    if problem.get("index") is not None:
        where = f"event {problem['index']} {where}".strip()
    return f"{where}: {problem.get('message', '')}" if where else str(problem.get("message", ""))


def sender_of(request: HttpRequest) -> str:
    """The peer's address, and the first X-Forwarded-For address when a proxy set one (as the proxy said)."""
    peer = request.META.get("REMOTE_ADDR") or "?"
    forwarded = (request.META.get("HTTP_X_FORWARDED_FOR") or "").split(",", 1)[0].strip()
    text = f"{peer} (forwarded for {forwarded})" if forwarded and forwarded != peer else peer
    return _printable(text)[:SENDER_LIMIT]


def body_start(raw: bytes) -> str:
    """At most BODY_LIMIT bytes of the body, as text (undecodable bytes and NULs shown as replacements)."""
    text = _printable(raw[: RejectedCall.BODY_LIMIT].decode("utf-8", errors="replace"))
    while len(text.encode()) > RejectedCall.BODY_LIMIT:  # a replacement character is longer than the byte it shows
        text = text[:-1]
    return text


def _printable(text: str) -> str:
    # PostgreSQL text cannot hold NUL; other control characters would only confuse the page.
    return "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text)


def trim(connection_id: int | None) -> int:
    """Drop the connection's refused calls beyond the newest RejectedCall.KEEP; the number dropped."""
    rows = RejectedCall.objects.filter(connection_id=connection_id) if connection_id else _unknown()
    oldest_kept = rows.order_by("-at", "-pk").values_list("at", flat=True)[RejectedCall.KEEP - 1 : RejectedCall.KEEP]
    cutoff = next(iter(oldest_kept), None)
    if cutoff is None:
        return 0
    deleted, _ = rows.filter(at__lt=cutoff).delete()
    return deleted


def _unknown():
    return RejectedCall.objects.filter(connection__isnull=True)
