"""Driving a history import: start (with its estimate), one step per task, pause, resume, cancel, progress.

A step does at most one Rule call, then enqueues the next step behind whatever the queue already holds, so a
live delivery waits for one import batch at most. Within a step:

1. the connection must be able to send (not paused, not held by Rule's 429) and the run must still be running;
2. a batch claimed earlier and not recorded (a worker stopped) is sent first, rebuilt from its stored items;
3. else, when an event has 1,000 subscribers waiting, they are claimed as a batch (items marked, in one short
   transaction): objects the live path has delivered meanwhile are skipped, and a subscriber whose
   newer order is already in Rule is sent with its tags only (its older fields would overwrite the newer ones);
4. else Centra is read page by page until an event has a full batch or everything is read (each page planned,
   mapped and stored with the cursor in one short transaction); once all is read, partial batches go out;
5. the batch is sent with no transaction open, within the connection's Rule budget, and what Rule answered is
   recorded in one short transaction as soon as it is in. While the call is in flight (on a thread that only
   talks to Rule), the next Centra pages are read and mapped but not stored; they are stored, moving the cursor,
   only once Rule's answer is recorded, so a stopped worker reads them again and never skips or resends them.

A worker killed anywhere leaves the run's lease to expire; the every-minute tick enqueues the step again and it
resumes from the stored cursor and batches. Only a kill during the HTTP call itself can repeat that one call
(Rule's answer was never recorded); the batch is then sent again and says so, which is harmless for Rule (the same
tags and fields again, no automation).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connections, router, transaction
from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from integration import catalog
from integration.centra.client import CentraClient, CentraError, CentraQueryError, CentraUnavailable
from integration.history import source
from integration.history.models import KINDS, HistoryBatch, HistoryImport, HistoryItem
from integration.history.plan import ORDER_EVENTS, SKIP_IMPORTED, SKIP_LIVE
from integration.mapping import FlowConfig, MappingContext, MappingError, build_import_request
from integration.mapping.request import IMPORT_BATCH_LIMIT, clean_tags
from integration.models import Connection, Delivery, Flow, InboundEvent
from integration.processing.emit import flow_for
from integration.retry import parse_retry_after
from integration.rule import budget
from integration.rule.client import RuleRequestError, client_for, error_message, scrub

log = logging.getLogger(__name__)

BATCH_SIZE = IMPORT_BATCH_LIMIT
FETCH_PAGES_PER_STEP = 10
LEASE = timedelta(seconds=120)
MAP_CHUNK = 25  # objects mapped between two looks at whether Rule has answered the call in flight
MAX_SLEEP = 5.0  # budget waits up to this are slept inside the step; longer ones are left to the tick
# Live first: a step does not send while the connection has live work waiting (events received within this
# look-back and not processed yet, or deliveries due); it queues again behind them after a short breath.
LIVE_LOOKBACK = timedelta(minutes=1)
LIVE_YIELD_SECONDS = 0.1
MAX_LIVE_YIELDS = 5  # then one batch goes anyway: a shop with live work every moment still gets its history
RETRY_DELAYS = (10, 30, 120, 600)  # after 5xx or timeouts; then the import pauses and shows Rule's answer
S = HistoryImport.Status
I = HistoryItem.Status  # noqa: E741
B = HistoryBatch.Status
TICK_NAME = "bridge: history import"
TICK_FUNC = "integration.tasks.history_tick"


class CannotStart(Exception):
    """The import cannot start (another one runs, no Centra token, nothing chosen)."""


# ---------------------------------------------------------------- planning and starting


@dataclass
class Estimate:
    """What an import will read and roughly how many Rule calls it takes, before it starts."""

    since: datetime
    until: datetime
    kinds: list[str]
    orders: int = 0
    customers: int = 0
    calls: int = 0
    minutes: float = 0.0
    notes: list[str] = field(default_factory=list)


def estimate(connection: Connection, since: datetime, kinds: list[str], until: datetime | None = None) -> Estimate:
    """Count with Centra's counters (one query): orders in the range, customer accounts; calls at 1,000 a call."""
    until = until or timezone.now()
    result = Estimate(since=since, until=until, kinds=list(kinds))
    counts = CentraClient.for_connection(connection).history_counts(since, until)
    if "orders" in kinds:
        result.orders = int(counts.get("orders") or 0)
        # Orders split over up to four events (each flushed once at the end).
        result.calls += math.ceil(result.orders / BATCH_SIZE) + min(result.orders, 3)
    if "customers" in kinds:
        result.customers = int(counts.get("customers") or 0)
        result.calls += math.ceil(result.customers / BATCH_SIZE)
        result.notes.append("Centra cannot filter customer accounts by date: every account is imported.")
    if "newsletter" in kinds:
        result.calls += 1
        result.notes.append("Newsletter subscribers are counted as they are read (Centra gives no count).")
    enabled = enabled_events(connection)
    for event in (*ORDER_EVENTS, "CustomerRegistered", "Newsletter"):
        wanted = (event in ORDER_EVENTS and "orders" in kinds) or (
            {"CustomerRegistered": "customers", "Newsletter": "newsletter"}.get(event) in kinds
        )
        if not wanted or event in enabled:
            continue
        if event in ORDER_EVENTS:
            result.notes.append(
                f"The {event} flow is off: orders go as the furthest of their events whose flow is on (none: skipped)."
            )
        else:
            result.notes.append(f"The {event} flow is off: what would be imported as {event} is skipped.")
    result.minutes = result.calls / max(budget.calls_per_minute(connection), 1)
    return result


