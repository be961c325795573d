"""Rule's call budget per connection: a paced ceiling of calls per minute, Rule's own counters read from every
answer, and a circuit breaker that holds the connection while Rule fails. Shared by every worker process through
one database row per connection (RuleBudget); no lock, only conditional UPDATEs.

Pacing (the generic cell rate algorithm): the row holds the earliest moment the next call may start. A call
reserves its slot with a conditional UPDATE on that moment, so slots are one interval (60 / ceiling seconds)
apart whatever the number of workers, and an idle minute saves up no burst. `before_call` sleeps a short wait
(at most RULE_PACING_MAX_SLEEP seconds) in the worker; a longer one is handed back: the caller returns its claimed
rows uncounted, due at the slot time. `take` (the history import) never reserves ahead: 0.0 means "go now".

The default ceiling, 1,200 calls a minute (RULE_CALLS_PER_MINUTE; editable per connection in the admin): Rule
publishes no v2 figure. Its answers were seen carrying `RequestsCount-Allowed: 2000`; read per minute, 1,200 is 60 %
of it and leaves the rest to the merchant's other Rule clients (the shop plugin, imports, Rule's own UI). The
window of that allowance is unconfirmed, so the ceiling is not trusted alone: every answer's
`RequestsCount-Current` / `-Allowed` is read: from 90 % of the allowance used, calls are spaced at the slower of
our interval and Rule's (a minute / allowance), stretched up to five times as it runs out, and once it is used up
nothing goes for a minute. So a smaller allowance than we assume (or other clients of the same account) slows us
before Rule answers 429; with a ceiling equal to Rule's allowance and a window kept full, the pace settles near
91 % of it. A delivery call carries up to 100 subscribers, so the default moves up to 120,000 deliveries a minute.

Rule blocks an account whose share of failing calls passes `X-ErrorPercent-Limit` (49 %). When an answer reports
`X-ErrorPercent-Current` at 60 % of that limit or more, the connection sends nothing for ERROR_HOLD (30 s: no call,
no new failure, Rule's window forgets old ones), then one call reads the share again.

The circuit breaker: BREAKER_FAILURES 5xx answers, 408s or timeouts in a row open it. Open, the connection is
held (`Connection.hold_until`, which every claim and the sweeper already respect) and its deliveries wait
uncounted; after a backoff (15 s, doubling to 5 min) one worker wins a conditional UPDATE and sends a single probe
call. Any answer that is not a failure closes the breaker and releases what waited; a failure reopens it with the
next backoff. So a Rule outage costs a handful of calls, never one failing call per due delivery, and our share of
failing calls stays far from Rule's block threshold.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from integration.models import Connection
from integration.signals import hold_lifted

log = logging.getLogger(__name__)

ATTEMPTS = 5
WINDOW = timedelta(minutes=1)  # "12 used": our calls in the current minute, shown on the connection page
BREAKER_FAILURES = 3  # with FIRST_BACKOFF, an outage's first minute costs at most 5 calls
FIRST_BACKOFF = 15
MAX_BACKOFF = 300
SLOW_FROM = 0.9  # share of Rule's RequestsCount-Allowed from which the pace slows
SLOWEST = 5  # the interval's factor once the allowance is used up
ERROR_HOLD_FROM = 0.6  # share of X-ErrorPercent-Limit from which the connection holds
ERROR_HOLD = timedelta(seconds=30)

GO, PROBE, WAIT, HELD = "go", "probe", "paced", "held"


def default_ceiling() -> int:
    return int(getattr(settings, "RULE_CALLS_PER_MINUTE", 1200))


def max_sleep() -> float:
    """The longest pacing wait slept in the worker; a longer one hands the work back."""
    return float(getattr(settings, "RULE_PACING_MAX_SLEEP", 2.0))


def probe_lease() -> timedelta:
    """How long a probe holds the connection for itself: longer than its call can last."""
    from integration.rule.client import configured_timeout

    return timedelta(seconds=sum(configured_timeout()) + 5)


class RuleBudget(models.Model):
    """A connection's ceiling of Rule calls per minute, its next slot, Rule's counters and its circuit breaker."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="rule_budget")
    calls_per_minute = models.PositiveIntegerField(
        default=default_ceiling,
        help_text="Ceiling of calls to Rule a minute for this connection, paced evenly (one call every "
        "60/ceiling seconds). Lower it if Rule answers 429 or the account has other busy clients.",
    )
    next_slot_at = models.DateTimeField(null=True, blank=True)
    window_started_at = models.DateTimeField(null=True, blank=True)
    window_calls = models.PositiveIntegerField(default=0)
    # Rule's own counters from its latest answer that carried them
    rule_requests_allowed = models.PositiveIntegerField(null=True, blank=True)
    rule_requests_current = models.PositiveIntegerField(null=True, blank=True)
    rule_error_percent_limit = models.FloatField(null=True, blank=True)
    rule_error_percent_current = models.FloatField(null=True, blank=True)
    rule_counts_at = models.DateTimeField(null=True, blank=True)
    # the circuit breaker
    failures_in_row = models.PositiveIntegerField(default=0)
    last_failure = models.CharField(max_length=300, blank=True, default="")
    breaker_opened_at = models.DateTimeField(null=True, blank=True, help_text="Set while Rule is failing.")
    next_probe_at = models.DateTimeField(null=True, blank=True)
    probe_backoff = models.PositiveIntegerField(default=0, help_text="Seconds between probes, while open.")
    probing_until = models.DateTimeField(null=True, blank=True)
    probes = models.PositiveIntegerField(default=0, help_text="Probe calls since the breaker opened.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.connection.name}: {self.calls_per_minute} Rule calls a minute"

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=60 / max(self.calls_per_minute, 1))

    @property
    def is_open(self) -> bool:
        return self.breaker_opened_at is not None

    def calls_this_minute(self, now: datetime | None = None) -> int:
        now = now or timezone.now()
        if self.window_started_at is None or self.window_started_at <= now - WINDOW:
            return 0
        return self.window_calls


