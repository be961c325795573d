"""Memory: a worker's peak RSS after 100,000 deliveries stays within 1.2x its RSS after 1,000.

One process runs integration.delivery.engine.deliver() for each pending delivery in turn, against the fake Rule at
0 ms in its own process, sampling its own RSS (psutil) every 1,000 deliveries. The deliveries are made by
INSERT ... SELECT generate_series before the loop, so making them costs this process no memory. The bench
database runs with synchronous_commit off: this measures memory, and the loop is shorter without an fsync per
commit. Run alone: `.venv/bin/python tests/bench/bench_memory.py [--quick]`.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import common

DBNAME = "bench_memory"
RULE_KEY = "bench-rule-key-0123456789"
SAMPLE_EVERY = 1000
TARGET_RATIO = 1.2


def make_deliveries(connection_id: int, count: int) -> None:
    from django.db import connection

    from integration.models import Delivery

    expressions = {
        "connection_id": "%s",
        "event": "'OrderShipped'",
        "inbound_event_id": "NULL",
        "idempotency_key": "'OrderShipped:shipment:' || g",
        "email": "'shopper' || g || '@example.com'",
        "order_number": "(100000 + g)::text",
        "request_body": (
            "jsonb_build_object('update_on_duplicate', true, 'automation', 'reset', 'tags', "
            "jsonb_build_array('OrderShipped'), 'subscribers', jsonb_build_object('email', "
            "'shopper' || g || '@example.com', 'fields', jsonb_build_array(jsonb_build_object("
            "'key', 'Order.Number', 'value', (100000 + g)::text))))"
        ),
        "status": "'pending'",
        "next_attempt_at": "now() - interval '1 second'",
        "created_at": "now()",
        "updated_at": "now()",
    }
    columns, values, params = [], [], []
    for field in Delivery._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(field.column)
        if field.column == "connection_id":
            values.append("%s")
            params.append(connection_id)
        elif field.column in expressions:
            values.append(expressions[field.column])
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection=connection))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM generate_series(1, %s) AS g",
            [*params, count],
        )


def main() -> None:
    args = common.parse_args(__doc__)
    count = 5_000 if args.quick else 100_000
    env = common.bench_env(DBNAME, redis=False, queue="bench-memory")
    common.recreate_database(DBNAME)
    import psycopg

    with psycopg.connect(common.pg_url("postgres"), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {DBNAME} SET synchronous_commit = off")
    common.migrate(env)
    common.setup_django(env)
    import psutil
    from django.db import reset_queries

    from integration.delivery.engine import deliver
    from integration.models import Connection, Delivery

    process = psutil.Process()
    port = common.free_port()
    with common.start_fake_rule(env, port, RULE_KEY, 0, name="memory-fakerule"):
        conn = Connection.objects.create_with_flows(
            name="bench", rule_api_key=RULE_KEY, rule_api_url=f"http://127.0.0.1:{port}/api/v2"
        )
        make_deliveries(conn.pk, count)
        common.progress(f"memory: {count} pending deliveries; delivering in this process")
        rss_start = process.memory_info().rss
        samples: list[tuple[int, int]] = []
        outcomes: dict[str, int] = {}
        done, last_id = 0, 0
        started = time.monotonic()
        while done < count:
            ids = list(Delivery.objects.filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[:500])
            if not ids:
                break
            for pk in ids:
                outcome = deliver(pk)
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
                done += 1
                if done % SAMPLE_EVERY == 0:
                    samples.append((done, process.memory_info().rss))
                    if done % 10_000 == 0:
                        common.progress(f"memory: {done} delivered, RSS {samples[-1][1] / 2**20:.1f} MiB")
            last_id = ids[-1]
            reset_queries()
        elapsed = time.monotonic() - started
    rss_1000 = next(rss for n, rss in samples if n == SAMPLE_EVERY)
    peak = max(rss for _, rss in samples)
    ratio = peak / rss_1000
    mib = 2**20
    figures = [
        common.figure(
            f"peak RSS over {done} deliveries",
            peak / mib,
            "MiB",
            baseline="RSS after 1,000 deliveries",
            baseline_value=rss_1000 / mib,
            target=f"<= {TARGET_RATIO} x baseline",
            ok=ratio <= TARGET_RATIO,
        ),
        common.figure(
            "RSS after the last delivery",
            samples[-1][1] / mib,
            "MiB",
            baseline="RSS after 1,000 deliveries",
            baseline_value=rss_1000 / mib,
        ),
        common.figure(
            "time per delivery in one process (Rule at 0 ms, synchronous_commit off)",
            elapsed * 1000 / max(done, 1),
            "ms",
        ),
    ]
    notes = [
        f"RSS before the first delivery {rss_start / mib:.1f} MiB; outcomes: "
        + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())),
        "RSS every 10,000 (MiB): " + ", ".join(f"{n}: {rss / mib:.1f}" for n, rss in samples if n % 10_000 == 0),
    ]
    params = {"deliveries": count, "sample_every": SAMPLE_EVERY, "fake_rule_latency_ms": 0, "database": "postgresql"}
    common.emit("memory", args.quick, figures, params, notes)


if __name__ == "__main__":
    main()
