"""Step 3 of an event's flow: store, claim, send and classify requests to Rule (see architecture.md "Outbound: Rule").

The database is the source of truth. A task only carries a delivery id; `deliver()` claims the row with a
conditional UPDATE (so two workers never send it at once), writes the attempt row before the HTTP call, sends,
and records what Rule answered. Retries are not queued as delayed tasks: the row's `next_attempt_at` says when,
and `sweep()` (every minute) enqueues whatever is due, so a broker that loses a task loses nothing.

Notes from the mapping (e.g. "Order.Products trimmed to 65 KiB") are kept on `Delivery.notes` and copied to
the note of the delivery's first attempt, so they show both on the delivery and in its attempt log.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import TypeVar
from urllib.parse import quote

from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.db.models import Case, Exists, F, Max, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from integration import retry
from integration.mapping.request import distinct_tags
from integration.models import Connection, Delivery, DeliveryAttempt, Flow, InboundEvent
from integration.ops import alerts, delivery_stats
from integration.ops.health import KEY_REFUSED
from integration.queue import enqueue
from integration.rule import budget
from integration.rule.client import RuleRequestError, client_for, error_message, scrub

log = logging.getLogger(__name__)

# A fresh inbound event is left to its own task this long before the sweeper enqueues it again (60 s).
STUCK_INBOUND_AFTER = 2 * retry.FIRST_WAIT
SWEEP_PAGE = 1000  # the sweeper reads what is due in pages of this many ids, and enqueues all of it
RESUME_BATCH = 1000
CART_TAG_PARENTS = ("OrderPlaced", "OrderCompleted")
REMOVE_CART_TAG = "RemoveCartTag"
# What a claim writes on an attempt a dead worker left without an answer.
WORKER_STOPPED = (
    "no answer recorded: the worker stopped (killed, or lost the database for longer than its claim) after "
    "sending; Rule may have received this request"
)

OUTCOME_SUCCEEDED = "succeeded"
OUTCOME_RETRY = "retry"
OUTCOME_RATE_LIMITED = "rate_limited"
OUTCOME_PAUSED = "paused"
OUTCOME_FAILED = "failed"

S = Delivery.Status


# ---------------------------------------------------------------- creating and enqueueing


def enqueue_delivery(delivery_id: int) -> None:
    """Hand a delivery id to the worker; a broker failure is only logged (the sweeper catches up)."""
    enqueue(
        "integration.tasks.deliver", delivery_id, task_name=f"deliver-{delivery_id}", what=f"delivery {delivery_id}"
    )


def announce(delivery_ids: list[int]) -> None:
    """New deliveries exist (committed): get them sent. Called on commit by whoever created them (one delivery or
    a bulk insert); the dispatch policy (one task each, inline, per group) is decided here only."""
    for pk in delivery_ids:
        enqueue_delivery(pk)


def create_delivery(
    *,
    connection: Connection,
    event: str,
    body: dict | list | None,
    email: str,
    idempotency_key: str,
    inbound_event: InboundEvent | None = None,
    trigger: str = Delivery.Trigger.EVENT,
    order_number: str = "",
    method: str = "POST",
    path: str = "/subscribers",
    notes: tuple[str, ...] | list[str] = (),
) -> Delivery | None:
    """Store a pending delivery and enqueue it on commit; None when this idempotency key already exists."""
    try:
        with transaction.atomic():  # a savepoint: losing the race must not break the caller's transaction
            delivery = Delivery.objects.create(
                connection=connection,
                event=event,
                inbound_event=inbound_event,
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
            )
    except IntegrityError:
        if Delivery.objects.filter(connection=connection, idempotency_key=idempotency_key).exists():
            return None
        raise
    transaction.on_commit(lambda: announce([delivery.pk]))
    return delivery


# ---------------------------------------------------------------- claiming


def _claim(delivery_id: int, *, force: bool = False, sendable_only: bool = False) -> Delivery | None:
    """Take the delivery for this worker (status sending, lease set) if it is due; None when it is not ours.

    The conditional UPDATE comes first and the claimed row is loaded once after it, so what the worker sends is
    what it claimed. With `sendable_only` the UPDATE also requires a connection that may send now."""
    now = timezone.now()
    rows = Delivery.objects.filter(pk=delivery_id)
    # force: an operator's explicit call, any open delivery not being sent right now
    rows = rows.unclaimed(now) if force else rows.due(now)
    if sendable_only:  # see _held_or_paused
        rows = rows.sendable(now)
    claimed = rows.update(status=S.SENDING, lease_until=now + retry.LEASE, updated_at=now)
    if not claimed:
        return None
    # The row, its connection and a look at its attempt log in one SELECT: the last attempt number (for the next
    # attempt) and whether a worker that died mid-call left an attempt without an answer.
    attempts = DeliveryAttempt.objects.filter(delivery=OuterRef("pk")).order_by()
    delivery = (
        Delivery.objects.select_related("connection")
        .annotate(
            last_attempt=Subquery(attempts.order_by("-number").values("number")[:1]),
            unanswered=Exists(attempts.filter(outcome="")),
        )
        .get(pk=delivery_id)
    )
    if delivery.unanswered:  # close it so the log says what happened
        delivery.attempts.filter(outcome="").update(outcome=OUTCOME_RETRY, error=WORKER_STOPPED)
    delivery._last_attempt_number = delivery.last_attempt or 0
    return delivery


def _held_or_paused(delivery: Delivery, now: datetime) -> str | None:
    """Why this delivery must wait for its connection (and push it to when it may go), else None."""
    connection = delivery.connection
    if connection.is_paused:
        return OUTCOME_PAUSED
    if connection.hold_until and connection.hold_until > now:
        Delivery.objects.filter(pk=delivery.pk).waiting().update(next_attempt_at=connection.hold_until)
        return OUTCOME_RATE_LIMITED
    return None


# ---------------------------------------------------------------- sending


def deliver(delivery_id: int) -> str:
    """Send one due delivery once, if no other worker has it; returns what happened (for logs and tests)."""
    # The usual case in one statement: due, not in flight, and its connection may send.
    claimed = _claim(delivery_id, sendable_only=True)
    if claimed is None:  # find out why not (closed, paused, held by a 429, not due), or claim after a resume
        delivery = Delivery.objects.select_related("connection").filter(pk=delivery_id).open().first()
        if delivery is None:
            return "closed"
        waiting = _held_or_paused(delivery, timezone.now())
        if waiting:
            return waiting
        claimed = _claim(delivery_id)
        if claimed is None:
            return "not due"
    gate = budget.before_call(claimed.connection)  # Rule's budget and breaker: go, or hand it back uncounted
    if not gate.may_send:
        hand_back([claimed], gate)
        return gate.kind
    attempt = _send_claimed(claimed, gate=gate)
    log.info("delivery %s attempt %s: %s %s", delivery_id, attempt.number, attempt.status_code or "-", attempt.outcome)
    return attempt.outcome


def send_now(delivery: Delivery, wait_seconds: float | None = None) -> DeliveryAttempt:
    """Send an open delivery now, synchronously (the admin's test call); same classification as deliver().

    It goes even while the connection is paused or held (an operator's explicit call); when a worker has it
    already, wait for that worker's attempt instead of sending a second time."""
    claimed = _claim(delivery.pk, force=True)
    attempt = _send_claimed(claimed) if claimed is not None else _wait_for_attempt(delivery, wait_seconds)
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


def _start_attempt(delivery: Delivery, note: str = "") -> DeliveryAttempt:
    """The attempt row and the counted budget, in one transaction, before the call: a worker that dies mid-call
    still uses budget (uncounted outcomes give it back), and a failure here leaves no attempt behind (no call)."""
    with transaction.atomic():
        last = getattr(delivery, "_last_attempt_number", None)  # known when this worker claimed the delivery
        if last is None:
            last = delivery.attempts.aggregate(n=Max("number"))["n"] or 0
        number = last + 1
        if number == 1 and delivery.notes:
            note = "\n".join(filter(None, [delivery.notes, note]))
        attempt = DeliveryAttempt.objects.create(delivery=delivery, number=number, started_at=timezone.now(), note=note)
        Delivery.objects.filter(pk=delivery.pk).update(attempt_count=delivery.attempt_count + 1)
    delivery._last_attempt_number = number
    delivery.attempt_count += 1
    return attempt


def hand_back(deliveries: list[Delivery], gate: budget.Decision) -> None:
    """Claimed rows that may not go now (paced, or held while Rule fails) wait again, due at `gate.until`: no
    attempt, nothing counted, nothing lost."""
    now = timezone.now()
    ids = [d.pk for d in deliveries]
    status = Case(When(attempt_count=0, then=Value(S.PENDING)), default=Value(S.RETRYING))
    Delivery.objects.filter(pk__in=ids, status=S.SENDING).update(
        status=status, next_attempt_at=gate.until, lease_until=None, updated_at=now
    )


def _send_claimed(delivery: Delivery, note: str = "", gate: budget.Decision | None = None) -> DeliveryAttempt:
    """Attempt row, HTTP call (no transaction open), then the answer recorded in one short transaction; the
    delivery is claimed (status sending) by this worker. `gate`: before_call's go (None: an operator's call)."""
    if retry.gives_up(delivery.attempt_count):  # only after a worker died mid-call on the last attempt
        reason = f"gave up after {delivery.attempt_count} attempts"
        _recorded(delivery, lambda: _finish(delivery, S.FAILED, reason))
        return delivery.attempts.order_by("-number").first() or DeliveryAttempt(
            delivery=delivery, number=0, outcome=OUTCOME_FAILED, error=reason
        )
    attempt = _start_attempt(delivery, note)

    connection = delivery.connection
    started = time.monotonic()
    response = error = None
    try:
        response = client_for(connection).send(delivery.method, delivery.path, json=delivery.request_body)
    except RuleRequestError as exc:
        error = exc
        attempt.error = str(exc)
        if exc.may_have_arrived:
            attempt.note = "\n".join(filter(None, [attempt.note, MAY_HAVE_ARRIVED]))
    attempt.duration_ms = int((time.monotonic() - started) * 1000)
    if response is not None:
        attempt.status_code = response.status_code
        # Rule has no reason to echo the key, but stored answers must never hold it whatever Rule says.
        attempt.response_body = _cut(scrub(response.text or "", connection.rule_api_key or ""))
    note_before = attempt.note

    def record() -> str | None:
        attempt.note = note_before  # a repeated recording starts from the same attempt
        return _classify(delivery, attempt, response)

    send_again = _recorded(delivery, record)
    budget.after_call(connection, gate, response, error)  # the breaker and Rule's counters hear of it
    if send_again is not None:
        return _send_claimed(delivery, note=send_again)
    return attempt


MAY_HAVE_ARRIVED = "Rule did not answer in time: it may have received this request and acted on it."
_RECORD_FIELDS = ("status", "last_error", "finished_at", "next_attempt_at", "lease_until", "attempt_count")
T = TypeVar("T")


def _recorded(delivery: Delivery, write: Callable[[], T]) -> T:
    """Run `write` (recording what Rule answered) in one transaction; a database error retries the recording,
    never the call, until the claim runs out (Rule has answered: sending again would be a duplicate)."""
    deadline = (delivery.lease_until or timezone.now()) - timedelta(seconds=1)
    saved = {name: getattr(delivery, name) for name in _RECORD_FIELDS}
    pause = 0.2
    while True:
        try:
            with transaction.atomic():
                return write()
        except (OperationalError, InterfaceError) as exc:
            if timezone.now() + timedelta(seconds=pause) >= deadline or db_connection.in_atomic_block:
                log.error(
                    "delivery %s: Rule answered but the answer could not be recorded (%s)",
                    delivery.pk,
                    exc.__class__.__name__,
                )
                raise
            log.warning(
                "delivery %s: recording Rule's answer failed (%s); recording again", delivery.pk, exc.__class__.__name__
            )
            for name, value in saved.items():
                setattr(delivery, name, value)
            db_connection.close()  # the next query opens a fresh connection
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _cut(text: str) -> str:
    data = (text or "").encode("utf-8")
    if len(data) <= DeliveryAttempt.RESPONSE_LIMIT:
        return text or ""
    return data[: DeliveryAttempt.RESPONSE_LIMIT].decode("utf-8", errors="ignore")


def _save_attempt(attempt: DeliveryAttempt, outcome: str, *, counted: bool = True, error: str | None = None) -> None:
    attempt.outcome = outcome
    attempt.counted = counted
    if error is not None:
        attempt.error = error
    attempt.save(update_fields=["duration_ms", "status_code", "response_body", "error", "outcome", "counted", "note"])


def _finish(delivery: Delivery, status: str, last_error: str = "") -> None:
    now = timezone.now()
    delivery.status, delivery.last_error, delivery.finished_at = status, last_error, now
    delivery.next_attempt_at = delivery.lease_until = None
    # The console's hourly count goes in the same commit as the row (one fsync, not two).
    with transaction.atomic():
        delivery.save(
            update_fields=["status", "last_error", "finished_at", "next_attempt_at", "lease_until", "updated_at"]
        )
        delivery_stats.record(delivery.connection_id, status, now)


def _wait(delivery: Delivery, status: str, until: datetime, last_error: str, *, uncount: bool = False) -> None:
    if uncount:
        delivery.attempt_count = max(delivery.attempt_count - 1, 0)
    delivery.status, delivery.next_attempt_at, delivery.last_error = status, until, last_error
    delivery.lease_until = None
    with transaction.atomic():  # the row and the console's hourly count in one commit
        delivery.save(
            update_fields=["status", "next_attempt_at", "last_error", "lease_until", "attempt_count", "updated_at"]
        )
        delivery_stats.record(delivery.connection_id, delivery_stats.RETRYING)


def _classify(delivery: Delivery, attempt: DeliveryAttempt, response) -> str | None:
    """Record Rule's answer (inside _recorded's transaction). Returns the note of a second send to make at once
    (Rule rejected only the phone number), else None."""
    now = timezone.now()
    code = response.status_code if response is not None else None
    connection = delivery.connection

    if (code is not None and 200 <= code < 300) or (code == 404 and delivery.event == REMOVE_CART_TAG):
        if code == 404:
            attempt.note = "\n".join(filter(None, [attempt.note, "Rule: the subscriber does not hold this tag."]))
        _save_attempt(attempt, OUTCOME_SUCCEEDED)
        _finish(delivery, S.SUCCEEDED)
        _after_success(delivery)  # in the same transaction: an outcome is never recorded without its follow-ups
        return None

    if code is None or code >= 500 or code == 408:
        reason = attempt.error or _rule_message(delivery, response)
        _save_attempt(attempt, OUTCOME_RETRY)
        if retry.gives_up(delivery.attempt_count):
            _finish(delivery, S.FAILED, f"gave up after {delivery.attempt_count} attempts: {reason}")
        else:
            when = now + retry.retry_delay(delivery.attempt_count)
            _wait(delivery, S.RETRYING, when, f"attempt {delivery.attempt_count} of {retry.MAX_ATTEMPTS}: {reason}")
        return None

    message = _rule_message(delivery, response)
    if code == 429:
        until = retry.parse_retry_after(response.headers.get("Retry-After"), now)
        hold_connection(connection, until)
        _save_attempt(attempt, OUTCOME_RATE_LIMITED, counted=False)
        _wait(
            delivery,
            S.RETRYING,
            until,
            f"Rule rate limit ({message}): the connection waits until {until.isoformat(timespec='seconds')}",
            uncount=True,
        )
        return None

    if code in (401, 403):
        reason = f"{KEY_REFUSED}: {message}"
        pause_connection(connection, reason)
        _save_attempt(attempt, OUTCOME_PAUSED, counted=False)
        _wait(delivery, S.PENDING, now, f"waiting: connection paused ({reason})", uncount=True)
        return None

    if code == 400 and _points_at_phone(response) and _has_phone(delivery.request_body):
        _save_attempt(attempt, OUTCOME_FAILED)
        # Rule rejects the whole request for a bad number; the rest of it is still worth sending.
        delivery.request_body = _without_phone(delivery.request_body)
        delivery.save(update_fields=["request_body", "updated_at"])
        return f"Retried without phone_number: Rule rejected it ({message})."

    if 300 <= code < 400:
        message = (
            f"{code}: Rule answered with a redirect to {response.headers.get('Location', '?')}; "
            "check the Rule API URL (https)"
        )
    _save_attempt(attempt, OUTCOME_FAILED)
    _finish(delivery, S.FAILED, message)
    return None


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


def _after_success(delivery: Delivery) -> None:
    connection = delivery.connection
    if delivery.event not in CART_TAG_PARENTS or not connection.remove_cart_tag or not delivery.email:
        return
    if delivery.trigger == Delivery.Trigger.TEST:
        return  # a test call is one request to the merchant's test address
    flow = Flow.for_event(connection, "OrderCreated")
    # A disabled cart flow set no tags; a DELETE answered 404 would only raise the account's error rate.
    if not flow.enabled:
        return
    for tag in distinct_tags(flow.tags or [])[0]:
        create_delivery(
            connection=connection,
            event=REMOVE_CART_TAG,
            body=None,
            email=delivery.email,
            idempotency_key=f"{REMOVE_CART_TAG}:{delivery.idempotency_key}:{tag}"[:255],
            inbound_event=delivery.inbound_event,
            trigger=delivery.trigger,
            order_number=delivery.order_number,
            method="DELETE",
            path=f"/subscribers/{quote(delivery.email, safe='')}/tags/{quote(str(tag), safe='')}?identified_by=email",
        )


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
        transaction.on_commit(lambda: enqueue_delivery(delivery.pk))
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
    """Send again: clear the pause and any 429 hold, and enqueue the connection's due deliveries."""
    now = timezone.now()
    old_hold = Connection.objects.filter(pk=connection.pk).values_list("hold_until", flat=True).first()
    Connection.objects.filter(pk=connection.pk).update(
        status=Connection.Status.ACTIVE, paused_reason="", paused_at=None, hold_until=None, updated_at=now
    )
    connection.status, connection.paused_reason, connection.hold_until = Connection.Status.ACTIVE, "", None
    connection.paused_at = None
    return release_hold(connection, old_hold)


def release_hold(connection: Connection, old_hold: datetime | None) -> int:
    """A hold was lifted: deliveries pushed to it go now (the rest keep their schedule); enqueue what is due."""
    now = timezone.now()
    if old_hold and old_hold > now:
        connection.deliveries.waiting().filter(next_attempt_at__gt=now, next_attempt_at__lte=old_hold).update(
            next_attempt_at=now
        )
    ids = list(connection.deliveries.due(now).order_by("next_attempt_at").values_list("pk", flat=True)[:RESUME_BATCH])
    transaction.on_commit(lambda: [enqueue_delivery(pk) for pk in ids])
    return len(ids)


def hold_connection(connection: Connection, until: datetime) -> None:
    """Rule said 429: nothing of this connection goes before `until` (never shortens a longer hold)."""
    Connection.objects.filter(pk=connection.pk).filter(Q(hold_until__isnull=True) | Q(hold_until__lt=until)).update(
        hold_until=until
    )
    connection.hold_until = max(until, connection.hold_until or until)


# ---------------------------------------------------------------- the sweeper


def sweep() -> dict[str, int]:
    """Enqueue every due delivery and every inbound event due for processing; returns the counts.

    Everything due goes in one sweep, read in pages of SWEEP_PAGE ids (a flushed broker with a backlog of
    thousands starts moving at once, not 500 a minute). A task whose row is no longer due when it runs does
    nothing, so enqueuing a row twice is harmless."""
    from integration.processing.dispatch import enqueue_due_inbound

    now = timezone.now()
    deliveries = 0
    for pk in _ids_in_pages(Delivery.objects.backlog(now)):
        enqueue_delivery(pk)
        deliveries += 1
    inbound_events = enqueue_due_inbound(_ids_in_pages(InboundEvent.objects.due(now, settled=STUCK_INBOUND_AFTER)))
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
