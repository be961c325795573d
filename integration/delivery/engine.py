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
import email.utils
import logging
import random
import re
import time
from datetime import datetime, timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

from django.db import IntegrityError, transaction
from django.db.models import Exists, F, Max, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from integration.mapping.request import distinct_tags
from integration.models import Connection, Delivery, DeliveryAttempt, Flow, InboundEvent
from integration.ops import alerts, delivery_stats
from integration.ops.health import KEY_REFUSED
from integration.queue import enqueue
from integration.rule.client import RuleRequestError, error_message, get_client, scrub

log = logging.getLogger(__name__)

# Seconds to wait after the 1st, 2nd, ... counted attempt; 8 attempts in all, about 21 hours.
RETRY_DELAYS = (30, 120, 600, 1800, 7200, 21600, 43200)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.2
# Longer than one deliver() call can take (two sends of connect 3 s + read 20 s), so a live claim never expires.
LEASE = timedelta(seconds=120)
MIN_HOLD = timedelta(seconds=60)
MAX_HOLD = timedelta(hours=24)  # a nonsensical Retry-After must not silence a connection for weeks
STUCK_INBOUND_AFTER = timedelta(seconds=60)
SWEEP_BATCH = 500
RESUME_BATCH = 1000
RULE_TIME_ZONE = ZoneInfo("Europe/Stockholm")
CART_TAG_PARENTS = ("OrderPlaced", "OrderCompleted")
REMOVE_CART_TAG = "RemoveCartTag"

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
    transaction.on_commit(lambda: enqueue_delivery(delivery.pk))
    return delivery


# ---------------------------------------------------------------- schedule and Retry-After


def retry_delay(counted_attempts: int, rng: random.Random | None = None) -> timedelta:
    """The wait after the n-th counted attempt: the schedule's step with +-20 % jitter."""
    base = RETRY_DELAYS[min(max(counted_attempts, 1), len(RETRY_DELAYS)) - 1]
    factor = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return timedelta(seconds=base * factor)


_STOCKHOLM_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}$")


def parse_retry_after(value: str | None, now: datetime) -> datetime:
    """When a 429 lets us send again: seconds, an HTTP date or Rule's Stockholm `YYYY-MM-DD HH:MM:SS`;
    at least 60 s, at most 24 h from now."""
    until = None
    value = (value or "").strip()
    if value.isdigit():
        until = now + timedelta(seconds=int(value))
    elif _STOCKHOLM_STAMP.match(value):
        local = datetime.strptime(value.replace("T", " "), "%Y-%m-%d %H:%M:%S")
        until = local.replace(tzinfo=RULE_TIME_ZONE)
    elif value:
        try:
            until = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            until = None
        if until is not None and until.tzinfo is None:
            until = until.replace(tzinfo=ZoneInfo("UTC"))
    if until is None:
        until = now
    return min(max(until, now + MIN_HOLD), now + MAX_HOLD)


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
    claimed = rows.update(status=S.SENDING, lease_until=now + LEASE, updated_at=now)
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
        delivery.attempts.filter(outcome="").update(
            outcome=OUTCOME_RETRY, error="no answer recorded: the worker stopped during the call (lease expired)"
        )
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
    attempt = _send_claimed(claimed)
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
    deadline = time.monotonic() + (wait_seconds if wait_seconds is not None else LEASE.total_seconds())
    while True:
        attempt = delivery.attempts.order_by("-number").first()
        if attempt is not None and attempt.outcome:
            return attempt
        if time.monotonic() >= deadline:
            if attempt is None:
                raise RuntimeError(f"delivery {delivery.pk} is not open and has no attempt")
            return attempt
        time.sleep(0.1)


def _new_attempt(delivery: Delivery, note: str = "") -> DeliveryAttempt:
    last = getattr(delivery, "_last_attempt_number", None)  # known when this worker claimed the delivery
    if last is None:
        last = delivery.attempts.aggregate(n=Max("number"))["n"] or 0
    number = delivery._last_attempt_number = last + 1
    if number == 1 and delivery.notes:
        note = "\n".join(filter(None, [delivery.notes, note]))
    return DeliveryAttempt.objects.create(delivery=delivery, number=number, started_at=timezone.now(), note=note)


