"""Deliveries per connection and clock hour: counted as attempts end, read by the console (chart and health).

The delivery engine calls `record(connection_id, outcome)` once per attempt outcome: one upsert on a small
table, so the console never has to scan the delivery log (a million rows) to draw a chart or decide health.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection as db
from django.db.models import Count, Max, Q, Sum
from django.db.models.functions import TruncHour
from django.utils import timezone

from integration.models import Delivery, DeliveryAttempt, DeliveryHour

SUCCEEDED = "succeeded"
RETRYING = "retrying"  # the attempt failed and the delivery will be tried again (5xx, timeout, 429, paused)
FAILED = "failed"  # the delivery failed for good
OUTCOMES = (SUCCEEDED, RETRYING, FAILED)


def hour_of(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def record(connection_id: int, outcome: str, at: datetime | None = None, count: int = 1) -> None:
    """Count `count` attempt outcomes (one, or a batch's) in the connection's hour (one INSERT ... ON CONFLICT
    DO UPDATE)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    at = at or timezone.now()
    table = DeliveryHour._meta.db_table
    counts = [count * int(outcome == name) for name in OUTCOMES]
    adapt = db.ops.adapt_datetimefield_value
    # SQLite and PostgreSQL both speak this upsert; the counters grow in the database, so concurrent workers
    # never lose a count.
    with db.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (connection_id, hour, succeeded, retrying, failed, last_succeeded_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (connection_id, hour) DO UPDATE SET "
            f"succeeded = {table}.succeeded + excluded.succeeded, "
            f"retrying = {table}.retrying + excluded.retrying, "
            f"failed = {table}.failed + excluded.failed, "
            f"last_succeeded_at = COALESCE(excluded.last_succeeded_at, {table}.last_succeeded_at)",
            [
                connection_id,
                adapt(hour_of(at)),
                *counts,
                adapt(at) if outcome == SUCCEEDED else None,
            ],
        )


@dataclass(frozen=True)
class Series:
    """Per-hour counts, oldest first, one entry per hour of the window (zeros included)."""

    start: datetime
    succeeded: list[int]
    retrying: list[int]
    failed: list[int]

    @property
    def hours(self) -> int:
        return len(self.succeeded)

    def last(self, hours: int) -> Series:
        """The newest `hours` of this series."""
        return Series(
            self.start + timedelta(hours=self.hours - hours),
            self.succeeded[-hours:],
            self.retrying[-hours:],
            self.failed[-hours:],
        )

    def totals(self) -> dict[str, int]:
        return {SUCCEEDED: sum(self.succeeded), RETRYING: sum(self.retrying), FAILED: sum(self.failed)}

    @property
    def peak(self) -> int:
        return max((s + r + f for s, r, f in zip(self.succeeded, self.retrying, self.failed, strict=True)), default=0)


def hourly_series(connection_ids: list[int], hours: int, now: datetime | None = None) -> dict[int, Series]:
    """The last `hours` clock hours (the current one included) of each connection, in one query."""
    end = hour_of(now or timezone.now())
    start = end - timedelta(hours=hours - 1)
    found = {pk: Series(start, [0] * hours, [0] * hours, [0] * hours) for pk in connection_ids}
    rows = DeliveryHour.objects.filter(connection_id__in=connection_ids, hour__gte=start, hour__lte=end).values_list(
        "connection_id", "hour", "succeeded", "retrying", "failed"
    )
    for connection_id, hour, succeeded, retrying, failed in rows:
        index = int((hour - start).total_seconds() // 3600)
        series = found[connection_id]
        series.succeeded[index] += succeeded
        series.retrying[index] += retrying
        series.failed[index] += failed
    return found


def failures_since(connection_ids: list[int], since: datetime) -> dict[int, int]:
    """Failed and retried attempts counted in the hours from `since`'s hour on, per connection."""
    rows = (
        DeliveryHour.objects.filter(connection_id__in=connection_ids, hour__gte=hour_of(since))
        .values("connection_id")
        .annotate(n=Sum("failed") + Sum("retrying"))
        .values_list("connection_id", "n")
    )
    found = dict.fromkeys(connection_ids, 0)
    found.update(rows)
    return found


def last_succeeded(connection_ids: list[int]) -> dict[int, datetime | None]:
    """When each connection's latest delivery succeeded (None: never, or before the kept hours)."""
    rows = (
        DeliveryHour.objects.filter(connection_id__in=connection_ids, last_succeeded_at__isnull=False)
        .values("connection_id")
        .annotate(at=Max("last_succeeded_at"))
        .values_list("connection_id", "at")
    )
    found: dict[int, datetime | None] = dict.fromkeys(connection_ids)
    found.update(rows)
    return found


def rebuild(since: datetime | None = None) -> int:
    """Recount the hours from the delivery log (deliveries stored before the counters existed, benchmarks).

    Succeeded and failed come from the deliveries' finish times, retrying from their attempts; the hours from
    `since` on are replaced. Returns the number of hour rows written."""
    deliveries = Delivery.objects.filter(finished_at__isnull=False)
    attempts = DeliveryAttempt.objects.filter(outcome__in=["retry", "rate_limited", "paused"])
    hours = DeliveryHour.objects.all()
    if since is not None:
        deliveries = deliveries.filter(finished_at__gte=hour_of(since))
        attempts = attempts.filter(started_at__gte=hour_of(since))
        hours = hours.filter(hour__gte=hour_of(since))
    rows: dict[tuple[int, datetime], DeliveryHour] = {}

    def row(connection_id: int, hour: datetime) -> DeliveryHour:
        return rows.setdefault((connection_id, hour), DeliveryHour(connection_id=connection_id, hour=hour))

    finished = (
        deliveries.annotate(h=TruncHour("finished_at", tzinfo=UTC))
        .values("connection_id", "h")
        .annotate(
            ok=Count("pk", filter=Q(status=Delivery.Status.SUCCEEDED)),
            bad=Count("pk", filter=Q(status=Delivery.Status.FAILED)),
            last=Max("finished_at", filter=Q(status=Delivery.Status.SUCCEEDED)),
        )
        .order_by()
    )
    for item in finished:
        target = row(item["connection_id"], item["h"])
        target.succeeded, target.failed, target.last_succeeded_at = item["ok"], item["bad"], item["last"]
    retried = (
        attempts.annotate(h=TruncHour("started_at", tzinfo=UTC))
        .values("delivery__connection_id", "h")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for item in retried:
        row(item["delivery__connection_id"], item["h"]).retrying = item["n"]
    hours.delete()
    DeliveryHour.objects.bulk_create(rows.values(), batch_size=1000)
    return len(rows)