def flows_of(connection: Connection) -> dict[str, Flow]:
    """Every catalog event's flow (the stored one, else the catalog's defaults), in one query."""
    stored = {flow.event: flow for flow in connection.flows.all()}
    return {event: stored.get(event) or Flow.default(connection, event) for event in catalog.EVENTS}


def enabled_events(connection: Connection) -> set[str]:
    return {event for event, flow in flows_of(connection).items() if flow.enabled}


def open_import(connection: Connection) -> HistoryImport | None:
    return connection.history_imports.filter(status__in=HistoryImport.OPEN_STATUSES).first()


def start(connection: Connection, since: datetime, kinds: list[str], started_by: str = "") -> HistoryImport:
    """Start an import (estimate first, then the first step on commit); CannotStart when it cannot start."""
    kinds = [k for k in KINDS if k in kinds]
    if not kinds:
        raise CannotStart("choose what to import: orders, customers or newsletter subscribers")
    if open_import(connection) is not None:
        raise CannotStart(f"{connection.name} already has an import running or paused: finish or cancel it first")
    try:
        plan = estimate(connection, since, kinds)
    except CentraError as exc:
        raise CannotStart(f"Centra: {exc}") from None
    with transaction.atomic():
        # Objects an earlier import did not send may be imported again; sent ones stay (and are skipped).
        HistoryItem.objects.filter(connection=connection).exclude(status=I.SENT).delete()
        run = HistoryImport.objects.create(
            connection=connection,
            kinds=kinds,
            since=since,
            until=plan.until,
            phase=kinds[0],
            started_by=started_by,
            estimated_orders=plan.orders,
            estimated_customers=plan.customers,
            estimated_calls=plan.calls,
        )
        transaction.on_commit(lambda: enqueue_step(run.pk))
    return run


def enqueue_step(run_id: int) -> None:
    """Queue the run's next step (behind what is already queued); a broker failure is left to the tick."""
    from django_q.tasks import async_task

    try:
        async_task("integration.tasks.history_step", run_id, task_name=f"history-{run_id}")
    except Exception as exc:  # the tick enqueues it again within a minute
        log.warning("could not enqueue history step %s: %s", run_id, exc.__class__.__name__)


# ---------------------------------------------------------------- merchant actions


def pause(run: HistoryImport) -> bool:
    """Stop after the batch in flight (if any); resume goes on from the same place."""
    done = HistoryImport.objects.filter(pk=run.pk, status=S.RUNNING).update(status=S.PAUSED, updated_at=timezone.now())
    run.refresh_from_db()
    return bool(done)


def resume(run: HistoryImport) -> bool:
    done = HistoryImport.objects.filter(pk=run.pk, status=S.PAUSED).update(
        status=S.RUNNING, next_step_at=None, last_error="", updated_at=timezone.now()
    )
    run.refresh_from_db()
    if done:
        transaction.on_commit(lambda: enqueue_step(run.pk))
    return bool(done)


def cancel(run: HistoryImport) -> bool:
    """Stop for good: at most the batch already in flight reaches Rule; nothing waiting is sent."""
    now = timezone.now()
    with transaction.atomic():
        done = HistoryImport.objects.filter(pk=run.pk, status__in=HistoryImport.OPEN_STATUSES).update(
            status=S.CANCELLED, finished_at=now, updated_at=now
        )
        if done:
            run.batches.filter(status=B.CLAIMED).update(status=B.FAILED, note="cancelled before it was sent")
            run.items.filter(status=I.PENDING).delete()
            run.items.filter(status=I.CLAIMED, batch__status=B.FAILED).delete()
    run.refresh_from_db()
    return bool(done)


# ---------------------------------------------------------------- the step


def tick(now: datetime | None = None) -> int:
    """Every minute: enqueue each running import whose step is due and not held by a live worker."""
    now = now or timezone.now()
    due = HistoryImport.objects.filter(status=S.RUNNING).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now), Q(next_step_at__isnull=True) | Q(next_step_at__lte=now)
    )
    ids = list(due.values_list("pk", flat=True))
    for pk in ids:
        enqueue_step(pk)
    return len(ids)


