"""Step 3 of an event's flow: store, claim, send and classify requests to Rule (see architecture.md "Outbound: Rule").

The database is the source of truth. A task carries a group (a connection and a batch key, never data):
`deliver_group()` claims up to 100 of the group's due rows with one conditional UPDATE (so two workers never
send a row twice), writes one attempt row per delivery before the HTTP call, sends them as one call (a lone
delivery goes alone, with its own body, unchanged), and records what Rule answered for each delivery in one
short transaction. Retries are not queued as delayed tasks: the row's `next_attempt_at` says when, and `sweep()`
(every minute) enqueues every group with something due, so a broker that loses a task loses nothing.

Coalescing: deliveries of one connection whose requests differ only in their subscribers (same method, path,
tags, automation, update_on_duplicate: the same `batch_key`, computed when they are stored) share one Rule call
of up to 100 subscribers with `sync_subscribers: true`. It only takes what is already waiting; nothing is held
back to wait for company. A 400 for a batch is split until the subscriber Rule refused is alone.

Notes from the mapping (e.g. "Order.Products trimmed to 65 KiB") are kept on `Delivery.notes` and copied to
the note of the delivery's first attempt, so they show both on the delivery and in its attempt log.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import hashlib
import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar
from urllib.parse import quote

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import Case, Count, Exists, F, OuterRef, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce, Lower
from django.dispatch import receiver
from django.utils import timezone

from integration import retry
from integration.mapping.request import distinct_tags
from integration.models import Connection, Delivery, DeliveryAttempt, Flow, InboundEvent
from integration.ops import alerts, delivery_stats, worker
from integration.ops.health import KEY_REFUSED
from integration.queue import enqueue
from integration.rule import budget
from integration.rule.client import RuleRequestError, client_for, error_message, scrub
from integration.signals import hold_lifted
from integration.tombstones import normalize_email

log = logging.getLogger(__name__)

# A fresh inbound event is left to its own task this long before the sweeper enqueues it again (60 s).
STUCK_INBOUND_AFTER = 2 * retry.FIRST_WAIT
SWEEP_PAGE = 1000  # the sweeper reads inbound ids in pages of this many, and enqueues all of it
CART_TAG_PARENTS = ("OrderPlaced", "OrderCompleted")
REMOVE_CART_TAG = "RemoveCartTag"
# What a claim writes on an attempt a dead worker left without an answer.
WORKER_STOPPED = (
    "no answer recorded: the worker stopped (killed, or lost the database for longer than its claim) after "
    "sending; Rule may have received this request"
)

SOLO = ""  # the batch key of a delivery that always goes alone (cart tag removal, test call, ...)
COALESCE_LIMIT = 100  # subscribers in one call with sync_subscribers: true (Rule's cap)
CLAIM_LIMIT = 100  # deliveries one claim takes from a group
DRAIN_SECONDS = 20.0  # a group's task drains this long, then leaves the rest to a fresh task
SPLIT_ON = (400, 409, 413)  # a batch refused with these is split: one subscriber may be the cause

OUTCOME_SUCCEEDED = "succeeded"
OUTCOME_RETRY = "retry"
OUTCOME_RATE_LIMITED = "rate_limited"
OUTCOME_PAUSED = "paused"
OUTCOME_FAILED = "failed"
OUTCOME_SPLIT = "split"  # Rule refused the batch for one of its subscribers: sent again in smaller calls

S = Delivery.Status


# ---------------------------------------------------------------- creating and dispatching


@dataclass
class _Inline:
    """What a worker's task announced (groups) and whose stored events it processed (connections)."""

    groups: list[tuple[int, str]]
    connections: set[int]


_inline: contextvars.ContextVar[_Inline | None] = contextvars.ContextVar("deliver_inline", default=None)


@contextlib.contextmanager
def inline_delivery() -> Iterator[None]:
    """Inside a worker's task (processing inbound events): the groups announced in the block are sent as the
    block ends (outside any transaction), without a second trip through the queue; several events processed in
    one block still share calls."""
    state = _Inline(groups=[], connections=set())
    token = _inline.set(state)
    try:
        yield
    finally:
        _inline.reset(token)
        _send_inline(list(dict.fromkeys(state.groups)), state.connections)


def processing_for(connection_ids) -> None:
    """Inside inline_delivery: this task processes stored events of these connections (even when they make no
    delivery, the task may be the last of a backlog and must send what the others left waiting)."""
    state = _inline.get()
    if state is not None:
        state.connections.update(connection_ids)


def _send_inline(groups: list[tuple[int, str]], processed: set[int] = frozenset()) -> None:
    """Send the groups a worker's task announced. A connection whose stored events are still waiting to be
    processed (a backlog: their tasks are queued) sends only full calls now; the rest waits for the deliveries
    those events make, and whichever task finds nothing more waiting sends every group the connection has due,
    so calls of a backlog carry up to 100 subscribers. A lone event (nothing else waiting) goes at once.
    `processed`: the connections whose stored events the task processed."""
    connections = {connection_id for connection_id, _ in groups} | set(processed)
    if not connections:
        return
    if db_connection.in_atomic_block or worker.stopping():
        for connection_id, batch_key in groups:
            enqueue_group(connection_id, batch_key)
        return
    try:
        more_coming = _more_coming(connections)
        flushing = sorted(connections - more_coming)
        groups = list(dict.fromkeys([*groups, *_fresh_groups(flushing)]))
    except Exception:  # the rows are committed: tasks (or the sweeper) send them
        log.exception("inline delivery: looking for what else is due failed; groups queued instead")
        more_coming = set()
    for connection_id, batch_key in groups:
        if worker.stopping():
            enqueue_group(connection_id, batch_key)
            continue
        try:
            deliver_group(connection_id, batch_key, full_only=batch_key != SOLO and connection_id in more_coming)
        except Exception:  # the rows are committed: a task (or the sweeper) sends what is left
            log.exception("inline delivery for connection %s failed; queued instead", connection_id)
            enqueue_group(connection_id, batch_key)