@dataclass(frozen=True)
class Decision:
    """What `before_call` decided: GO or PROBE (send now), WAIT or HELD (hand the work back, due at `until`)."""

    kind: str
    until: datetime | None = None
    reason: str = ""
    budget: RuleBudget | None = None  # the row as read before the call (after_call need not read it again)
    # No failure in a row to clear and the breaker closed when the slot was taken: an answer without Rule's
    # counters then writes nothing (after_call). A failure another worker records during this call stays
    # counted until the next answer to a call started after it (an overlap of one call at most).
    clean: bool = False

    @property
    def may_send(self) -> bool:
        return self.kind in (GO, PROBE)


def budget_for(connection: Connection | int) -> RuleBudget:
    connection_id = connection if isinstance(connection, int) else connection.pk
    budget, _ = RuleBudget.objects.get_or_create(connection_id=connection_id)
    return budget


def calls_per_minute(connection: Connection | int) -> int:
    return budget_for(connection).calls_per_minute


# ---------------------------------------------------------------- pacing


def _reserve(budget: RuleBudget, now: datetime, within: float) -> float:
    """Reserve the next slot if it starts within `within` seconds: the seconds until it starts. A larger value
    means nothing was reserved (the slot is that far)."""
    for _ in range(ATTEMPTS):
        previous = budget.next_slot_at
        start = max(previous or now, now)
        wait = (start - now).total_seconds()
        if wait > within:
            return wait
        fresh = budget.window_started_at is None or budget.window_started_at <= now - WINDOW
        window = {"window_started_at": now, "window_calls": 1} if fresh else {"window_calls": budget.window_calls + 1}
        rows = RuleBudget.objects.filter(pk=budget.pk)
        rows = rows.filter(next_slot_at__isnull=True) if previous is None else rows.filter(next_slot_at=previous)
        # Only a reservation writes the window, and it does so on the row it read: the count cannot race.
        if rows.update(next_slot_at=start + budget.interval, updated_at=now, **window):
            return wait
        budget.refresh_from_db()  # another worker took that slot: look again
        now = timezone.now()
    return max(budget.interval.total_seconds(), within + 0.001)


def take(connection: Connection | int, now: datetime | None = None) -> float:
    """Take the next call slot: 0.0 when the call may start now, else the seconds until one is free (nothing was
    taken). While the breaker is open: 0.0 only for the one probe call, else the seconds until the next check
    (the caller reports its call with `after_call`, so a success closes the breaker)."""
    now = now or timezone.now()
    budget = budget_for(connection)
    if budget.is_open:
        if isinstance(connection, int):
            connection = Connection.objects.get(pk=connection)
        decision = _probe_or_hold(connection, budget, now)
        if decision.may_send:
            return 0.0
        return max((decision.until - now).total_seconds(), budget.interval.total_seconds())
    return _reserve(budget, now, within=0.0)