def _claim_run(run_id: int, now: datetime) -> HistoryImport | None:
    claimed = (
        HistoryImport.objects.filter(pk=run_id, status=S.RUNNING)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(next_step_at__isnull=True) | Q(next_step_at__lte=now))
        .update(lease_until=now + LEASE, updated_at=now)
    )
    if not claimed:
        return None
    return HistoryImport.objects.select_related("connection").get(pk=run_id)


def step(run_id: int) -> str:
    """One step of an import (at most one Rule call); returns what it did, for logs and tests."""
    run = _claim_run(run_id, timezone.now())
    if run is None:
        return "not due"
    again = False
    try:
        outcome, again = _advance(run)
    except CentraUnavailable as exc:
        outcome = _wait(run, timedelta(seconds=exc.retry_after or 30), f"Centra: {exc}")
    except CentraQueryError as exc:
        outcome = _stop(run, S.PAUSED, f"Centra refused the query: {exc}. Fix the token or permissions, then resume.")
    finally:
        HistoryImport.objects.filter(pk=run.pk).update(lease_until=None)
    if again:
        transaction.on_commit(lambda: enqueue_step(run.pk))
    log.info("history import %s: %s", run.pk, outcome)
    return outcome


def _still_running(run: HistoryImport) -> bool:
    return HistoryImport.objects.filter(pk=run.pk, status=S.RUNNING).exists()


def _wait(run: HistoryImport, delay: timedelta, why: str) -> str:
    HistoryImport.objects.filter(pk=run.pk).update(next_step_at=timezone.now() + delay, last_error=why[:2000])
    return f"waiting: {why}"


def _stop(run: HistoryImport, status: str, why: str) -> str:
    now = timezone.now()
    fields = {"status": status, "last_error": why[:2000], "updated_at": now}
    if status in (S.FAILED, S.FINISHED):
        fields["finished_at"] = now
    HistoryImport.objects.filter(pk=run.pk, status=S.RUNNING).update(**fields)
    return f"{status}: {why}"


def _advance(run: HistoryImport) -> tuple[str, bool]:
    """(what happened, whether to enqueue the next step now)."""
    connection = Connection.objects.get(pk=run.connection_id)
    now = timezone.now()
    if connection.is_paused:
        return _wait(run, timedelta(minutes=1), "the connection is paused"), False
    if connection.hold_until and connection.hold_until > now:
        return _wait(run, connection.hold_until - now, "Rule asked to wait (429)"), False
    batch = run.batches.filter(status__in=[B.CLAIMED, B.SENDING]).order_by("number").first()
    with _Reader(run, connection) as reader:
        if batch is None:
            event = _full_event(run)
            pages = 0
            while event is None and not run.fetched_all and pages < FETCH_PAGES_PER_STEP:
                if not _still_running(run):
                    return "stopped", False
                _store_page(run, connection, reader.page(run.phase, run.next_page), reader.ctx, reader.configs)
                pages += 1
                event = _full_event(run)
            if event is None and not run.fetched_all:
                return f"read {pages} pages", True
            event = event or _any_event(run)
            if event is None:
                _stop(run, S.FINISHED, "")
                return "finished", False
            batch = _claim_batch(run, connection, event)
            if batch is None:
                return "nothing left to send in this batch", True
        return _send(run, connection, batch, reader)


def _pending(run: HistoryImport):
    return HistoryItem.objects.filter(run=run, primary=True, status=I.PENDING)


def _full_event(run: HistoryImport) -> str | None:
    counts = _pending(run).values("event").annotate(n=Count("id")).filter(n__gte=BATCH_SIZE).order_by("-n")
    row = counts.first()
    return row["event"] if row else None


def _any_event(run: HistoryImport) -> str | None:
    """Once everything is read: the event whose oldest waiting subscriber is oldest (partial batches, in order)."""
    row = _pending(run).values("event").annotate(first=Min("seq")).order_by("first").first()
    return row["event"] if row else None


# Pages read ahead and left by a step, for the run's next step in this process: {reader key: (when, pages)}.
_CARRIED: dict[tuple, tuple[float, dict[tuple[str, int], Future]]] = {}
_CARRIED_LOCK = threading.Lock()
CARRY_SECONDS = 30.0  # older pages are read again (Centra may have changed them meanwhile)
READ_AHEAD = 2  # pages read ahead at most (one being read, one waiting)
_POOL: ThreadPoolExecutor | None = None


def _read_pool() -> ThreadPoolExecutor:
    """The thread that reads Centra pages ahead (one per process: pages are read one at a time, in order)."""
    global _POOL
    with _CARRIED_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-read-ahead")
        return _POOL


def _carry(key: tuple, ahead: dict[tuple[str, int], Future]) -> None:
    pages = {cursor: f for cursor, f in ahead.items() if not f.cancelled()}
    with _CARRIED_LOCK:
        for _, old in _CARRIED.values():
            for f in old.values():
                f.cancel()
        _CARRIED.clear()  # one run's pages at a time: a process drives one step at a time
        if pages:
            _CARRIED[key] = (time.monotonic(), pages)