def _more_coming(connection_ids: set[int]) -> set[int]:
    """Those of the connections with stored events waiting to be processed now (not those in another worker's
    hands: that worker looks again once it has recorded them). One query."""
    if not connection_ids:
        return set()
    # EXISTS per connection stops at its first waiting event (on the inbound_waiting index); a DISTINCT over the
    # waiting events read every one of them, for every task of a backlog.
    waiting = InboundEvent.objects.due().filter(connection_id=OuterRef("pk"))
    return set(Connection.objects.filter(Exists(waiting), pk__in=connection_ids).values_list("pk", flat=True))


def _fresh_groups(connection_ids: list[int]) -> list[tuple[int, str]]:
    """The groups (other than SOLO) with fresh deliveries due on these connections: what earlier tasks left to
    wait for company. One query."""
    if not connection_ids:
        return []
    due = Delivery.objects.filter(connection_id__in=connection_ids, status=S.PENDING).due().exclude(batch_key=SOLO)
    return sorted(set(due.order_by().values_list("connection_id", "batch_key").distinct()))


def enqueue_group(connection_id: int, batch_key: str) -> None:
    """Hand a group to the worker; a broker failure is only logged (the sweeper catches up)."""
    enqueue(
        "integration.tasks.deliver_group",
        connection_id,
        batch_key,
        task_name=f"deliver-{connection_id}-{batch_key[:9] or 'solo'}",
        what=f"deliveries of connection {connection_id}",
    )


def enqueue_delivery(delivery_id: int) -> None:
    """Hand one delivery to the worker (its group is sent: see announce)."""
    announce([delivery_id])


def _groups(delivery_ids: list[int]) -> list[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    for start in range(0, len(delivery_ids), SWEEP_PAGE):
        page = delivery_ids[start : start + SWEEP_PAGE]
        found.update(
            Delivery.objects.filter(pk__in=page).order_by().values_list("connection_id", "batch_key").distinct()
        )
    return sorted(found)


def announce(delivery_ids: list[int]) -> None:
    """New deliveries exist (committed): get them sent. Called on commit by whoever created them (one delivery or
    a bulk insert); the dispatch policy is decided here only: one task per group (connection and batch key),
    which drains the group in calls of up to 100; inside a worker's task (see inline_delivery) the group is sent
    by that task as it ends instead."""
    if delivery_ids:
        _dispatch(_groups(list(delivery_ids)))


def _dispatch(groups: list[tuple[int, str]]) -> None:
    """announce() once the groups are known (create_delivery knows its own: no query)."""
    inline = _inline.get()
    if inline is not None:  # sent as the worker's task ends (inline_delivery)
        inline.groups.extend(groups)
        return
    for connection_id, batch_key in groups:
        enqueue_group(connection_id, batch_key)


def create_delivery(
    *,
    connection: Connection,
    event: str,
    body: dict | list | None,
    email: str,
    idempotency_key: str,
    inbound_event: InboundEvent | None = None,
    inbound_event_id: int | None = None,
    trigger: str = Delivery.Trigger.EVENT,
    order_number: str = "",
    method: str = "POST",
    path: str = "/subscribers",
    notes: tuple[str, ...] | list[str] = (),
    dispatch: bool = True,
) -> Delivery | None:
    """Store a pending delivery and announce it on commit (unless `dispatch` is False: the caller announces a
    set of them at once); None when this idempotency key already exists."""
    try:
        with transaction.atomic():  # a savepoint: losing the race must not break the caller's transaction
            delivery = Delivery.objects.create(
                connection=connection,
                event=event,
                inbound_event_id=inbound_event.pk if inbound_event is not None else inbound_event_id,
                idempotency_key=idempotency_key,
                email=email or "",
                order_number=str(order_number or "")[:64],
                method=method.upper(),
                path=path,
                request_body=body,
                status=S.PENDING,
                trigger=trigger,
                next_attempt_at=timezone.now(),
                notes="\n".join(notes),
                batch_key=batch_key_for(connection.pk, method, path, body, trigger),
            )
    except IntegrityError:
        if Delivery.objects.filter(connection=connection, idempotency_key=idempotency_key).exists():
            return None
        raise
    if dispatch:
        group = (connection.pk, delivery.batch_key)
        transaction.on_commit(lambda: _dispatch([group]))  # announce([delivery.pk]), its group known already
    return delivery


# ---------------------------------------------------------------- grouping


def batch_key_for(connection_id: int, method: str, path: str, body: object, trigger: str) -> str:
    """The key under which deliveries may share one Rule call: a digest of the connection and the request without
    its subscribers (method, path, tags, automation, update_on_duplicate...). SOLO for what always goes alone:
    anything but `POST /subscribers`, a test call, a body Rule would not take in a batch of 100 with
    sync_subscribers (an import with `sync_subscribers: false`, more than 100 subscribers)."""
    if trigger == Delivery.Trigger.TEST or method.upper() != "POST" or path != "/subscribers":
        return SOLO
    if not isinstance(body, dict) or body.get("sync_subscribers") not in (None, True):
        return SOLO
    raw = body.get("subscribers")
    subscribers = [raw] if isinstance(raw, dict) else raw if isinstance(raw, list) else []
    if not subscribers or len(subscribers) > COALESCE_LIMIT or not all(isinstance(s, dict) for s in subscribers):
        return SOLO
    # sync_subscribers: true is what a shared call sends anyway, so it is no part of the envelope.
    envelope = {k: v for k, v in body.items() if k not in ("subscribers", "sync_subscribers")}
    text = json.dumps([connection_id, "POST", path, envelope], sort_keys=True, separators=(",", ":"), default=str)
    return "b" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:40]