_ceilings: dict[int, int] = {}  # connection id -> its calls_per_minute as this process last read it


def _go_at_once(connection_id: int, now: datetime) -> bool:
    """The usual case in one statement, no read: the ceiling is the one this process last read, the breaker is
    closed with no failure in a row, the minute's count is running and the next slot is free now; then take it
    (as _reserve does). False when any of that is not so: the caller reads the row and decides."""
    ceiling = _ceilings.get(connection_id)
    if ceiling is None:
        return False
    return bool(
        RuleBudget.objects.filter(
            Q(next_slot_at__isnull=True) | Q(next_slot_at__lte=now),
            connection_id=connection_id,
            calls_per_minute=ceiling,
            failures_in_row=0,
            breaker_opened_at__isnull=True,
            window_started_at__gt=now - WINDOW,
        ).update(
            next_slot_at=now + timedelta(seconds=60 / max(ceiling, 1)),
            window_calls=F("window_calls") + 1,
            updated_at=now,
        )
    )


def go_at_once(connection_id: int) -> Decision | None:
    """before_call's usual case alone: GO when a free slot was taken now (one UPDATE, no read, no wait), else None
    (the caller asks before_call). Being one short UPDATE that never sleeps, it may run as the last statement of
    the claim's transaction: the slot is then committed with the claim, one commit fewer per call."""
    return Decision(GO, clean=True) if _go_at_once(connection_id, timezone.now()) else None


def before_call(connection: Connection) -> Decision:
    """Ask before one call to Rule: GO (a short pacing wait already slept), PROBE (the breaker is open and this
    call is its single probe), WAIT or HELD (send nothing; hand the work back uncounted, due at `until`)."""
    now = timezone.now()
    if _go_at_once(connection.pk, now):
        return Decision(GO, clean=True)
    budget = budget_for(connection)
    _ceilings[connection.pk] = budget.calls_per_minute
    if budget.is_open:
        return _probe_or_hold(connection, budget, now)
    wait = _reserve(budget, now, within=max_sleep())
    if wait > max_sleep():
        return Decision(WAIT, now + timedelta(seconds=wait), f"paced at {budget.calls_per_minute} calls a minute")
    if wait > 0:
        time.sleep(wait)
    return Decision(GO, budget=budget, clean=budget.failures_in_row == 0)


# ---------------------------------------------------------------- the breaker


def _probe_or_hold(connection: Connection, budget: RuleBudget, now: datetime) -> Decision:
    probing = budget.probing_until is not None and budget.probing_until > now
    if probing or (budget.next_probe_at and budget.next_probe_at > now):
        return _held(budget, now)
    lease = now + probe_lease()
    won = (
        RuleBudget.objects.filter(pk=budget.pk, breaker_opened_at__isnull=False)
        .filter(Q(next_probe_at__isnull=True) | Q(next_probe_at__lte=now))
        .filter(Q(probing_until__isnull=True) | Q(probing_until__lte=now))
        .update(probing_until=lease, probes=F("probes") + 1, updated_at=now)
    )
    if not won:  # another worker probes (or a probe just closed it: then this call goes at the next look)
        budget.refresh_from_db()
        return _held(budget, now) if budget.is_open else Decision(GO)
    connection.hold(lease)  # the other workers wait at their claim while the probe is out
    return Decision(PROBE, lease, "the one probe call while Rule is failing", budget)


def _held(budget: RuleBudget, now: datetime) -> Decision:
    until = max(budget.next_probe_at or now, budget.probing_until or now)
    return Decision(HELD, until, f"Rule is failing: deliveries wait; next check at {_clock(until)}")


def _clock(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%H:%M:%S}"


