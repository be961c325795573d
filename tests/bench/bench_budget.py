"""Rule's budget: pacing under a calls-per-minute ceiling, and a Rule outage held by the circuit breaker.

Both parts run one qcluster (2 workers, Redis broker, PostgreSQL) against the fake Rule (`manage.py fakerule`,
its own process, 20 ms) for one connection; deliveries are made with `create_delivery` (announced on commit, as
processing makes them), each about its own shopper, all in one envelope (one flow, tags and automation mode), so
coalescing may take up to 100 a call.

(a) Pacing: the fake enforces 600 calls a minute (429 past it) and the connection's ceiling is 600; N deliveries
    (30,000; --quick 6,000) are due when the cluster starts. Figures: the 429s provoked (target none), and the
    drain, from the fake's first call to its last, against what the ceiling allows for that many calls
    ((calls - 1) x 60 / 600 s; target within 10 %). Every delivery must succeed, each subscriber accepted once.
(b) Outage: the fake answers 503 to every API call for 5 minutes (--quick: 1 minute) while deliveries are due
    (500 at its start, then one a second). Figures: the calls that reach the fake per minute of outage (the
    failures that open the breaker, then its probes; target a handful: at most 5 a minute over the outage, each
    minute's count in the notes), and after it ends, that everything is delivered exactly once
    (the fake's accepted subscribers, in all and distinct, against the deliveries), with the time it took.
Run alone: `.venv/bin/python tests/bench/bench_budget.py [--quick] [--part pacing|outage]`.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import common
from tests.bench.bench_backlog import clear_fake, drained, fake_control, fake_stats, wait_until

DBNAME = common.db_name("bench_budget")
QUEUE = common.db_name("bench-budget")  # the queue too: BENCH_DB_SUFFIX keeps it apart
WORKERS = 2
LATENCY_MS = 20
RULE_KEY = "bench-rule-key-0123456789"
CEILING = 600  # calls a minute, the fake's and the connection's
PROBES_PER_MINUTE = 5  # "a handful"
BUDGET_HEADER = "RequestsCount-Allowed"


def request_body(n: int) -> dict:
    """An OrderShipped call for one shopper, as the mapping makes it (single subscriber, the flow's envelope)."""
    return {
        "update_on_duplicate": True,
        "automation": "reset",
        "sync_subscribers": True,
        "tags": ["OrderShipped"],
        "subscribers": {
            "email": f"budget{n}@example.com",
            "language": "sv",
            "fields": [
                {"key": "Order.Number", "value": str(100000 + n)},
                {"key": "Order.Currency", "value": "SEK"},
                {"key": "Order.Shipped", "value": "2026-11-30 08:15:00", "type": "datetime"},
            ],
        },
    }


def add_deliveries(connection, numbers: range) -> None:
    from django.db import transaction

    from integration.delivery.engine import create_delivery

    for start in range(numbers.start, numbers.stop, 500):
        with transaction.atomic():
            for n in range(start, min(start + 500, numbers.stop)):
                create_delivery(
                    connection=connection,
                    event="OrderShipped",
                    body=request_body(n),
                    email=f"budget{n}@example.com",
                    idempotency_key=f"OrderShipped:shipment:{n}",
                )


def budget_header(port: int) -> str | None:
    """The fake's RequestsCount-Allowed on an API answer (None: it enforces no budget)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/tags?limit=1", headers={"Authorization": f"Bearer {RULE_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.headers.get(BUDGET_HEADER)


def start_outage(port: int, seconds: float) -> bool:
    """Put the fake in its outage mode for `seconds`; False when it has none (a call is not answered 503)."""
    fake_control(port, outage_seconds=seconds)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v2/tags?limit=1", headers={"Authorization": f"Bearer {RULE_KEY}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30):
            return False
    except urllib.error.HTTPError as answer:
        return answer.code == 503


def fresh(part: str) -> dict:
    env = common.bench_env(DBNAME, redis=True, queue=QUEUE, Q_WORKERS=str(WORKERS), RULE_CALLS_PER_MINUTE=str(CEILING))
    common.progress(f"budget {part}: fresh database {DBNAME}")
    common.recreate_database(DBNAME)
    common.migrate(env)
    common.clear_queue(QUEUE)
    common.setup_django(env)
    return env


def make_connection(port: int):
    from integration.models import Connection
    from integration.rule.budget import budget_for

    connection = Connection.objects.create_with_flows(
        name="bench", rule_api_key=RULE_KEY, rule_api_url=f"http://127.0.0.1:{port}/api/v2"
    )
    budget = budget_for(connection)
    budget.calls_per_minute = CEILING
    budget.save()
    return connection


def pacing(count: int) -> tuple[list[dict], list[str], dict]:
    env = fresh("pacing")
    from django.db import connections

    from integration.models import Delivery

    notes: list[str] = []
    port = common.free_port()
    with common.start_fake_rule(env, port, RULE_KEY, LATENCY_MS, name="budget-fakerule-pacing"):
        # The fake's budget: fails loudly below if the fake does not take the control.
        fake_control(port, calls_per_minute=CEILING)
        allowed = budget_header(port)
        enforced = allowed is not None
        if not enforced:
            notes.append(
                f"problem: the fake Rule answers without {BUDGET_HEADER} after the calls_per_minute control: it "
                "enforces no budget, so 'no 429' proves nothing here"
            )
        connection = make_connection(port)
        clock = time.monotonic()
        add_deliveries(connection, range(count))
        common.progress(f"budget pacing: {count} deliveries due in {time.monotonic() - clock:.0f} s; qcluster starts")
        connections.close_all()
        clear_fake(port)
        started = time.monotonic()
        # Far more than the ceiling needs for one call per delivery would be a missed target, not a wait.
        timeout = max(180.0, 3 * count / 100 * 60 / CEILING + 120)
        with common.child("budget-qcluster-pacing", [common.PYTHON, "manage.py", "qcluster"], env):
            finished, state = wait_until(drained, started + timeout, "budget pacing")
            wall = time.monotonic() - started
        stats = fake_stats(port)
    succeeded = state["deliveries"].get(Delivery.Status.SUCCEEDED, 0)
    times = sorted(t for t, _ in stats["times"])
    calls = len(times)
    drain = times[-1] - times[0] if calls > 1 else 0.0
    allows = (calls - 1) * 60 / CEILING if calls > 1 else 0.0
    rejected = stats["statuses"].get("429", 0)
    exactly_once = stats["subscribers_accepted"] == stats["subscribers_distinct"] == succeeded == count
    figures = [
        common.figure(
            f"429 answers provoked ({CEILING} calls a minute, {count:,} deliveries due)",
            rejected,
            "answers",
            target="0, with the fake enforcing the budget",
            ok=rejected == 0 and enforced,
        ),
        common.figure(
            f"drain time, the fake's first call to its last ({calls:,} calls)",
            drain,
            "s",
            baseline=f"what the ceiling allows: (calls - 1) x 60 / {CEILING}",
            baseline_value=allows,
            target="within 10 % of baseline (paced, not burst), all delivered exactly once",
            ok=calls > 1 and 0.9 * allows <= drain <= 1.1 * allows and finished and exactly_once,
        ),
    ]
    notes += [
        f"pacing: {succeeded:,} of {count:,} succeeded, {wall:.1f} s wall (qcluster start-up included), "
        f"{count / calls if calls else 0:.1f} deliveries a call; calls {stats['endpoints']}, answers "
        f"{stats['statuses']}; the fake accepted {stats['subscribers_accepted']:,} subscribers "
        f"({stats['subscribers_distinct']:,} distinct); fake's {BUDGET_HEADER}: {allowed}; final {state}",
    ]
    connections.close_all()
    return figures, notes, {"pacing_deliveries": count, "ceiling_per_minute": CEILING}


def outage(seconds: float, initial: int) -> tuple[list[dict], list[str], dict]:
    env = fresh("outage")
    from django.db import connections

    from integration.models import Delivery

    notes: list[str] = []

    port = common.free_port()
    with common.start_fake_rule(env, port, RULE_KEY, LATENCY_MS, name="budget-fakerule-outage"):
        connection = make_connection(port)
        connections.close_all()
        with common.child("budget-qcluster-outage", [common.PYTHON, "manage.py", "qcluster"], env):
            time.sleep(3)  # the cluster is up before the outage starts
            # The outage: every API call answers 503 until it ends (the fake's outage mode; without one, its
            # failure control, cleared when the outage ends, with a note saying so).
            emulated = not start_outage(port, seconds)
            if emulated:
                notes.append("the fake Rule has no outage mode (outage_seconds): emulated with its failure control")
                fake_control(port, status=503, times=10**9)
            clear_fake(port)
            outage_started = time.time()
            add_deliveries(connection, range(initial))
            made = initial
            common.progress(f"budget outage: 503 for {seconds:.0f} s, {initial} deliveries due, then one a second")
            while time.time() - outage_started < seconds:
                time.sleep(1.0)
                add_deliveries(connection, range(made, made + 1))
                made += 1
            fake_control(port, clear_failures=True, **({} if emulated else {"outage_seconds": 0}))
            outage_ended = time.time()
            common.progress(f"budget outage: over, {made} deliveries made; waiting for them")
            finished, state = wait_until(drained, time.monotonic() + max(180.0, 2 * seconds), "budget outage")
            recovered = time.time() - outage_ended
        stats = fake_stats(port)
    succeeded = state["deliveries"].get(Delivery.Status.SUCCEEDED, 0)
    during = [(t, s) for t, s in stats["times"] if outage_started <= t < outage_ended]
    per_minute = len(during) / (seconds / 60)
    # Per minute of outage: the first holds the failures that open the breaker, the others only its probes.
    minutes = [sum(1 for t, _ in during if m <= t - outage_started < m + 60) for m in range(0, int(seconds), 60)]
    failed_share = stats["statuses"].get("503", 0) / stats["calls"] if stats["calls"] else 0.0
    exactly_once = stats["subscribers_accepted"] == stats["subscribers_distinct"] == succeeded == made
    figures = [
        common.figure(
            f"calls reaching Rule per minute of a {seconds:.0f} s 503 outage (probes)",
            per_minute,
            "calls/min",
            baseline="deliveries made per minute of outage (each a failing call without a breaker)",
            baseline_value=made / (seconds / 60),
            target=f"<= {PROBES_PER_MINUTE} a minute",
            ok=per_minute <= PROBES_PER_MINUTE,
        ),
        common.figure(
            "deliveries succeeded after the outage / deliveries made (exactly once)",
            succeeded / made if made else 0.0,
            "",
            target="= 1, each subscriber accepted once",
            ok=finished and exactly_once,
        ),
        common.figure("time from the outage's end to the last delivery", recovered, "s"),
    ]
    notes += [
        f"outage: {len(during)} calls in {seconds:.0f} s of 503 (minute by minute: {minutes}); "
        f"{succeeded:,} of {made:,} deliveries succeeded {recovered:.1f} s after it ended; calls "
        f"{stats['endpoints']}, answers {stats['statuses']} (failing share of all calls {failed_share:.0%}); the "
        f"fake accepted {stats['subscribers_accepted']:,} subscribers ({stats['subscribers_distinct']:,} distinct); "
        f"final {state}",
    ]
    connections.close_all()
    return figures, notes, {"outage_seconds": seconds, "outage_initial_deliveries": initial}


def main() -> None:
    args = common.parse_args(
        __doc__,
        [
            ("--part", {"choices": ["pacing", "outage"], "help": "run only one part"}),
            ("--deliveries", {"type": int, "help": "pacing: deliveries due (default 30,000; --quick 6,000)"}),
            ("--outage-seconds", {"type": float, "help": "outage length (default 300; --quick 60)"}),
        ],
    )
    figures, notes, params = [], [], {"workers": WORKERS, "rule_latency_ms": LATENCY_MS, "database": "postgresql"}
    if args.part in (None, "pacing"):
        f, n, p = pacing(args.deliveries or (6_000 if args.quick else 30_000))
        figures, notes, params = figures + f, notes + n, {**params, **p}
    if args.part in (None, "outage"):
        f, n, p = outage(args.outage_seconds or (60.0 if args.quick else 300.0), 100 if args.quick else 500)
        figures, notes, params = figures + f, notes + n, {**params, **p}
    common.emit("budget", args.quick, figures, params, notes)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