def _pack(rows: list[Delivery]) -> list[list[Delivery]]:
    """The claimed rows as calls: alone when their key is SOLO, else in order, up to COALESCE_LIMIT subscribers
    per call (a back-in-stock delivery brings several)."""
    if not rows:
        return []
    if rows[0].batch_key == SOLO:
        return [[d] for d in rows]
    calls: list[list[Delivery]] = []
    current: list[Delivery] = []
    size = 0
    for d in rows:
        n = max(len(_subscribers(d.request_body)), 1)
        if current and size + n > COALESCE_LIMIT:
            calls.append(current)
            current, size = [], 0
        current.append(d)
        size += n
    calls.append(current)
    return calls


def _call_body(call: list[Delivery]) -> object:
    """What Rule receives: a lone delivery's own body, unchanged; for several, their envelope with every
    subscriber (each with its own fields, language and phone) and `sync_subscribers: true`."""
    if len(call) == 1:
        return call[0].request_body
    body = {k: v for k, v in call[0].request_body.items() if k != "subscribers"}
    body["sync_subscribers"] = True  # each subscriber's automation fires, as it would for one
    body["subscribers"] = [s for d in call for s in _subscribers(d.request_body)]
    return body


# ---------------------------------------------------------------- claiming


def _claim(rows: dict[str, object], limit: int, *, force: bool = False, sendable_only: bool = False) -> list[Delivery]:
    """Take up to `limit` of the deliveries matching `rows` (column -> value: `{"id": pk}`, or a group's
    `{"connection_id": ..., "batch_key": ...}`) for this worker (status sending, a lease, this claim's token), and
    read what was taken, in one conditional UPDATE ... RETURNING (_claim_sql); [] when nothing was ours.

    The UPDATE repeats the due condition on the rows it writes, so two workers racing for a group take disjoint
    rows (PostgreSQL re-checks a row another transaction just claimed; SQLite writes one at a time). With
    `sendable_only` the connection must be allowed to send now; `force` (an operator's explicit call) takes an
    open delivery whatever its schedule, never one in a live worker's hands."""
    now = timezone.now()
    token = uuid.uuid4().hex
    sql = _claim_sql(db_connection.vendor, tuple(sorted(rows)), force, sendable_only)
    params = {f"w_{column}": value for column, value in rows.items()}
    params.update(
        now=now, lease=now + retry.LEASE, token=token, limit=limit, sending=S.SENDING, active=Connection.Status.ACTIVE
    )
    params.update({f"waiting{n}": status for n, status in enumerate(Delivery.WAITING_STATUSES)})
    # The rows and a look at their attempt logs (last_attempt: the last attempt number, for the next attempt;
    # unanswered: a worker that died mid-call left an attempt without an answer).
    taken = list(Delivery.objects.raw(sql, params))
    if not taken:
        return []
    taken.sort(key=lambda d: (d.next_attempt_at is None, d.next_attempt_at or now, d.pk))
    stopped = [d.pk for d in taken if d.unanswered]
    if stopped:  # close them so the log says what happened
        DeliveryAttempt.objects.filter(delivery_id__in=stopped, outcome="").update(
            outcome=OUTCOME_RETRY, error=WORKER_STOPPED
        )
    connection = _connection(taken[0].connection_id, taken[0].connection_stamp)
    for d in taken:
        d.connection = connection  # one connection per group: one object, so a hold or pause is seen
        d._last_attempt_number = d.last_attempt or 0
    return taken


_connections: dict[int, tuple[object, Connection]] = {}


def _connection(pk: int, stamp: object) -> Connection:
    """The claimed rows' connection: this process's copy while the row's `updated_at` (read by the claim, as
    stored) is unchanged, else read again. Every change a delivery depends on stamps it (the admin's save,
    pause and resume); the claim itself checks in SQL what may change without a stamp (a 429 or breaker hold)."""
    cached = _connections.get(pk)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    if len(_connections) >= 256:
        _connections.clear()
    connection = Connection.objects.get(pk=pk)
    _connections[pk] = (stamp, connection)
    return connection


@functools.cache
def _claim_sql(vendor: str, columns: tuple[str, ...], force: bool, sendable_only: bool) -> str:
    """The claim as one statement (PostgreSQL and SQLite >= 3.35 both speak UPDATE ... RETURNING, and the ORM
    cannot say it): the same conditions as Delivery.objects.due() / unclaimed() / sendable(), built once per
    shape; its parameters are named (see _claim)."""
    q = db_connection.ops.quote_name
    table, attempts, connections = (q(model._meta.db_table) for model in (Delivery, DeliveryAttempt, Connection))
    allowed = {"id", "connection_id", "batch_key"}
    if not columns or not set(columns) <= allowed:
        raise ValueError(f"a claim selects by {sorted(allowed)}, not {columns}")
    waiting = "status IN (%(waiting0)s, %(waiting1)s)"
    stale = "(status = %(sending)s AND lease_until < %(now)s)"
    if force:  # Delivery.objects.unclaimed()
        open_rows = f"({waiting} OR {stale})"
    else:  # Delivery.objects.due()
        open_rows = f"(({waiting} AND (next_attempt_at <= %(now)s OR next_attempt_at IS NULL)) OR {stale})"
    if sendable_only:  # Connection.objects.sendable()
        open_rows += (
            f" AND connection_id IN (SELECT id FROM {connections} WHERE status = %(active)s"
            " AND (hold_until IS NULL OR hold_until <= %(now)s))"
        )
    where = " AND ".join(f"{q(column)} = %(w_{column})s" for column in columns)
    returned = ", ".join(q(f.column) for f in Delivery._meta.concrete_fields)
    # No FOR UPDATE SKIP LOCKED in the subquery: PostgreSQL may run it more than once per UPDATE, and the test
    # of two racing workers then saw rows sent twice. The claim counts the coming attempt too (see _start).
    return (
        f"UPDATE {table} SET status = %(sending)s, lease_until = %(lease)s, claim_token = %(token)s, "
        f"attempt_count = attempt_count + 1, updated_at = %(now)s "
        f"WHERE {open_rows} AND id IN (SELECT id FROM {table} WHERE {where} AND {open_rows} "
        f"ORDER BY next_attempt_at, id LIMIT %(limit)s) "
        f"RETURNING {returned}, "
        f"(SELECT updated_at FROM {connections} c WHERE c.id = {table}.connection_id) AS connection_stamp, "
        f"(SELECT MAX(number) FROM {attempts} a WHERE a.delivery_id = {table}.id) AS last_attempt, "
        f"EXISTS (SELECT 1 FROM {attempts} a WHERE a.delivery_id = {table}.id AND a.outcome = '') AS unanswered"
    )