def after_call(connection: Connection, decision: Decision | None, response=None, error=None) -> None:
    """Record what one call to Rule came to (after its outcome is recorded; no transaction open): Rule's counters,
    and for the breaker a failure (5xx, 408, no answer) or an answer. `decision` is before_call's (None for an
    operator's call, which was not gated but still tells whether Rule answers)."""
    if error is not None and getattr(error, "kind", "") == "refused":
        return  # nothing was sent (the key is bound to another address): says nothing about Rule
    now = timezone.now()
    code = response.status_code if response is not None else None
    failed = code is None or code >= 500 or code == 408
    counters = response is not None and _carries_counters(response.headers)
    if not failed and not counters and decision is not None and decision.clean:
        return  # nothing to write (see Decision.clean)
    budget = decision.budget if decision is not None and decision.budget is not None else budget_for(connection)
    if response is not None:
        _read_counters(budget, response.headers, now)
    if failed:
        _failed(connection, budget, decision, _failure_text(code, error), now)
    else:
        _answered(connection, budget, decision, code, now)


def _failure_text(code: int | None, error) -> str:
    if code is not None:
        return f"Rule answered {code}"
    if getattr(error, "kind", "") == "timeout":
        return "Rule did not answer in time"
    return "Rule could not be reached"


def _failed(connection: Connection, budget: RuleBudget, decision: Decision | None, why: str, now: datetime) -> None:
    rows = RuleBudget.objects.filter(pk=budget.pk)
    if decision is not None and decision.kind == PROBE:
        backoff = min(max(budget.probe_backoff * 2, FIRST_BACKOFF), MAX_BACKOFF)
        next_probe = now + timedelta(seconds=backoff)
        rows.update(
            probing_until=None,
            next_probe_at=next_probe,
            probe_backoff=backoff,
            failures_in_row=F("failures_in_row") + 1,
            last_failure=why,
            updated_at=now,
        )
        connection.hold(next_probe)
        log.warning("connection %s: probe failed (%s); next check in %s s", connection.name, why, backoff)
        return
    rows.update(failures_in_row=F("failures_in_row") + 1, last_failure=why, updated_at=now)
    budget.refresh_from_db(fields=["failures_in_row", "breaker_opened_at"])
    if budget.failures_in_row < BREAKER_FAILURES or budget.is_open:
        return
    next_probe = now + timedelta(seconds=FIRST_BACKOFF)
    opened = RuleBudget.objects.filter(pk=budget.pk, breaker_opened_at__isnull=True).update(
        breaker_opened_at=now, next_probe_at=next_probe, probe_backoff=FIRST_BACKOFF, probes=0, updated_at=now
    )
    if opened:
        connection.hold(next_probe)
        log.warning(
            "connection %s: Rule failed %s calls in a row (%s); holding deliveries, next check in %s s",
            connection.name,
            budget.failures_in_row,
            why,
            FIRST_BACKOFF,
        )


def _answered(connection: Connection, budget: RuleBudget, decision: Decision | None, code: int, now: datetime):
    """Rule answered: the failures in a row start again from 0 and an open breaker closes (one UPDATE). Skipped
    when the row read before this call had nothing to clear: a failure another worker records during the call
    then stays counted until the next answer whose call started after it (an overlap of one call, at most)."""
    if decision is not None and decision.clean:
        return  # nothing to clear (see Decision.clean)
    changed = (
        RuleBudget.objects.filter(pk=budget.pk)
        .filter(Q(failures_in_row__gt=0) | Q(breaker_opened_at__isnull=False))
        .update(
            breaker_opened_at=None,
            next_probe_at=None,
            probing_until=None,
            probe_backoff=0,
            failures_in_row=0,
            updated_at=now,
        )
    )
    # (A breaker another worker opened after this call's look closes too, and its short hold simply runs out.)
    if not changed or not (budget.is_open or (decision is not None and decision.kind == PROBE)):
        return
    log.info("connection %s: Rule answers again (%s); sending what waited", connection.name, code)
    if code == 429:
        return  # Rule is up but limiting: its Retry-After hold stands, and the sweeper sends after it
    # Lift the breaker's hold (not a longer one a 429 set) and send what it held back.
    held_until = max(budget.next_probe_at or now, budget.probing_until or now, now + probe_lease())
    with transaction.atomic():
        lifted = Connection.objects.filter(pk=connection.pk, hold_until__lte=held_until).update(hold_until=None)
        if lifted:
            connection.hold_until = None
            hold_lifted.send(sender=Connection, connection=connection, old_hold=held_until)


# ---------------------------------------------------------------- Rule's counters