def _take_carried(key: tuple) -> dict[tuple[str, int], Future]:
    with _CARRIED_LOCK:
        when, pages = _CARRIED.pop(key, (0.0, {}))
    if pages and time.monotonic() - when > CARRY_SECONDS:
        for f in pages.values():
            f.cancel()
        return {}
    return pages


class _Reader:
    """Centra pages for one step, the next ones read ahead on a thread while the current one is mapped and stored
    (the thread only talks to Centra: no database). Pages read ahead and not used by this step are kept for the
    run's next step in this process (a worker runs an import's steps one after another), so Centra is read while
    the batch is claimed and stored; a step in another process reads them again. Read-ahead pages are only ever
    Centra's answers: nothing is stored or sent from them until a step stores them at the run's cursor."""

    def __init__(self, run: HistoryImport, connection: Connection) -> None:
        self.run, self.connection = run, connection
        flows = flows_of(connection)  # one query per step; a flow changed meanwhile is checked again at claim
        self.enabled = {event for event, flow in flows.items() if flow.enabled}
        self.configs = {event: FlowConfig.from_flow(flow) for event, flow in flows.items()}
        self.ctx = MappingContext.from_connection(connection)
        self.client: CentraClient | None = None  # made on the reading thread, kept for the step's pages
        # What the pages depend on besides the cursor: a page planned with other flows or settings is read again.
        self.key = (
            run.pk,
            run.started_at,
            run.since,
            run.until,
            connection.centra_api_url,
            frozenset(self.enabled),
            connection.manual_confirmation,
        )
        self.ahead: dict[tuple[str, int], Future] = _take_carried(self.key)

    def __enter__(self) -> _Reader:
        return self

    def __exit__(self, *exc) -> None:
        _carry(self.key, self.ahead)

    def _read(self, phase: str, number: int) -> source.Page:
        if self.client is None:
            self.client = CentraClient.for_connection(self.connection)
        return source.read_page(
            self.client,
            phase,
            number,
            self.run.since,
            self.run.until,
            manual_confirmation=self.connection.manual_confirmation,
            enabled=self.enabled,
        )

    def page(self, phase: str, number: int) -> source.Page:
        page = self.future(phase, number).result()
        if not page.last:
            self.read_ahead(phase, number + 1)
            self.read_ahead(phase, number + 2)
        return page

    def read_ahead(self, phase: str, number: int) -> None:
        if (phase, number) not in self.ahead and len(self.ahead) < READ_AHEAD:
            self.ahead[(phase, number)] = _read_pool().submit(self._read, phase, number)

    def future(self, phase: str, number: int) -> Future:
        """The page as a future (read on the thread), so a caller can wait for it or for something else."""
        for cursor in [c for c in self.ahead if c[0] == phase and c[1] < number]:
            self.ahead.pop(cursor).cancel()  # behind the cursor (another worker stored it): not needed
        future = self.ahead.pop((phase, number), None)
        return future or _read_pool().submit(self._read, phase, number)

    def map(self, page: source.Page, between=None) -> list[source.Mapped]:
        """The page's objects mapped, `between()` called after every few (to record an answer that came in)."""
        mapped: list[source.Mapped] = []
        for start in range(0, len(page.objects), MAP_CHUNK):
            chunk = page.objects[start : start + MAP_CHUNK]
            mapped.extend(source.map_planned(p, self.ctx, self.configs) for p in chunk)
            if between is not None:
                between()
        return mapped


def _store_page(
    run: HistoryImport,
    connection: Connection,
    page: source.Page,
    ctx: MappingContext,
    flows: dict[str, FlowConfig],
) -> None:
    """Map one planned Centra page of the current kind, and store it with the cursor (one transaction)."""
    mapped = [source.map_planned(p, ctx, flows) for p in page.objects]
    _store_mapped(run, connection, (run.phase, run.next_page), page, mapped)


def _after(run: HistoryImport, cursor: tuple[str, int], page: source.Page) -> tuple[str, int, bool]:
    """The cursor after this page: (phase, next page, everything read)."""
    phase, number = cursor
    if not page.last:
        return phase, number + 1, False
    later = run.kinds[run.kinds.index(phase) + 1 :]
    return (later[0], 1, False) if later else (phase, number + 1, True)