def _take(
    rows: dict[str, object], limit: int, *, force: bool = False, sendable_only: bool = False, gated: bool = False
):
    """Claim, give up on rows whose budget a dead worker spent, and start the first call's attempts: one
    transaction. `gated` (a call Rule's budget paces): the same transaction also takes the first call's slot when
    one is free now (budget.go_at_once; its Decision is kept on the call's first row for _send_call), so a lone
    delivery commits twice (claim, answer), not three times. Returns (the claimed rows, their calls); the first
    call's attempts exist."""
    with transaction.atomic():
        claimed = _claim(rows, limit, force=force, sendable_only=sendable_only)
        live, spent = [], []
        for d in claimed:
            d.attempt_count -= 1  # the claim counted the coming attempt; _start counts it here
            (spent if retry.gives_up(d.attempt_count) else live).append(d)
        if spent:  # only after a worker died mid-call on the last attempt
            Delivery.objects.filter(pk__in=[d.pk for d in spent]).update(attempt_count=F("attempt_count") - 1)
            for d in spent:
                _finish_all([d], S.FAILED, f"gave up after {d.attempt_count} attempts")
                d._outcome = OUTCOME_FAILED
        calls = _pack(live)
        if calls:
            _start(calls[0], counted=True)
            if gated:  # last: the budget row is locked only for the commit
                calls[0][0]._gate = budget.go_at_once(calls[0][0].connection_id)
    return claimed, calls


def _held_or_paused(delivery: Delivery, now: datetime) -> str | None:
    """Why this delivery must wait for its connection (and push it to when it may go), else None."""
    connection = delivery.connection
    if connection.is_paused:
        return OUTCOME_PAUSED
    if connection.hold_until and connection.hold_until > now:
        Delivery.objects.filter(pk=delivery.pk).waiting().update(next_attempt_at=connection.hold_until)
        return OUTCOME_RATE_LIMITED
    return None


def _start(call: list[Delivery], note: str = "", *, counted: bool = False) -> bool:
    """The attempt rows (one per delivery, naming the shared call) and the counted budget, before the call and in
    the caller's transaction: a worker that dies mid-call still uses budget (uncounted outcomes give it back),
    and a failure here leaves no attempt behind (no call). `counted`: the claim just counted it (and set the
    lease). False (nothing written) when the claim was lost (a lease that ran out while an earlier call of this
    claim hung)."""
    now = timezone.now()
    ids = [d.pk for d in call]
    if not counted:
        owned = Delivery.objects.filter(pk__in=ids, status=S.SENDING, claim_token=call[0].claim_token).update(
            attempt_count=F("attempt_count") + 1, lease_until=now + retry.LEASE
        )
        if owned != len(call):
            if owned:
                transaction.set_rollback(True)
            log.warning("deliveries %s: the claim ran out before their call; another worker has them", ids)
            return False
    call_id = uuid.uuid4().hex
    attempts = []
    for d in call:
        number = d._last_attempt_number + 1
        text = "\n".join(filter(None, [d.notes if number == 1 else "", note]))
        attempts.append(
            DeliveryAttempt(delivery=d, number=number, started_at=now, note=text, call_id=call_id, call_size=len(call))
        )
    DeliveryAttempt.objects.bulk_create(attempts)
    for d, attempt in zip(call, attempts, strict=True):
        attempt.base_note = attempt.note
        d._attempt, d._last_attempt_number = attempt, attempt.number
        d.attempt_count += 1
        if not counted:
            d.lease_until = now + retry.LEASE
    return True


# ---------------------------------------------------------------- sending


def deliver(delivery_id: int) -> str:
    """Send one due delivery once, alone, if no other worker has it; returns what happened (for logs and tests)."""
    rows = {"id": delivery_id}
    # The usual case in one statement: due, not in flight, and its connection may send.
    claimed, calls = _take(rows, 1, sendable_only=True, gated=True)
    if not claimed:  # find out why not (closed, paused, held by a 429, not due), or claim after a resume
        delivery = Delivery.objects.select_related("connection").filter(pk=delivery_id).open().first()
        if delivery is None:
            return "closed"
        waiting = _held_or_paused(delivery, timezone.now())
        if waiting:
            return waiting
        claimed, calls = _take(rows, 1, gated=True)
        if not claimed:
            return "not due"
    _run(calls)
    return claimed[0]._outcome


def deliver_group(
    connection_id: int, batch_key: str, seconds: float | None = None, *, full_only: bool = False
) -> dict[str, int]:
    """Send what is due in one group (a connection and a batch key), claim after claim, until nothing is due:
    up to CLAIM_LIMIT deliveries per claim, coalesced into calls of up to 100 subscribers (a SOLO group: one
    delivery per claim, one call each). After `seconds` (DRAIN_SECONDS) the rest goes to a fresh task, so a long
    drain never runs into the task timeout. `full_only`: only while a whole claim's worth is due (more is on
    its way; see _send_inline). Returns the count of each outcome; {} when nothing was due."""
    rows = {"connection_id": connection_id, "batch_key": batch_key}
    limit = CLAIM_LIMIT if batch_key != SOLO else 1
    deadline = time.monotonic() + (DRAIN_SECONDS if seconds is None else seconds)
    outcomes: dict[str, int] = {}
    while True:
        if full_only and Delivery.objects.filter(**rows).due().order_by()[:limit].count() < limit:
            return outcomes
        claimed, calls = _take(rows, limit, sendable_only=True, gated=True)
        if not claimed:
            return outcomes
        _run(calls)
        for d in claimed:
            outcome = getattr(d, "_outcome", "not sent")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if len(claimed) < limit:  # all that was due: what comes later is announced on its own
            return outcomes
        if time.monotonic() >= deadline or worker.stopping():
            enqueue_group(connection_id, batch_key)
            return outcomes