def _number(headers, name: str) -> float | None:
    value = headers.get(name)
    try:
        return float(str(value).strip().rstrip("%")) if value not in (None, "") else None
    except ValueError:
        return None


def _carries_counters(headers) -> bool:
    return _number(headers, "RequestsCount-Allowed") is not None or _number(headers, "X-ErrorPercent-Limit") is not None


def _read_counters(budget: RuleBudget, headers, now: datetime) -> None:
    """Store Rule's RequestsCount-* / X-ErrorPercent-* (when sent) and push the next slot out when they say so."""
    allowed = _number(headers, "RequestsCount-Allowed")
    current = _number(headers, "RequestsCount-Current")
    limit = _number(headers, "X-ErrorPercent-Limit")
    errors = _number(headers, "X-ErrorPercent-Current")
    if allowed is None and limit is None:
        return
    push = slow_down(budget.interval, allowed, current, limit, errors)
    fields = {
        "rule_requests_allowed": int(allowed) if allowed is not None else None,
        "rule_requests_current": int(current) if current is not None else None,
        "rule_error_percent_limit": limit,
        "rule_error_percent_current": errors,
        "rule_counts_at": now,
        "updated_at": now,
    }
    RuleBudget.objects.filter(pk=budget.pk).update(**fields)
    if push:
        until = now + push
        RuleBudget.objects.filter(pk=budget.pk).filter(Q(next_slot_at__isnull=True) | Q(next_slot_at__lt=until)).update(
            next_slot_at=until
        )


def slow_down(
    interval: timedelta, allowed: float | None, current: float | None, limit: float | None, errors: float | None
) -> timedelta | None:
    """How far from now the next call must wait given Rule's counters, or None for the usual pace.

    - failing share at ERROR_HOLD_FROM of Rule's limit or more: ERROR_HOLD, no call at all;
    - allowance used up: a full minute (the shortest window it can be counted in, as far as we know);
    - from SLOW_FROM of it: the slower of our interval and Rule's (a minute / allowance), stretched up to
      SLOWEST times as the allowance runs out."""
    if limit and errors is not None and errors >= ERROR_HOLD_FROM * limit:
        return ERROR_HOLD
    if allowed and current is not None and current >= SLOW_FROM * allowed:
        if current >= allowed:
            return WINDOW
        stretch = 1 + (SLOWEST - 1) * (current / allowed - SLOW_FROM) / (1 - SLOW_FROM)
        return max(interval, WINDOW / allowed) * stretch
    return None


# ---------------------------------------------------------------- what the pages show


@dataclass(frozen=True)
class State:
    """The pace in a merchant's words, for the connection page (the breaker shows in connection_health)."""

    pace: str
    rule_counts: str


def state(connection: Connection, now: datetime | None = None) -> State:
    now = now or timezone.now()
    budget = RuleBudget.objects.filter(connection_id=connection.pk).first() or RuleBudget(connection=connection)
    pace = f"{budget.calls_per_minute:,} calls a minute, {budget.calls_this_minute(now):,} used in the last minute"
    parts = []
    if budget.rule_counts_at and budget.rule_counts_at > now - timedelta(minutes=10):
        if budget.rule_requests_allowed:
            parts.append(f"{budget.rule_requests_current or 0:,} of {budget.rule_requests_allowed:,} requests used")
        if budget.rule_error_percent_limit:
            parts.append(
                f"{budget.rule_error_percent_current or 0:g} % of calls failing (Rule blocks the account at "
                f"{budget.rule_error_percent_limit:g} %)"
            )
    return State(pace, "Rule reports " + "; ".join(parts) + "." if parts else "")


def check_now(connection: Connection) -> bool:
    """The merchant's "Check Rule now": the breaker's next check is due at once (False when it is not open)."""
    now = timezone.now()
    budget = budget_for(connection)
    if not budget.is_open:
        return False
    breaker_hold = max(budget.next_probe_at or now, budget.probing_until or now)
    RuleBudget.objects.filter(pk=budget.pk).update(next_probe_at=now, updated_at=now)
    with transaction.atomic():
        # the breaker's hold ends now (a longer one a 429 set stays), and what it held is enqueued
        if Connection.objects.filter(pk=connection.pk, hold_until__lte=breaker_hold).update(hold_until=None):
            connection.hold_until = None
            hold_lifted.send(sender=Connection, connection=connection, old_hold=breaker_hold)
    return True