def _store_mapped(
    run: HistoryImport, connection: Connection, cursor: tuple[str, int], page: source.Page, mapped: list
) -> bool:
    """Store a mapped page read at `cursor` and move the cursor past it (one transaction); False when the run is
    not at that cursor any more (another worker stored it) or has stopped (paused or cancelled meanwhile)."""
    with transaction.atomic():
        current = HistoryImport.objects.select_for_update().get(pk=run.pk)
        if (current.phase, current.next_page) != cursor or current.fetched_all or current.status != S.RUNNING:
            return False  # another worker stored this page already, or the merchant stopped the import
        skipped, failed, reasons = _store_items(run, connection, mapped, current.fetched)
        current.phase, current.next_page, current.fetched_all = _after(run, cursor, page)
        current.fetched += page.read
        current.skipped += skipped
        current.failed += failed
        for reason, n in reasons.items():
            current.skip_reasons[reason] = current.skip_reasons.get(reason, 0) + n
        current.save(
            update_fields=["phase", "next_page", "fetched_all", "fetched", "skipped", "failed", "skip_reasons"]
        )
    run.phase, run.next_page, run.fetched_all = current.phase, current.next_page, current.fetched_all
    run.fetched = current.fetched
    return True


def _store_items(
    run: HistoryImport, connection: Connection, mapped: list[source.Mapped], seq_start: int
) -> tuple[int, int, dict[str, int]]:
    """Insert the page's items (one query for what is stored already, one insert); (skipped, failed, skip reasons).

    Keys stored already are skipped: imported by an earlier run, or the same object read twice by this one."""
    keys = [k for m in mapped for _, k in m.planned.keys]
    imported = set(HistoryItem.objects.filter(connection=connection, key__in=keys).values_list("key", flat=True))
    rows, skipped, failed, reasons = [], 0, 0, {}
    for n, m in enumerate(mapped, start=seq_start):
        planned = m.planned
        if planned.keys and planned.keys[0][1] in imported:
            planned.event, planned.reason = None, SKIP_IMPORTED
        if planned.event is None or m.error:
            reason = f"cannot map: {m.error}" if m.error else planned.reason
            if m.error:
                failed += 1
            else:
                skipped += 1
            reasons[reason] = reasons.get(reason, 0) + 1
            continue
        occurred_at = _parse(planned.occurred_at)
        for index, (event, key) in enumerate(planned.keys):
            if key in imported:
                continue
            imported.add(key)
            rows.append(
                {
                    "run_id": run.pk,
                    "connection_id": connection.pk,
                    "key": key[:255],
                    "group": planned.group,
                    "event": event if index else planned.event,
                    "primary": index == 0,
                    "seq": n,
                    "email": m.email,
                    "order_number": planned.order_number,
                    "occurred_at": occurred_at,
                    "subscriber": m.subscriber if index == 0 else None,
                }
            )
    _insert_items(rows)
    return skipped, failed, reasons


# What a page inserts per item; the other columns take their defaults (pending, no batch, no error).
_ITEM_FIELDS = (
    "run",
    "connection",
    "key",
    "group",
    "event",
    "primary",
    "seq",
    "email",
    "order_number",
    "occurred_at",
    "subscriber",
    "tags_only",
    "status",
    "error",
)


def _insert_items(rows: list[dict]) -> None:
    """New pending items, a key stored meanwhile left as it is. On PostgreSQL one COPY into a temporary table and
    one INSERT ... ON CONFLICT DO NOTHING: Django's bulk insert quotes every value into one SQL text, which for
    200 subscriber documents of 3 KB cost more than mapping them (cProfile of the history benchmark)."""
    if not rows:
        return
    db = connections[router.db_for_write(HistoryItem)]
    if db.vendor != "postgresql":
        HistoryItem.objects.bulk_create([HistoryItem(**row) for row in rows], batch_size=500, ignore_conflicts=True)
        return
    fields = [HistoryItem._meta.get_field(name) for name in _ITEM_FIELDS]
    columns = ", ".join(db.ops.quote_name(f.column) for f in fields)
    table = db.ops.quote_name(HistoryItem._meta.db_table)
    defaults = {"tags_only": False, "status": I.PENDING.value, "error": ""}
    with transaction.atomic(using=db.alias), db.cursor() as cursor:
        # The temporary table lives as long as the database session and is emptied at each commit.
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS history_item_page ON COMMIT DELETE ROWS AS "
            f"SELECT {columns} FROM {table} WITH NO DATA"
        )
        with cursor.cursor.copy(f"COPY history_item_page ({columns}) FROM STDIN") as copy:
            for row in rows:
                row = {**defaults, **row}
                if row["subscriber"] is not None:
                    row["subscriber"] = json.dumps(row["subscriber"])
                copy.write_row([row[f.attname] for f in fields])
        cursor.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM history_item_page ON CONFLICT DO NOTHING"
        )
        cursor.execute("DELETE FROM history_item_page")


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def _claim_batch(run: HistoryImport, connection: Connection, event: str) -> HistoryBatch | None:
    """Take up to 1,000 waiting subscribers of `event` as one batch, in one short transaction."""
    with transaction.atomic():
        pending = _pending(run).filter(event=event).order_by("seq")
        items = list(pending.only("id", "group", "event", "email", "occurred_at")[:BATCH_SIZE])
        groups = [i.group for i in items]
        members = list(HistoryItem.objects.filter(run=run, group__in=groups).values_list("group", "key"))
        delivered = set(
            Delivery.objects.filter(connection=connection, idempotency_key__in=[k for _, k in members])
            .exclude(trigger=Delivery.Trigger.TEST)
            .values_list("idempotency_key", flat=True)
        )
        live_groups = {g for g, k in members if k in delivered}
        flow = flow_for(connection, event)
        if not flow.enabled:
            live_groups |= set(groups)
        keep = [i for i in items if i.group not in live_groups]
        if live_groups:
            reason = SKIP_LIVE if flow.enabled else "flow off"
            HistoryItem.objects.filter(run=run, group__in=live_groups).update(status=I.SKIPPED, subscriber=None)
            _count(run, skipped=len(items) - len(keep), reason=reason)
        if not keep:
            return None
        tags_only = _tags_only(connection, keep)
        number = (run.batches.aggregate(n=Max("number"))["n"] or 0) + 1
        try:
            tags = clean_tags(FlowConfig.from_flow(flow).tags)
        except MappingError as exc:  # the flow lost its tags meanwhile
            HistoryItem.objects.filter(run=run, group__in=[i.group for i in keep]).update(
                status=I.FAILED, error=str(exc), subscriber=None
            )
            _count(run, failed=len(keep), reason=f"cannot send: {exc}")
            return None
        note = f"{len(tags_only)} sent with their tags only: a newer order is already in Rule." if tags_only else ""
        batch = HistoryBatch.objects.create(run=run, number=number, event=event, size=len(keep), tags=tags, note=note)
        HistoryItem.objects.filter(run=run, group__in=[i.group for i in keep]).update(status=I.CLAIMED, batch=batch)
        if tags_only:
            HistoryItem.objects.filter(pk__in=tags_only).update(tags_only=True)
    return batch