def send_now(delivery: Delivery, wait_seconds: float | None = None) -> DeliveryAttempt:
    """Send an open delivery now, alone and synchronously (the admin's test call); same classification as
    deliver(). It goes even while the connection is paused or held (an operator's explicit call); when a
    worker has it already, wait for that worker's attempt instead of sending a second time."""
    claimed, calls = _take({"id": delivery.pk}, 1, force=True)
    if not claimed:
        attempt = _wait_for_attempt(delivery, wait_seconds)
    elif calls:
        _run(calls, gated=False)  # an operator's call: not paced, not held by the breaker
        attempt = claimed[0]._attempt
    else:  # the budget was spent (a worker died mid-call on the last attempt)
        attempt = delivery.attempts.order_by("-number").first() or DeliveryAttempt(
            delivery=delivery, number=0, outcome=OUTCOME_FAILED, error=claimed[0].last_error
        )
    delivery.refresh_from_db()
    return attempt


def _wait_for_attempt(delivery: Delivery, wait_seconds: float | None) -> DeliveryAttempt:
    deadline = time.monotonic() + (wait_seconds if wait_seconds is not None else retry.LEASE.total_seconds())
    while True:
        attempt = delivery.attempts.order_by("-number").first()
        if attempt is not None and attempt.outcome:
            return attempt
        if time.monotonic() >= deadline:
            if attempt is None:
                raise RuntimeError(f"delivery {delivery.pk} is not open and has no attempt")
            return attempt
        time.sleep(0.1)


def _run(calls: list[list[Delivery]], *, gated: bool = True) -> None:
    """Send claimed calls one after the other (the first one's attempts are started); a call Rule refused for
    one of its subscribers comes back split, and its parts are sent at once, each with fresh attempts."""
    queue: list[tuple[list[Delivery], str | None]] = [(call, None) for call in calls]
    first = True
    while queue:
        call, note = queue.pop(0)
        if not first:
            with transaction.atomic():
                started = _start(call, note or "")
            if not started:
                continue
        first = False
        queue[:0] = _send_call(call, gated=gated)


@dataclass
class Answer:
    """What came back from one call: Rule's answer (status and stored, scrubbed body) or why none came."""

    response: object | None
    status_code: int | None
    body: str
    error: str
    may_have_arrived: bool
    duration_ms: int


def _call_rule(connection: Connection, method: str, path: str, body: object):
    """The one place a delivery's HTTP call to Rule is made (no transaction is open here)."""
    return client_for(connection).send(method, path, json=body)


def hand_back(call: list[Delivery], gate: budget.Decision) -> None:
    """Claimed rows Rule's budget or breaker may not send now wait again, due at `gate.until`: their unsent
    attempts removed, nothing counted, nothing lost."""
    now = timezone.now()
    ids = [d.pk for d in call]
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk__in=[d._attempt.pk for d in call], outcome="").delete()
        status = Case(When(attempt_count__lte=1, then=Value(S.PENDING)), default=Value(S.RETRYING))
        Delivery.objects.filter(pk__in=ids, status=S.SENDING).update(
            status=status,
            attempt_count=F("attempt_count") - 1,
            next_attempt_at=gate.until or now,
            lease_until=None,
            claim_token="",
            updated_at=now,
        )
    for d in call:
        d.attempt_count -= 1
        d._outcome = gate.kind


