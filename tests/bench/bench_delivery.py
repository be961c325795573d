"""Delivery: deliveries per second of one qcluster (2 workers) to the fake Rule, per broker (Redis, ORM).

At 20 ms of Rule latency the ideal is workers / latency (100/s) when every delivery is its own call ("alone":
each delivery has its own tag, so nothing can be coalesced); target >= 0.8 of it. At 0 ms the rate gives the
cost of one delivery (worker time per delivery, target <= 5 ms). "Coalesced": the same deliveries with one tag,
so waiting ones share calls of up to 100 subscribers (no longer bounded by one call per delivery).
N pending deliveries are made with integration.delivery.engine.create_delivery (enqueued on commit), then
qcluster starts and the clock runs until all succeeded. The rate is N over the time from the first attempt's
start to the last delivery's finish (from the rows), so the cluster's start-up is not counted; the wall time
including start-up is reported too. Each configuration runs in a process of its own: Django's settings and
django-q's broker are fixed at start-up. Run alone: `.venv/bin/python tests/bench/bench_delivery.py [--quick]`.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import common

WORKERS = 2
RULE_KEY = "bench-rule-key-0123456789"
DBNAME = common.db_name("bench_delivery")


def request_body(n: int, alone: bool = True) -> dict:
    return {
        "update_on_duplicate": True,
        "automation": "reset",
        "tags": [f"OrderShipped{n}" if alone else "OrderShipped"],
        "subscribers": {
            "email": f"shopper{n}@example.com",
            "fields": [{"key": "Order.Number", "value": str(100000 + n)}, {"key": "Order.Currency", "value": "SEK"}],
        },
    }


def one_run(broker: str, latency_ms: int, count: int, synchronous_commit: bool = True, alone: bool = True) -> dict:
    """Fresh database, N deliveries enqueued, fake Rule and qcluster started; returns the measured rates."""
    queue = f"{DBNAME}-{broker}-{latency_ms}-{'alone' if alone else 'coalesced'}"
    env = common.bench_env(DBNAME, redis=broker == "redis", queue=queue, Q_WORKERS=str(WORKERS))
    common.recreate_database(DBNAME)
    if not synchronous_commit:
        import psycopg

        with psycopg.connect(common.pg_url("postgres"), autocommit=True) as admin:
            admin.execute(f"ALTER DATABASE {DBNAME} SET synchronous_commit = off")
    common.migrate(env)
    common.clear_queue(queue)
    common.setup_django(env)
    from django.db import connections, transaction
    from django.db.models import Max, Min

    from integration.delivery.engine import create_delivery
    from integration.models import Connection, Delivery, DeliveryAttempt

    port = common.free_port()
    with common.start_fake_rule(env, port, RULE_KEY, latency_ms, name=f"delivery-fakerule-{broker}-{latency_ms}"):
        connection = Connection.objects.create_with_flows(
            name="bench", rule_api_key=RULE_KEY, rule_api_url=f"http://127.0.0.1:{port}/api/v2"
        )
        for start in range(0, count, 500):
            with transaction.atomic():
                for n in range(start, min(start + 500, count)):
                    create_delivery(
                        connection=connection,
                        event="OrderShipped",
                        body=request_body(n, alone),
                        email=f"shopper{n}@example.com",
                        idempotency_key=f"OrderShipped:shipment:{n}",
                    )
        connections.close_all()
        common.progress(f"delivery: {count} deliveries enqueued ({broker} broker, Rule at {latency_ms} ms)")
        started = time.monotonic()
        deadline = started + max(120, count / 5)
        with common.child(f"delivery-qcluster-{broker}-{latency_ms}", [common.PYTHON, "manage.py", "qcluster"], env):
            done = 0
            while time.monotonic() < deadline:
                done = Delivery.objects.filter(status=Delivery.Status.SUCCEEDED).count()
                if done >= count:
                    break
                time.sleep(0.1)
            wall = time.monotonic() - started
        first = DeliveryAttempt.objects.aggregate(t=Min("started_at"))["t"]
        last = Delivery.objects.aggregate(t=Max("finished_at"))["t"]
        statuses = set(Delivery.objects.order_by().values_list("status", flat=True).distinct())
    span = (last - first).total_seconds() if first and last else float("nan")
    connections.close_all()
    return {
        "broker": broker,
        "latency_ms": latency_ms,
        "count": count,
        "succeeded": done,
        "rate": done / span if span else 0.0,
        "span_s": span,
        "wall_s": wall,
        "statuses": sorted(statuses),
        "calls": DeliveryAttempt.objects.order_by().values("call_id").distinct().count(),
        "alone": alone,
    }


def isolated_run(broker: str, latency_ms: int, count: int, synchronous_commit: bool = True, alone: bool = True) -> dict:
    """one_run() in a fresh process (`--run BROKER LATENCY COUNT`), so its settings are its own."""
    command = [common.PYTHON, __file__, "--run", broker, str(latency_ms), str(count)]
    if not synchronous_commit:
        command.append("--no-synchronous-commit")
    if not alone:
        command.append("--coalesced")
    done = subprocess.run(command, cwd=common.ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = common.parse_args(
        __doc__,
        [
            ("--run", {"nargs": 3, "metavar": ("BROKER", "LATENCY_MS", "COUNT"), "help": "one configuration only"}),
            ("--no-synchronous-commit", {"action": "store_true", "help": "with --run: commits do not wait for fsync"}),
            ("--coalesced", {"action": "store_true", "help": "with --run: one tag for all (calls are shared)"}),
        ],
    )
    if args.run:
        broker, latency_ms, count = args.run
        result = one_run(
            broker,
            int(latency_ms),
            int(count),
            synchronous_commit=not args.no_synchronous_commit,
            alone=not args.coalesced,
        )
        print(json.dumps(result), flush=True)
        return
    count_slow, count_fast = (300, 300) if args.quick else (2000, 2000)
    ideal = WORKERS / 0.020
    figures, notes, runs = [], [], []
    for broker in ("redis", "orm"):
        for latency_ms, count in ((20, count_slow), (0, count_fast)):
            run = isolated_run(broker, latency_ms, count)
            runs.append(run)
            common.progress(
                f"delivery: {broker} at {latency_ms} ms: {run['rate']:.1f}/s "
                f"({run['succeeded']}/{count} in {run['span_s']:.1f} s, wall {run['wall_s']:.1f} s)"
            )
            if run["succeeded"] < count:
                notes.append(
                    f"{broker} broker, {latency_ms} ms: only {run['succeeded']} of {count} succeeded "
                    f"before the deadline (statuses seen: {', '.join(run['statuses'])})"
                )
            if latency_ms:
                ratio = run["rate"] / ideal
                figures.append(
                    common.figure(
                        f"deliveries per second, each alone, {broker} broker, Rule at {latency_ms} ms",
                        run["rate"],
                        "deliveries/s",
                        baseline=f"ideal: {WORKERS} workers / {latency_ms} ms",
                        baseline_value=ideal,
                        target=">= 0.8 x ideal",
                        ok=ratio >= 0.8,
                    )
                )
            else:
                figures.append(
                    common.figure(
                        f"deliveries per second, {broker} broker, Rule at 0 ms",
                        run["rate"],
                        "deliveries/s",
                        baseline=f"ideal at 20 ms ({WORKERS} workers / 20 ms)",
                        baseline_value=ideal,
                    )
                )
                figures.append(
                    common.figure(
                        f"worker time per delivery, each alone, {broker} broker (Rule at 0 ms)",
                        WORKERS * 1000 / run["rate"] if run["rate"] else float("nan"),
                        "ms",
                        target="<= 5 ms",
                        ok=bool(run["rate"]) and WORKERS * 1000 / run["rate"] <= 5,
                    )
                )
            notes.append(
                f"{broker}, {latency_ms} ms: {run['count']} deliveries, {run['span_s']:.2f} s first attempt "
                f"to last finish, {run['wall_s']:.2f} s wall including qcluster start-up"
            )
        # The same deliveries sharing one tag: waiting ones go in calls of up to 100.
        run = isolated_run(broker, 20, count_slow, alone=False)
        common.progress(f"delivery: {broker} at 20 ms, coalesced: {run['rate']:.1f}/s in {run['calls']} calls")
        figures.append(
            common.figure(
                f"deliveries per second, coalesced, {broker} broker, Rule at 20 ms",
                run["rate"],
                "deliveries/s",
                baseline=f"one call each: {WORKERS} workers / 20 ms",
                baseline_value=ideal,
            )
        )
        notes.append(f"{broker}, coalesced at 20 ms: {run['count']} deliveries in {run['calls']} Rule calls")
    # Diagnostic, no target: the same 20 ms run with commits not waiting for fsync, to show their share.
    run = isolated_run("redis", 20, count_slow, synchronous_commit=False)
    common.progress(f"delivery: redis at 20 ms, synchronous_commit off: {run['rate']:.1f}/s")
    figures.append(
        common.figure(
            "deliveries per second, redis broker, Rule at 20 ms, synchronous_commit off (diagnostic)",
            run["rate"],
            "deliveries/s",
            baseline=f"ideal: {WORKERS} workers / 20 ms",
            baseline_value=ideal,
        )
    )
    params = {
        "workers": WORKERS,
        "deliveries_at_20ms": count_slow,
        "deliveries_at_0ms": count_fast,
        "database": "postgresql",
        "fake_rule": "integration/sandbox/fake_rule.py via manage.py fakerule",
    }
    common.emit("delivery", args.quick, figures, params, notes)


if __name__ == "__main__":
    main()