def batch_body(batch: HistoryBatch) -> dict:
    """The batch's request, built from its stored items (the same body whenever it is sent)."""
    entries = []
    for subscriber, tags_only in (
        HistoryItem.objects.filter(batch=batch, primary=True).order_by("seq").values_list("subscriber", "tags_only")
    ):
        entry = dict(subscriber or {})
        if tags_only:
            entry.pop("fields", None)
        entries.append(entry)
    return build_import_request(entries, FlowConfig(tags=tuple(batch.tags)))


def _tags_only(connection: Connection, items: list[HistoryItem]) -> list[int]:
    """The items to send with their tags only: an order older than one of the same person's orders already in Rule
    (sent by this import, or live) would overwrite the newer fields, as Rule keeps one value per field."""
    newest: dict[str, datetime | None] = {}
    if items[0].event in ORDER_EVENTS:
        emails = {i.email for i in items if i.email}
        for row in (
            HistoryItem.objects.filter(
                connection=connection, email__in=emails, primary=True, status__in=HistoryItem.COVERING
            )
            .filter(event__in=ORDER_EVENTS)
            .values("email")
            .annotate(latest=Max("occurred_at"))
        ):
            newest[row["email"]] = row["latest"]
        live = Delivery.objects.filter(connection=connection, email__in=emails, event__in=LIVE_ORDER_EVENTS)
        for email in live.exclude(trigger=Delivery.Trigger.TEST).values_list("email", flat=True).distinct():
            newest[email] = None  # a live order is newer than any order in the history
    tags_only = []
    for item in items:
        if item.email in newest:
            latest = newest[item.email]
            if latest is None or (item.occurred_at and item.occurred_at < latest):
                tags_only.append(item.pk)
    return tags_only


LIVE_ORDER_EVENTS = ("OrderPlaced", *ORDER_EVENTS, "OrderCancellation")


def _count(run: HistoryImport, *, skipped: int = 0, failed: int = 0, reason: str = "") -> None:
    current = HistoryImport.objects.select_for_update().get(pk=run.pk)
    current.skipped += skipped
    current.failed += failed
    if reason:
        current.skip_reasons[reason] = current.skip_reasons.get(reason, 0) + skipped + failed
    current.save(update_fields=["skipped", "failed", "skip_reasons", "updated_at"])


# ---------------------------------------------------------------- sending one batch


def _live_waiting(connection: Connection, now: datetime) -> bool:
    """Whether live traffic of this connection is waiting: an inbound event not processed yet, or a delivery due.
    The import then lets it go first (its next step queues behind it)."""
    if InboundEvent.objects.filter(
        connection=connection, status=InboundEvent.Status.RECEIVED, received_at__gte=now - LIVE_LOOKBACK
    ).exists():
        return True
    return Delivery.objects.filter(
        connection=connection, status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING], next_attempt_at__lte=now
    ).exists()


