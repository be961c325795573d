"""Health: of the service (/healthz: database, broker, due backlogs) and of each connection (the console).

`connection_health(conn)` is the one place that decides a connection's state, the reason shown beside it and the
one action that fixes it; the home page, the connection page's banner and the alerts all read it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Count
from django.utils import timezone

from integration.models import Connection, Delivery, InboundEvent, RejectedCall, RuleBudget
from integration.ops import delivery_stats

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------------
# The service: /healthz


def check_database() -> str:
    """ "ok", or why the default database cannot answer."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except DatabaseError as exc:
        return f"down: {exc.__class__.__name__}"


def check_broker() -> str:
    """ "ok", or why the django-q2 broker cannot answer (the ORM broker is the database; Redis gets a PING)."""
    redis_url = settings.Q_CLUSTER.get("redis")
    if not redis_url:
        return check_database()
    import redis

    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2).ping()
        return "ok"
    except redis.RedisError as exc:
        # The class name only: a Redis URL can carry a password.
        return f"down: {exc.__class__.__name__}"


def due_backlog() -> int:
    """Deliveries the sweeper sends now: due, of connections that may send (Delivery.objects.backlog)."""
    return Delivery.objects.backlog().count()


def health_report() -> tuple[bool, dict]:
    """(healthy, report) for /healthz: 503 only when the database or the broker is down."""
    report: dict = {"database": check_database(), "broker": check_broker()}
    if report["database"] == "ok":
        try:
            report["due_backlog"] = due_backlog()
            # Inbound events not yet turned into deliveries: due now, and waiting for a retry (Centra down).
            now = timezone.now()
            report["inbound_due"] = InboundEvent.objects.due(now).count()
            report["inbound_retrying"] = InboundEvent.objects.retrying(now).count()
            # The service is up while a connection is paused; a monitor still wants to see it.
            report["paused_connections"] = Connection.objects.filter(status=Connection.Status.PAUSED).count()
        except DatabaseError as exc:
            report["database"] = f"down: {exc.__class__.__name__}"
    healthy = report["database"] == "ok" and report["broker"] == "ok"
    if not healthy:
        log.warning("health check failed: %s", report)
    return healthy, report


# ---------------------------------------------------------------------------------------------------------------
# A connection: state, reason, the one action that fixes it

HEALTHY = "healthy"
PAUSED = "paused"
NO_SECRET = "no_secret"
RULE_DOWN = "rule_down"
HELD = "held"
FAILING = "failing"
CENTRA_ERROR = "centra_error"
QUIET = "quiet"

# The order decides which state a connection with several problems shows: what stops the most comes first.
STATES = (PAUSED, NO_SECRET, RULE_DOWN, HELD, FAILING, CENTRA_ERROR, QUIET, HEALTHY)
LABELS = {
    HEALTHY: "Healthy",
    PAUSED: "Paused",
    NO_SECRET: "No signing secret",
    RULE_DOWN: "Rule is failing",
    HELD: "Held by Rule",
    FAILING: "Failing",
    CENTRA_ERROR: "Centra error",
    QUIET: "No traffic",
}
# How serious, for the badge's colour: ok (green), warn (amber), bad (red), idle (grey).
TONES = {
    HEALTHY: "ok",
    PAUSED: "bad",
    NO_SECRET: "bad",
    RULE_DOWN: "bad",
    HELD: "warn",
    FAILING: "bad",
    CENTRA_ERROR: "warn",
    QUIET: "idle",
}
# States that open an alert incident (integration.ops.alerts); the incident ends when none of them holds.
ALERT_STATES = frozenset({PAUSED, RULE_DOWN, FAILING})

# Actions: a stable code (the pages map it to their button) and what it says.
RESUME = "resume"
VERIFY_RULE_KEY = "verify_rule_key"
SET_SIGNING_SECRET = "set_signing_secret"
VERIFY_CENTRA_TOKEN = "verify_centra_token"
VIEW_FAILED = "view_failed"
CHECK_CENTRA_WEBHOOK = "check_centra_webhook"
CHECK_RULE = "check_rule"
ACTION_LABELS = {
    RESUME: "Resume",
    VERIFY_RULE_KEY: "Verify the Rule API key, then Resume",
    SET_SIGNING_SECRET: "Generate a signing secret",
    VERIFY_CENTRA_TOKEN: "Verify the Centra API token",
    VIEW_FAILED: "See the failed deliveries",
    CHECK_CENTRA_WEBHOOK: "Check Centra's webhook plugin",
    CHECK_RULE: "Check Rule now",
}