def _send_call(call: list[Delivery], *, gated: bool = True) -> list[tuple[list[Delivery], str]]:
    """One HTTP call for a claimed call of deliveries (attempt rows written), then the answer recorded per
    delivery in one short transaction. Returns the calls to send at once (parts of a split batch, or a lone
    delivery again without its phone number)."""
    first = call[0]
    connection = first.connection
    # Rule's budget and breaker: go, or hand back (a slot the claim took is used once, not by a split's parts)
    taken = first.__dict__.pop("_gate", None)
    gate = (taken or budget.before_call(connection)) if gated else None
    if gate is not None and not gate.may_send:
        hand_back(call, gate)
        return []
    started = time.monotonic()
    response, error, arrived, failure = None, "", False, None
    try:
        response = _call_rule(connection, first.method, first.path, _call_body(call))
    except RuleRequestError as exc:
        error, arrived, failure = str(exc), exc.may_have_arrived, exc
    answer = Answer(
        response=response,
        status_code=response.status_code if response is not None else None,
        # Rule has no reason to echo the key, but stored answers must never hold it whatever Rule says.
        body=_cut(scrub(response.text or "", connection.rule_api_key or "")) if response is not None else "",
        error=error,
        may_have_arrived=arrived,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    again = _recorded(call, lambda: _classify(call, answer))
    budget.after_call(connection, gate, response, failure)  # the breaker and Rule's counters hear of it
    log.info(
        "deliveries %s attempt %s: %s %s%s",
        first.pk if len(call) == 1 else f"{first.pk}.. ({len(call)} in one call)",
        first._attempt.number,
        answer.status_code or "-",
        first._outcome,
        f", sent again in {len(again)} calls" if again else "",
    )
    return again


MAY_HAVE_ARRIVED = "Rule did not answer in time: it may have received this request and acted on it."
_RECORD_FIELDS = ("status", "last_error", "finished_at", "next_attempt_at", "lease_until", "attempt_count")
T = TypeVar("T")


def _recorded(call: list[Delivery], write: Callable[[], T]) -> T:
    """Run `write` (recording what Rule answered) in one transaction; a database error retries the recording,
    never the call, until the claim runs out (Rule has answered: sending again would be a duplicate)."""
    deadline = min(d.lease_until or timezone.now() for d in call) - timedelta(seconds=1)
    saved = [(d, {name: getattr(d, name) for name in (*_RECORD_FIELDS, "request_body")}) for d in call]
    pause = 0.2
    while True:
        try:
            with transaction.atomic():
                return write()
        except (OperationalError, InterfaceError) as exc:
            if timezone.now() + timedelta(seconds=pause) >= deadline or db_connection.in_atomic_block:
                log.error(
                    "deliveries %s: Rule answered but the answer could not be recorded (%s)",
                    [d.pk for d in call],
                    exc.__class__.__name__,
                )
                raise
            log.warning(
                "deliveries %s: recording Rule's answer failed (%s); recording again",
                [d.pk for d in call],
                exc.__class__.__name__,
            )
            for d, values in saved:
                for name, value in values.items():
                    setattr(d, name, value)
            db_connection.close()  # the next query opens a fresh connection
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _cut(text: str) -> str:
    data = (text or "").encode("utf-8")
    if len(data) <= DeliveryAttempt.RESPONSE_LIMIT:
        return text or ""
    return data[: DeliveryAttempt.RESPONSE_LIMIT].decode("utf-8", errors="ignore")


# ---------------------------------------------------------------- recording (set-based: one statement per kind)


def _close_attempts(
    call: list[Delivery], answer: Answer, outcome: str, *, counted: bool = True, note: str = ""
) -> None:
    """Write the call's answer on every attempt of the call (one UPDATE; one more when notes are added)."""
    note = "\n".join(filter(None, [MAY_HAVE_ARRIVED if answer.may_have_arrived else "", note]))
    values = {
        "duration_ms": answer.duration_ms,
        "status_code": answer.status_code,
        "response_body": answer.body,
        "error": answer.error,
        "outcome": outcome,
        "counted": counted,
    }
    attempts = [d._attempt for d in call]
    for attempt in attempts:
        for name, value in values.items():
            setattr(attempt, name, value)
        attempt.note = "\n".join(filter(None, [attempt.base_note, note]))
    if note:
        DeliveryAttempt.objects.bulk_update(attempts, [*values, "note"])
    else:
        DeliveryAttempt.objects.filter(pk__in=[a.pk for a in attempts]).update(**values)
    for d in call:
        d._outcome = outcome


def _finish_all(rows: list[Delivery], status: str, last_error: str = "") -> None:
    """Close the rows for good (one UPDATE) and count them in the console's hour (one upsert), same commit."""
    now = timezone.now()
    Delivery.objects.filter(pk__in=[d.pk for d in rows]).update(
        status=status,
        last_error=last_error,
        finished_at=now,
        next_attempt_at=None,
        lease_until=None,
        claim_token="",
        updated_at=now,
    )
    for d in rows:
        d.status, d.last_error, d.finished_at = status, last_error, now
        d.next_attempt_at = d.lease_until = None
    delivery_stats.record(rows[0].connection_id, status, now, count=len(rows))


def _wait_all(rows: list[Delivery], status: str, until: datetime, last_error: str, *, uncount: bool = False) -> None:
    """Put the rows back to wait until `until` (one UPDATE); `uncount` gives the attempt back to the budget."""
    now = timezone.now()
    extra = {"attempt_count": F("attempt_count") - 1} if uncount else {}
    Delivery.objects.filter(pk__in=[d.pk for d in rows]).update(
        status=status,
        next_attempt_at=until,
        last_error=last_error,
        lease_until=None,
        claim_token="",
        updated_at=now,
        **extra,
    )
    for d in rows:
        if uncount:
            d.attempt_count = max(d.attempt_count - 1, 0)
        d.status, d.next_attempt_at, d.last_error, d.lease_until = status, until, last_error, None
    delivery_stats.record(rows[0].connection_id, delivery_stats.RETRYING, now, count=len(rows))


def _classify(call: list[Delivery], answer: Answer) -> list[tuple[list[Delivery], str]]:
    """Record Rule's answer for every delivery of the call (inside _recorded's transaction). Returns the calls
    to make at once: the parts of a batch Rule refused for one subscriber, or a lone delivery without the phone
    number Rule rejected; else []."""
    now = timezone.now()
    code = answer.status_code
    first = call[0]
    connection = first.connection
    lone = len(call) == 1

    if (code is not None and 200 <= code < 300) or (code == 404 and lone and first.event == REMOVE_CART_TAG):
        note = "Rule: the subscriber does not hold this tag." if code == 404 else ""
        _close_attempts(call, answer, OUTCOME_SUCCEEDED, note=note)
        _finish_all(call, S.SUCCEEDED)
        # In the same transaction: an outcome is never recorded without its follow-ups (announced together).
        follow_ups = _after_success(call)
        if follow_ups:
            transaction.on_commit(lambda: announce(follow_ups))
        return []

    if code is None or code >= 500 or code == 408:
        reason = answer.error or _rule_message(first, answer.response)
        _close_attempts(call, answer, OUTCOME_RETRY)
        by_count: dict[int, list[Delivery]] = {}
        for d in call:
            by_count.setdefault(d.attempt_count, []).append(d)
        for count, rows in by_count.items():
            if retry.gives_up(count):
                _finish_all(rows, S.FAILED, f"gave up after {count} attempts: {reason}")
                for d in rows:
                    d._outcome = OUTCOME_RETRY
            else:  # one wait for the whole batch: it stays together and goes as one call again
                when = now + retry.retry_delay(count)
                _wait_all(rows, S.RETRYING, when, f"attempt {count} of {retry.MAX_ATTEMPTS}: {reason}")
        return []

    message = _rule_message(first, answer.response)
    if code == 429:
        until = retry.parse_retry_after(answer.response.headers.get("Retry-After"), now)
        connection.hold(until)
        _close_attempts(call, answer, OUTCOME_RATE_LIMITED, counted=False)
        _wait_all(
            call,
            S.RETRYING,
            until,
            f"Rule rate limit ({message}): the connection waits until {until.isoformat(timespec='seconds')}",
            uncount=True,
        )
        return []

    if code in (401, 403):
        reason = f"{KEY_REFUSED}: {message}"
        pause_connection(connection, reason)
        _close_attempts(call, answer, OUTCOME_PAUSED, counted=False)
        _wait_all(call, S.PENDING, now, f"waiting: connection paused ({reason})", uncount=True)
        return []

    if not lone and code in SPLIT_ON:
        # Rule refuses a whole batch for one subscriber: send it again in parts until the culprit is alone (it
        # then fails with Rule's message); this refusal is held against nobody's budget.
        parts = _split(call, answer.response)
        _close_attempts(
            call,
            answer,
            OUTCOME_SPLIT,
            counted=False,
            note=f"Rule refused the call of {len(call)} ({message}); sent again in {len(parts)} smaller calls.",
        )
        Delivery.objects.filter(pk__in=[d.pk for d in call]).update(attempt_count=F("attempt_count") - 1)
        for d in call:
            d.attempt_count -= 1
        return [(part, "") for part in parts]

    if code == 400 and lone and _points_at_phone(answer.response) and _has_phone(first.request_body):
        _close_attempts(call, answer, OUTCOME_FAILED)
        # Rule rejects the whole request for a bad number; the rest of it is still worth sending.
        first.request_body = _without_phone(first.request_body)
        Delivery.objects.filter(pk=first.pk).update(request_body=first.request_body, updated_at=now)
        return [(call, f"Retried without phone_number: Rule rejected it ({message}).")]

    if code is not None and 300 <= code < 400:
        message = (
            f"{code}: Rule answered with a redirect to {answer.response.headers.get('Location', '?')}; "
            "check the Rule API URL (https)"
        )
    _close_attempts(call, answer, OUTCOME_FAILED)
    _finish_all(call, S.FAILED, message)
    return []


_CULPRIT = re.compile(r"^subscribers\.(\d+)\.")


def _split(call: list[Delivery], response) -> list[list[Delivery]]:
    """A refused batch in parts: when Rule's `fields` map names a subscriber (`subscribers.37.phone_number`),
    its delivery alone and the rest; else two halves (bisection)."""
    try:
        fields = response.json().get("fields") or {}
    except (ValueError, AttributeError):
        fields = {}
    indexes = sorted({int(m.group(1)) for key in fields for m in [_CULPRIT.match(str(key))] if m})
    if indexes:
        owner, offset = {}, 0
        for position, d in enumerate(call):
            for _ in range(max(len(_subscribers(d.request_body)), 1)):
                owner[offset] = position
                offset += 1
        if indexes[0] in owner:
            culprit = owner[indexes[0]]
            rest = call[:culprit] + call[culprit + 1 :]
            return [[call[culprit]], rest] if rest else [[call[culprit]]]
    half = len(call) // 2
    return [call[:half], call[half:]]


def _rule_message(delivery: Delivery, response) -> str:
    return scrub(error_message(response), delivery.connection.rule_api_key or "")


def _points_at_phone(response) -> bool:
    try:
        data = response.json()
    except ValueError:
        return "phone" in (response.text or "").lower()
    if not isinstance(data, dict):
        return False
    fields = data.get("fields")
    if isinstance(fields, dict) and any("phone" in str(k).lower() for k in fields):
        return True
    return "phone" in f"{data.get('error', '')} {data.get('message', '')}".lower()


def _subscribers(body) -> list:
    if not isinstance(body, dict):
        return []
    subscribers = body.get("subscribers")
    if isinstance(subscribers, dict):
        return [subscribers]
    return [s for s in subscribers or [] if isinstance(s, dict)] if isinstance(subscribers, list) else []


def _has_phone(body) -> bool:
    return any(s.get("phone_number") for s in _subscribers(body))


def _without_phone(body: dict) -> dict:
    body = copy.deepcopy(body)
    for subscriber in _subscribers(body):
        subscriber.pop("phone_number", None)
    return body


# ---------------------------------------------------------------- after success: the cart tag


def _after_success(call: list[Delivery]) -> list[int]:
    """Create the follow-ups of deliveries Rule accepted (the cart tag removal); returns their ids.

    The DELETE goes only to shoppers this connection may have tagged: those with an `OrderCreated` delivery of
    this connection in the log, whatever its status (a cart still pending is sent later and must be undone too).
    A DELETE for a shopper who never got the tag is answered 404 and only raises the account's error rate. The
    connection's `remove_cart_tag_always` sends it to every shopper (cart tags set by an earlier tool). All the
    deliveries of one call belong to one connection: one query for the whole call."""
    parents = [
        d
        for d in call
        if d.event in CART_TAG_PARENTS and d.email and d.trigger != Delivery.Trigger.TEST  # a test: one request
    ]
    if not parents:
        return []
    connection = parents[0].connection
    if not connection.remove_cart_tag:
        return []
    flow = Flow.for_event(connection, "OrderCreated")
    # A disabled cart flow set no tags; a DELETE answered 404 would only raise the account's error rate.
    if not flow.enabled:
        return []
    tags = distinct_tags(flow.tags or [])[0]
    if not tags:
        return []
    if not connection.remove_cart_tag_always:
        tagged = cart_shoppers(connection, {d.email for d in parents})
        parents = [d for d in parents if normalize_email(d.email) in tagged]
    created = []
    for delivery in parents:
        for tag in tags:
            removal = create_delivery(
                connection=connection,
                event=REMOVE_CART_TAG,
                body=None,
                email=delivery.email,
                idempotency_key=f"{REMOVE_CART_TAG}:{delivery.idempotency_key}:{tag}"[:255],
                inbound_event_id=delivery.inbound_event_id,
                trigger=delivery.trigger,
                order_number=delivery.order_number,
                method="DELETE",
                path=f"/subscribers/{quote(delivery.email, safe='')}/tags/{quote(str(tag), safe='')}"
                "?identified_by=email",
                dispatch=False,
            )
            if removal is not None:
                created.append(removal.pk)
    return created


def cart_shoppers(connection: Connection, emails) -> set[str]:
    """The normalized emails among `emails` that have an `OrderCreated` delivery of `connection` (any status):
    one query on the delivery_cart_shopper index. The database's LOWER folds ASCII letters only (SQLite), so the
    emails are also looked up as given and the answer is normalized here."""
    wanted = ({normalize_email(e) for e in emails} | {(e or "").strip() for e in emails}) - {""}
    if not wanted:
        return set()
    found = (
        Delivery.objects.filter(connection=connection, event="OrderCreated")
        .annotate(normalized_email=Lower("email"))
        .filter(normalized_email__in=wanted)
        .order_by()
        .values_list("normalized_email", flat=True)
        .distinct()
    )
    return {normalize_email(e) for e in found}


# ---------------------------------------------------------------- operator actions


def resend(delivery: Delivery) -> bool:
    """Reopen a delivery (any state but in flight) with a fresh budget; history is kept. False if in flight.

    The trigger stays what it was (event, test, reconcile); the resend is counted on the row (resend_count,
    resent_at) and the admin records who asked for it in the delivery's history."""
    now = timezone.now()
    reopened = (
        Delivery.objects.filter(pk=delivery.pk)
        .exclude(Q(status=S.SENDING, lease_until__gte=now))
        .update(
            status=S.PENDING,
            resend_count=F("resend_count") + 1,
            resent_at=now,
            next_attempt_at=now,
            attempt_count=0,
            last_error="",
            finished_at=None,
            lease_until=None,
            updated_at=now,
        )
    )
    delivery.refresh_from_db()
    if reopened:
        transaction.on_commit(lambda: announce([delivery.pk]))
    return bool(reopened)


def pause_connection(connection: Connection, reason: str) -> None:
    """Stop sending for this connection; its deliveries wait (nothing is lost)."""
    now = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(
        status=Connection.Status.PAUSED,
        paused_reason=reason,
        paused_at=Coalesce(F("paused_at"), Value(now)),
        updated_at=now,
    )
    connection.status, connection.paused_reason = Connection.Status.PAUSED, reason
    connection.paused_at = connection.paused_at or now
    log.warning("connection %s paused: %s", connection.name, reason)
    transaction.on_commit(lambda: alerts.check_soon(connection.pk))  # the alert addresses hear of it at once


def resume_connection(connection: Connection) -> int:
    """Send again: clear the pause and any 429 hold, and enqueue the connection's due groups; returns how many
    deliveries are due."""
    now = timezone.now()
    old_hold = Connection.objects.filter(pk=connection.pk).values_list("hold_until", flat=True).first()
    Connection.objects.filter(pk=connection.pk).update(
        status=Connection.Status.ACTIVE, paused_reason="", paused_at=None, hold_until=None, updated_at=now
    )
    connection.status, connection.paused_reason, connection.hold_until = Connection.Status.ACTIVE, "", None
    connection.paused_at = None
    return release_hold(connection, old_hold)


@receiver(hold_lifted)
def _on_hold_lifted(sender, connection: Connection, old_hold: datetime | None, **kwargs) -> None:
    # The breaker closed: Rule answers again, so the calls that failed while it was down go now too, instead of
    # waiting out their retry step (up to 10 minutes after an outage of a few).
    release_hold(connection, old_hold, retries_too=True)


def release_hold(connection: Connection, old_hold: datetime | None, *, retries_too: bool = False) -> int:
    """A hold was lifted: deliveries pushed to it go now (with `retries_too`, those waiting for a retry after a
    failure as well; the rest keep their schedule); enqueue what is due."""
    now = timezone.now()
    released = Q(status=S.RETRYING) if retries_too else Q(pk__in=[])
    if old_hold and old_hold > now:
        released |= Q(next_attempt_at__lte=old_hold)
    connection.deliveries.waiting().filter(released, next_attempt_at__gt=now).update(next_attempt_at=now)
    groups = _due_groups(connection.deliveries.due(now))
    transaction.on_commit(lambda: [enqueue_group(connection.pk, key) for _, key, _n in groups])
    return sum(n for _, _, n in groups)


# ---------------------------------------------------------------- the sweeper


def _due_groups(rows: QuerySet) -> list[tuple[int, str, int]]:
    """(connection id, batch key, how many) for each group of `rows` (one grouped query on the due index)."""
    return list(rows.order_by().values_list("connection_id", "batch_key").annotate(n=Count("pk")))


def sweep() -> dict[str, int]:
    """Enqueue every group with due deliveries and every inbound event due for processing; returns the counts.

    A group gets as many tasks as its backlog can keep workers busy (one per CLAIM_LIMIT due deliveries, one per
    delivery of a SOLO group, never more than the cluster's workers): each task drains the group, so a backlog
    of thousands starts moving at once. A task that finds nothing due does nothing (one UPDATE), so enqueuing a
    group twice is harmless."""
    from integration.processing.dispatch import enqueue_due_inbound

    now = timezone.now()
    workers = int(settings.Q_CLUSTER.get("workers", 2))
    deliveries = tasks = 0
    for connection_id, batch_key, n in _due_groups(Delivery.objects.backlog(now)):
        deliveries += n
        per_task = CLAIM_LIMIT if batch_key != SOLO else 1
        for _ in range(max(1, min(math.ceil(n / per_task), workers))):
            enqueue_group(connection_id, batch_key)
            tasks += 1
    inbound_events = enqueue_due_inbound(_ids_in_pages(InboundEvent.objects.due(now, settled=STUCK_INBOUND_AFTER)))
    if tasks:
        log.info("sweep: %s due deliveries in %s tasks", deliveries, tasks)
    return {"deliveries": deliveries, "inbound_events": inbound_events}


def _ids_in_pages(rows: QuerySet) -> Iterator[int]:
    """Every id of `rows`, read page by page in id order (each page one short query)."""
    page, last = SWEEP_PAGE, 0
    while True:
        ids = list(rows.filter(pk__gt=last).order_by("pk").values_list("pk", flat=True)[:page])
        yield from ids
        if len(ids) < page:
            return
        last = ids[-1]