def _send(run: HistoryImport, connection: Connection, batch: HistoryBatch, reader: _Reader) -> tuple[str, bool]:
    if run.live_yields < MAX_LIVE_YIELDS and _live_waiting(connection, timezone.now()):
        HistoryImport.objects.filter(pk=run.pk).update(live_yields=run.live_yields + 1)
        time.sleep(LIVE_YIELD_SECONDS)  # a short breath, so a queue holding only this step does not spin
        return "live traffic first", True
    if run.live_yields:  # on a shop that never stops, the import still moves: one batch after a few yields
        HistoryImport.objects.filter(pk=run.pk).update(live_yields=0)
    while True:
        wait = budget.take(connection)
        if wait <= 0:
            break
        if wait > MAX_SLEEP:
            return _wait(run, timedelta(seconds=wait), "within the Rule budget"), False
        time.sleep(wait)
    if not _still_running(run):  # paused or cancelled while waiting: this batch stays for resume
        return "stopped before sending", False
    note = ""
    if batch.status == B.SENDING:  # a worker stopped during this call: Rule's answer was never recorded
        note = "sent again: a worker stopped during the previous call, before Rule's answer was recorded"
    batch.attempts += 1
    batch.started_at = timezone.now()
    HistoryBatch.objects.filter(pk=batch.pk).update(
        status=B.SENDING, attempts=batch.attempts, started_at=batch.started_at
    )
    client = client_for(connection)  # the key goes only to the address it was entered for
    body = batch_body(batch)
    waiting = None if run.fetched_all else _waiting_by_event(run)  # before the call: no query runs during it
    answered: list[tuple[str, bool]] = []
    caller = ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-rule-call")
    call = caller.submit(_call, client, body)  # the thread only talks to Rule: no database

    def record() -> None:
        """Record Rule's answer as soon as it is in (once), before anything read meanwhile is stored."""
        if answered or not call.done():
            return
        response, error, failure, seconds = call.result()
        batch.duration_ms = int(seconds * 1000)
        if note:
            batch.note = "\n".join(filter(None, [batch.note, note]))
        answered.append(_record(run, connection, batch, response, error))
        # The breaker and Rule's counters hear of it as of a delivery's call: an import's answer closes an open
        # breaker (its call was the probe), its failures count towards opening it.
        budget.after_call(connection, None, response, failure)

    try:
        prepared = _prepare(run, reader, call, record, waiting) if waiting is not None else []
    finally:
        wait_for([call])
        record()
        caller.shutdown(wait=False)
    # Only now, with Rule's answer recorded, do the pages read during the call move the cursor: a worker stopped
    # before this reads them again; one stopped during the call sends this batch again and no other.
    for cursor, page, mapped in prepared:
        if not _store_mapped(run, connection, cursor, page, mapped):
            break
    return answered[0]


def _call(client, body: dict) -> tuple:
    """(response, error, failure, seconds) of one import call; run on a thread of its own."""
    started = time.monotonic()
    try:
        return client.send("POST", "/subscribers", json=body), "", None, time.monotonic() - started
    except RuleRequestError as exc:
        return None, str(exc), exc, time.monotonic() - started


def _waiting_by_event(run: HistoryImport) -> dict[str, int]:
    return dict(_pending(run).values_list("event").annotate(n=Count("id")).order_by())


def _prepare(run: HistoryImport, reader: _Reader, call: Future, record, waiting: dict[str, int]) -> list[tuple]:
    """While the call is in flight, read and map the next pages (nothing stored): until the call is answered and an
    event has a full batch (counting what waits already), everything is read, or FETCH_PAGES_PER_STEP pages.
    `record()` runs whenever the answer may be in, so it is recorded within one small chunk of mapping.
    A Centra failure ends the reading (the page is read again by the next step); [(cursor, page, mapped)]."""
    prepared: list[tuple] = []
    counts = dict(waiting)
    cursor, done = (run.phase, run.next_page), False
    while not done and len(prepared) < FETCH_PAGES_PER_STEP:
        record()
        if call.done() and max(counts.values(), default=0) >= BATCH_SIZE:
            break
        future = reader.future(*cursor)
        while not future.done():
            # once the call is answered only the page is waited for (waiting on a finished call returned at once:
            # the worker spun, taking the CPU from the reader thread and the fake Centra)
            wait_for([future] if call.done() else [future, call], return_when=FIRST_COMPLETED)
            record()
        try:
            page = future.result()
        except CentraError:
            break
        for planned in page.objects:
            if planned.event is not None:
                counts[planned.event] = counts.get(planned.event, 0) + 1
        phase, number, done = _after(run, cursor, page)
        if not done:  # read on while this page is mapped; what this step does not use goes to the next step
            reader.read_ahead(phase, number)
            reader.read_ahead(phase, number + 1)
        prepared.append((cursor, page, reader.map(page, record)))
        cursor = (phase, number)
    return prepared