def _send_claimed(delivery: Delivery, note: str = "") -> DeliveryAttempt:
    """Attempt row, HTTP call, classification; the delivery is claimed (status sending) by this worker."""
    if delivery.attempt_count >= MAX_ATTEMPTS:  # only after a worker died mid-call on the last attempt
        _finish(delivery, S.FAILED, f"gave up after {delivery.attempt_count} attempts")
        return delivery.attempts.order_by("-number").first() or _new_attempt(delivery)
    attempt = _new_attempt(delivery, note)
    # Counted up front so a worker dying mid-call still uses budget; uncounted outcomes give it back.
    delivery.attempt_count += 1
    Delivery.objects.filter(pk=delivery.pk).update(attempt_count=delivery.attempt_count)

    connection = delivery.connection
    client = get_client(connection.rule_base_url, connection.rule_api_key or "")
    started = time.monotonic()
    response = None
    try:
        response = client.send(delivery.method, delivery.path, json=delivery.request_body)
    except RuleRequestError as exc:
        attempt.error = str(exc)
    attempt.duration_ms = int((time.monotonic() - started) * 1000)
    if response is not None:
        attempt.status_code = response.status_code
        # Rule has no reason to echo the key, but stored answers must never hold it whatever Rule says.
        attempt.response_body = _cut(scrub(response.text or "", connection.rule_api_key or ""))
    return _classify(delivery, attempt, response)


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


def _classify(delivery: Delivery, attempt: DeliveryAttempt, response) -> DeliveryAttempt:
    now = timezone.now()
    code = response.status_code if response is not None else None
    connection = delivery.connection

    if (code is not None and 200 <= code < 300) or (code == 404 and delivery.event == REMOVE_CART_TAG):
        if code == 404:
            attempt.note = "\n".join(filter(None, [attempt.note, "Rule: the subscriber does not hold this tag."]))
        _save_attempt(attempt, OUTCOME_SUCCEEDED)
        _finish(delivery, S.SUCCEEDED)
        _after_success(delivery)
        return attempt

    if code is None or code >= 500 or code == 408:
        reason = attempt.error or _rule_message(delivery, response)
        _save_attempt(attempt, OUTCOME_RETRY)
        if delivery.attempt_count >= MAX_ATTEMPTS:
            _finish(delivery, S.FAILED, f"gave up after {delivery.attempt_count} attempts: {reason}")
        else:
            when = now + retry_delay(delivery.attempt_count)
            _wait(delivery, S.RETRYING, when, f"attempt {delivery.attempt_count} of {MAX_ATTEMPTS}: {reason}")
        return attempt

    message = _rule_message(delivery, response)
    if code == 429:
        until = parse_retry_after(response.headers.get("Retry-After"), now)
        hold_connection(connection, until)
        _save_attempt(attempt, OUTCOME_RATE_LIMITED, counted=False)
        _wait(
            delivery,
            S.RETRYING,
            until,
            f"Rule rate limit ({message}): the connection waits until {until.isoformat(timespec='seconds')}",
            uncount=True,
        )
        return attempt

    if code in (401, 403):
        reason = f"{KEY_REFUSED}: {message}"
        pause_connection(connection, reason)
        _save_attempt(attempt, OUTCOME_PAUSED, counted=False)
        _wait(delivery, S.PENDING, now, f"waiting: connection paused ({reason})", uncount=True)
        return attempt

    if code == 400 and _points_at_phone(response) and _has_phone(delivery.request_body):
        _save_attempt(attempt, OUTCOME_FAILED)
        # Rule rejects the whole request for a bad number; the rest of it is still worth sending.
        delivery.request_body = _without_phone(delivery.request_body)
        delivery.save(update_fields=["request_body", "updated_at"])
        return _send_claimed(delivery, note=f"Retried without phone_number: Rule rejected it ({message}).")

    if 300 <= code < 400:
        message = (
            f"{code}: Rule answered with a redirect to {response.headers.get('Location', '?')}; "
            "check the Rule API URL (https)"
        )
    _save_attempt(attempt, OUTCOME_FAILED)
    _finish(delivery, S.FAILED, message)
    return attempt


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
    if old_hold and old_hold > now:  # deliveries pushed to the lifted hold go now; the rest keep their schedule
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


def sweep(batch: int = SWEEP_BATCH) -> dict[str, int]:
    """Enqueue due deliveries and inbound events stuck in `received`; bounded, returns the counts."""

    now = timezone.now()
    delivery_ids = list(Delivery.objects.backlog(now).order_by("next_attempt_at").values_list("pk", flat=True)[:batch])
    for pk in delivery_ids:
        enqueue_delivery(pk)
    inbound_ids = list(
        InboundEvent.objects.filter(status=InboundEvent.Status.RECEIVED, received_at__lte=now - STUCK_INBOUND_AFTER)
        .order_by("received_at")
        .values_list("pk", flat=True)[:batch]
    )
    for pk in inbound_ids:
        enqueue("integration.tasks.process_inbound", pk, task_name=f"process-inbound-{pk}", what=f"inbound event {pk}")
    return {"deliveries": len(delivery_ids), "inbound_events": len(inbound_ids)}
