"""Single deliveries: the rate of one qcluster (2 workers) when nothing can be coalesced, against its ideal.

N pending deliveries are made with integration.delivery.engine.create_delivery (announced on commit, as
processing does), each with a tag of its own: no two share an envelope (connection, flow, tags, automation), so
every one must be its own Rule call (the fake's count proves it). The fake Rule answers in 20 ms in its own
process; Redis broker, PostgreSQL. The rate is N over the time from the first attempt's start to the last
delivery's finish (the cluster's start-up not counted); the ideal is workers / latency (100/s). Target (issue 12):
at least 0.8 of the ideal.
Run alone: `.venv/bin/python tests/bench/bench_single.py [--quick | --deliveries N]`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import common
from tests.bench.bench_backlog import counts, drained, fake_stats, wait_until

DBNAME = common.db_name("bench_single")
QUEUE = common.db_name("bench-single")  # the queue too: BENCH_DB_SUFFIX keeps it apart
WORKERS = 2
LATENCY_MS = 20
RULE_KEY = "bench-rule-key-0123456789"


def request_body(n: int) -> dict:
    """One subscriber with a tag of its own: no other delivery can share its call."""
    return {
        "update_on_duplicate": True,
        "automation": "reset",
        "sync_subscribers": True,
        "tags": ["OrderShipped", f"Single{n}"],
        "subscribers": {
            "email": f"single{n}@example.com",
            "fields": [{"key": "Order.Number", "value": str(100000 + n)}, {"key": "Order.Currency", "value": "SEK"}],
        },
    }


def main() -> None:
    args = common.parse_args(__doc__, [("--deliveries", {"type": int, "help": "default 2,000; --quick 300"})])
    count = args.deliveries or (300 if args.quick else 2_000)
    env = common.bench_env(DBNAME, redis=True, queue=QUEUE, Q_WORKERS=str(WORKERS), RULE_CALLS_PER_MINUTE="60000")
    common.progress(f"single: fresh database {DBNAME}")
    common.recreate_database(DBNAME)
    common.migrate(env)
    common.clear_queue(QUEUE)
    common.setup_django(env)
    from django.db import connections, transaction
    from django.db.models import Max, Min

    from integration.delivery.engine import create_delivery
    from integration.models import Connection, Delivery, DeliveryAttempt

    port = common.free_port()
    with common.start_fake_rule(env, port, RULE_KEY, LATENCY_MS, name="single-fakerule"):
        connection = Connection.objects.create_with_flows(
            name="bench", rule_api_key=RULE_KEY, rule_api_url=f"http://127.0.0.1:{port}/api/v2"
        )
        for start in range(0, count, 500):
            with transaction.atomic():
                for n in range(start, min(start + 500, count)):
                    create_delivery(
                        connection=connection,
                        event="OrderShipped",
                        body=request_body(n),
                        email=f"single{n}@example.com",
                        idempotency_key=f"OrderShipped:shipment:{n}",
                    )
        connections.close_all()
        common.progress(f"single: {count} deliveries, each its own envelope; qcluster starts")
        started = time.monotonic()
        with common.child("single-qcluster", [common.PYTHON, "manage.py", "qcluster"], env):
            finished, state = wait_until(drained, started + max(120.0, count / 5), "single", every=0.2)
            wall = time.monotonic() - started
        stats = fake_stats(port)
    first = DeliveryAttempt.objects.aggregate(t=Min("started_at"))["t"]
    last = Delivery.objects.aggregate(t=Max("finished_at"))["t"]
    span = (last - first).total_seconds() if first and last else float("nan")
    succeeded = state["deliveries"].get(Delivery.Status.SUCCEEDED, 0)
    rate = succeeded / span if span else 0.0
    ideal = WORKERS / (LATENCY_MS / 1000)
    alone = stats["calls"] == stats["subscribers_accepted"] == stats["subscribers_distinct"] == count
    common.progress(f"single: {succeeded}/{count} in {span:.1f} s = {rate:.1f}/s; fake: {stats['endpoints']}")
    figures = [
        common.figure(
            f"deliveries per second, each its own Rule call ({count:,} deliveries)",
            rate,
            "deliveries/s",
            baseline=f"ideal: {WORKERS} workers / {LATENCY_MS} ms",
            baseline_value=ideal,
            target=">= 0.8 x ideal, one call each, all succeeded",
            ok=rate >= 0.8 * ideal and alone and finished and succeeded == count,
        ),
    ]
    notes = [
        f"{succeeded:,} of {count:,} succeeded, {span:.2f} s first attempt to last finish, {wall:.2f} s wall "
        f"including qcluster start-up; final state {counts()['deliveries']}",
        f"the fake Rule saw {stats['calls']:,} calls {stats['endpoints']}, answers {stats['statuses']}, "
        f"{stats['subscribers_accepted']:,} subscribers ({stats['subscribers_distinct']:,} distinct)",
    ]
    if not alone:
        notes.append("problem: not one Rule call per delivery (coalesced, repeated or lost): the figure is not valid")
    params = {"deliveries": count, "workers": WORKERS, "rule_latency_ms": LATENCY_MS, "broker": "redis"}
    common.emit("single", args.quick, figures, params, notes)


if __name__ == "__main__":
    main()