# What Rule's 401/403 pause reason starts with (integration.delivery.engine writes it).
KEY_REFUSED = "Rule refused the API key"

FAILING_WINDOW = timedelta(hours=1)
# No traffic: silent for longer than QUIET_FACTOR times the usual gap between events, and at least QUIET_MIN.
# The usual gap is the average over the last 7 days, or over the latest USUAL_SAMPLE events when there are more
# (two bounded index reads, whatever the traffic).
USUAL_WINDOW = timedelta(days=7)
USUAL_SAMPLE = 1000
QUIET_FACTOR = 3
QUIET_MIN = timedelta(hours=2)


def failure_threshold() -> int:
    """Failed or retried attempts in the last hour that make a connection "failing" (and alert)."""
    return settings.ALERT_FAILURES_PER_HOUR


@dataclass(frozen=True)
class Health:
    """A connection's state (one of STATES), why, the action that fixes it (a code in ACTION_LABELS or ""),
    since when (None: unknown or not applicable) and, for a hold, until when."""

    state: str
    reason: str
    action: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @property
    def label(self) -> str:
        return LABELS[self.state]

    @property
    def tone(self) -> str:
        return TONES[self.state]

    @property
    def action_label(self) -> str:
        return ACTION_LABELS.get(self.action, "")

    @property
    def ok(self) -> bool:
        return self.state == HEALTHY

    @property
    def alerting(self) -> bool:
        return self.state in ALERT_STATES


@dataclass(frozen=True)
class Facts:
    """What a connection's health is decided from, besides the connection row (loaded in bulk by load_facts)."""

    failures_last_hour: int = 0
    failures_since: datetime | None = None
    last_event_at: datetime | None = None
    usual_gap: timedelta | None = None  # the average time between events lately (None: fewer than two)
    rule_down: RuleBudget | None = None  # the connection's budget row while its breaker is open (Rule failing)


def load_facts(connections: list[Connection], now: datetime | None = None) -> dict[int, Facts]:
    """The facts of several connections: one query on the hourly counts, two small index reads per connection."""
    now = now or timezone.now()
    ids = [c.pk for c in connections]
    window_start = delivery_stats.hour_of(now - FAILING_WINDOW)
    failures = delivery_stats.failures_since(ids, window_start)
    open_breakers = {
        b.connection_id: b for b in RuleBudget.objects.filter(connection_id__in=ids).exclude(breaker_opened_at=None)
    }
    found = {}
    for conn in connections:
        events = InboundEvent.objects.filter(connection_id=conn.pk)
        last = events.order_by("-received_at").values_list("received_at", flat=True).first()
        gap = None
        if last is not None and last >= now - USUAL_WINDOW:
            recent = events.filter(received_at__gte=now - USUAL_WINDOW).order_by("-received_at")
            count = recent[:USUAL_SAMPLE].count()
            if count >= 2:
                oldest = recent.values_list("received_at", flat=True)[count - 1]
                gap = (last - oldest) / (count - 1)
        found[conn.pk] = Facts(
            failures_last_hour=failures.get(conn.pk, 0),
            failures_since=window_start,
            last_event_at=last,
            usual_gap=gap,
            rule_down=open_breakers.get(conn.pk),
        )
    return found


def connection_health(conn: Connection, facts: Facts | None = None, now: datetime | None = None) -> Health:
    """The connection's state, the reason and the action that fixes it (the first of STATES that holds)."""
    now = now or timezone.now()
    if facts is None:
        facts = load_facts([conn], now)[conn.pk]
    if conn.is_paused:
        reason = conn.paused_reason or "paused"
        action = VERIFY_RULE_KEY if reason.startswith(KEY_REFUSED) else RESUME
        return Health(PAUSED, f"Deliveries wait until it is resumed. {reason}", action, conn.paused_at)
    if not conn.signing_secret_list:
        return Health(
            NO_SECRET,
            "No signing secret: every call from Centra and the storefront is refused (401).",
            SET_SIGNING_SECRET,
            None,
        )
    if facts.rule_down is not None:
        breaker = facts.rule_down
        checking = breaker.probing_until is not None and breaker.probing_until > now
        next_check = max(breaker.next_probe_at or now, breaker.probing_until or now)
        when = "Checking now" if checking else f"Next check at {timezone.localtime(next_check):%H:%M:%S}"
        return Health(
            RULE_DOWN,
            f"{breaker.last_failure or 'Rule failed'}, {breaker.failures_in_row} calls in a row: deliveries are held, "
            "nothing is lost. "
            f"{when}; they go out by themselves once Rule answers.",
            CHECK_RULE,
            breaker.breaker_opened_at,
        )
    if conn.hold_until and conn.hold_until > now:
        return Health(
            HELD,
            "Rule asked to slow down (429): nothing is sent until then; it resumes by itself.",
            "",
            None,
            conn.hold_until,
        )
    threshold = failure_threshold()
    if facts.failures_last_hour >= threshold:
        return Health(
            FAILING,
            f"{facts.failures_last_hour} failed or retried attempts since "
            f"{timezone.localtime(facts.failures_since):%H:%M} (alert threshold {threshold} an hour).",
            VIEW_FAILED,
            facts.failures_since,
        )
    centra_error = conn.centra_last_error or conn.last_reconcile_error
    if centra_error:
        return Health(CENTRA_ERROR, f"Centra: {centra_error}", VERIFY_CENTRA_TOKEN, conn.last_reconcile_at)
    quiet = _quiet(facts, now)
    if quiet:
        return Health(QUIET, quiet, CHECK_CENTRA_WEBHOOK, facts.last_event_at)
    return Health(HEALTHY, "Receiving and delivering.", "", None)