def _record(run: HistoryImport, connection: Connection, batch: HistoryBatch, response, error: str):
    """Record Rule's answer to one batch (one short transaction); (outcome, enqueue the next step now)."""
    key = connection.rule_api_key or ""
    code = response.status_code if response is not None else None
    batch.status_code = code
    batch.response = scrub((response.text or "")[:4000], key) if response is not None else error
    now = timezone.now()
    with transaction.atomic():
        current = HistoryImport.objects.select_for_update().get(pk=run.pk)
        if code is not None and 200 <= code < 300:
            batch.status, batch.sent_at = B.SENT, now
            batch.save()
            HistoryItem.objects.filter(batch=batch).update(status=I.SENT, subscriber=None)
            current.sent += batch.size
            current.calls += 1
            current.last_error = ""
            current.save(update_fields=["sent", "calls", "last_error", "updated_at"])
            return f"sent batch {batch.number}: {batch.size} x {batch.event}", current.status == S.RUNNING
        current.calls += 0 if code is None else 1
        current.save(update_fields=["calls", "updated_at"])
        message = scrub(error_message(response), key) if response is not None else error
        bad = _bad_subscriber(response) if code == 400 else None
        if bad is not None and bad < batch.size:
            return _drop_subscriber(run, batch, bad, message), True
        batch.status = B.CLAIMED  # sent again on a later step unless the run stops
        if code == 429:
            until = parse_retry_after(response.headers.get("Retry-After"), now)
            connection.hold(until)
            batch.save()
            return _wait(run, until - now, f"Rule rate limit (429): waiting until {until:%H:%M:%S}"), False
        if code in (401, 403):
            batch.save()
            return _stop(run, S.PAUSED, f"Rule refused the API key ({message}). Fix it, then resume."), False
        if code is None or code >= 500 or code == 408:
            batch.save()
            if batch.attempts > len(RETRY_DELAYS):
                return _stop(run, S.PAUSED, f"Rule kept failing ({message}); resume to try again."), False
            return _wait(run, timedelta(seconds=RETRY_DELAYS[batch.attempts - 1]), f"Rule: {message}"), False
        batch.status = B.FAILED
        batch.save()
        HistoryItem.objects.filter(batch=batch).update(status=I.FAILED, error=message[:2000], subscriber=None)
        _count(run, failed=batch.size, reason=f"Rule refused: {message}"[:200])
        return _stop(run, S.FAILED, f"Rule refused an import call: {message}"), False


_SUBSCRIBER_INDEX = re.compile(r"^subscribers\.(\d+)\.")


def _bad_subscriber(response) -> int | None:
    """The index of the subscriber Rule's 400 points at (`fields: {"subscribers.12.email": [...]}`), if any."""
    try:
        fields = (response.json() or {}).get("fields") or {}
    except (ValueError, AttributeError):
        return None
    for name in fields if isinstance(fields, dict) else []:
        match = _SUBSCRIBER_INDEX.match(str(name))
        if match:
            return int(match[1])
    return None


def _drop_subscriber(run: HistoryImport, batch: HistoryBatch, index: int, message: str) -> str:
    """Rule rejected one subscriber of the batch: that one fails with Rule's words, the rest go again."""
    members = list(HistoryItem.objects.filter(batch=batch, primary=True).order_by("seq"))
    item = members[index]
    HistoryItem.objects.filter(batch=batch, group=item.group).update(
        status=I.FAILED, error=message[:2000], batch=None, subscriber=None
    )
    _count(run, failed=1, reason="Rule refused a subscriber")
    batch.size = len(members) - 1
    batch.note = "\n".join(filter(None, [batch.note, f"left out {item.email or item.key}: {message}"]))[:4000]
    batch.status = B.CLAIMED if batch.size else B.FAILED
    batch.save()
    return f"batch {batch.number}: Rule refused one subscriber, the rest go again"


# ---------------------------------------------------------------- progress


def progress(run: HistoryImport) -> dict:
    """What the admin page and the command show: done / estimated, sent, skipped, failed, rate, time left."""
    run.refresh_from_db()
    estimated = run.estimated_orders + (run.estimated_customers if "customers" in run.kinds else 0)
    estimated = max(estimated, run.fetched)
    end = run.finished_at or timezone.now()
    elapsed = max((end - run.started_at).total_seconds(), 0.001)
    rate = run.fetched / elapsed  # objects read and handled a second
    left = (estimated - run.fetched) / rate if rate > 0 and run.is_open else 0
    return {
        "id": run.pk,
        "status": run.status,
        "phase": run.phase,
        "done": run.fetched,
        "estimated": estimated,
        "percent": round(100 * run.fetched / estimated, 1) if estimated else (100.0 if not run.is_open else 0.0),
        "sent": run.sent,
        "skipped": run.skipped,
        "failed": run.failed,
        "calls": run.calls,
        "estimated_calls": run.estimated_calls,
        "rate_per_minute": round(rate * 60),
        "seconds_left": round(left),
        "elapsed_seconds": round(elapsed),
        "skip_reasons": run.skip_reasons,
        "last_error": run.last_error,
    }