def _quiet(facts: Facts, now: datetime) -> str:
    """Why the connection counts as silent ("" when it does not)."""
    if facts.last_event_at is None:
        return "No event received yet."
    silent = now - facts.last_event_at
    gap = facts.usual_gap
    if gap is None:  # one event in the last week, or none: only a week of silence is unusual
        return f"No event for {human_duration(silent)}." if silent > USUAL_WINDOW else ""
    if silent > max(QUIET_MIN, QUIET_FACTOR * gap):
        return f"No event for {human_duration(silent)} (usually one every {human_duration(gap)})."
    return ""


def human_duration(span: timedelta) -> str:
    """1 d 4 h, 3 h 12 min, 7 min, 40 s."""
    seconds = int(span.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


# ---------------------------------------------------------------------------------------------------------------
# The home page: every connection at a glance


@dataclass
class Overview:
    """One connection's row on the home page."""

    connection: Connection
    health: Health
    last_event_at: datetime | None
    last_success_at: datetime | None
    backlog_due: int
    failed_24h: int
    retried_24h: int
    rejected_24h: int
    day: delivery_stats.Series
    week: delivery_stats.Series
    rejected_capped: bool = field(default=False)


def overview(now: datetime | None = None) -> list[Overview]:
    """Every connection's health, activity and charts, from the hourly counts and a few index reads."""
    now = now or timezone.now()
    connections = list(Connection.objects.order_by("name"))
    ids = [c.pk for c in connections]
    facts = load_facts(connections, now)
    week = delivery_stats.hourly_series(ids, 24 * 7, now)
    day = {pk: series.last(24) for pk, series in week.items()}
    last_success = delivery_stats.last_succeeded(ids)
    backlog = dict(
        Delivery.objects.due(now)
        .filter(connection_id__in=ids)
        .values("connection_id")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("connection_id", "n")
    )
    rejected = rejected_counts(ids, now - timedelta(hours=24))
    rows = []
    for conn in connections:
        totals = day[conn.pk].totals()
        rows.append(
            Overview(
                connection=conn,
                health=connection_health(conn, facts[conn.pk], now),
                last_event_at=facts[conn.pk].last_event_at,
                last_success_at=last_success.get(conn.pk),
                backlog_due=backlog.get(conn.pk, 0),
                failed_24h=totals[delivery_stats.FAILED],
                retried_24h=totals[delivery_stats.RETRYING],
                rejected_24h=rejected.get(conn.pk, 0),
                rejected_capped=rejected.get(conn.pk, 0) >= RejectedCall.KEEP,
                day=day[conn.pk],
                week=week[conn.pk],
            )
        )
    return rows


def rejected_counts(connection_ids: list[int], since: datetime) -> dict[int, int]:
    """Rejected inbound calls since `since` per connection (at most RejectedCall.KEEP are kept)."""
    rows = (
        RejectedCall.objects.filter(connection_id__in=connection_ids, at__gte=since)
        .values("connection_id")
        .annotate(n=Count("pk"))
        .order_by()
        .values_list("connection_id", "n")
    )
    return dict(rows)


def unknown_token_count(since: datetime) -> int:
    """Calls to a token no connection has, since `since` (at most RejectedCall.KEEP are kept)."""
    return RejectedCall.objects.filter(connection__isnull=True, at__gte=since).count()
