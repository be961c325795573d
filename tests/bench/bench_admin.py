"""Admin at scale: the home page, the deliveries list and a delivery's page with 1,000,000 deliveries and
3,000,000 attempts.

Each view (the default list, each filter, a search by email, one delivery's change page) must render in under
500 ms: the median of several requests through Django's test Client, logged in as a superuser. The queries of
each view are captured; a COUNT over a whole table (no WHERE, no LIMIT) is reported. Baseline: the plain SQL
of the same page of rows (the admin's own LIMITed query, run raw). The home page (every connection's health and
its deliveries per hour over 7 days, read from the hourly counts) is compared with the one query it avoids:
counting the same 7 days straight from the delivery log.

The database (bench_admin) is kept between runs when its row counts match; `--rebuild` makes it again.
Run alone: `.venv/bin/python tests/bench/bench_admin.py [--quick] [--rebuild]`.
"""

import re
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import common

TARGET_MS = 500
REPEATS = 5
CONNECTIONS = 3
STATUS_BY_PERCENT = (  # (upper bound of g % 100, status): mostly succeeded, as in a healthy shop
    (85, "succeeded"),
    (90, "failed"),
    (94, "retrying"),
    (96, "pending"),
    (98, "cancelled"),
    (100, "sending"),
)
FULL_COUNT = re.compile(r"\bCOUNT\(", re.IGNORECASE)


def delivery_columns() -> dict[str, str]:
    """SQL expressions (over `g`, `ev` and `st` of the generator subquery) for each column of a delivery."""
    return {
        "connection_id": "conns[1 + mod(g, array_length(conns, 1))]",
        "event": "ev",
        "inbound_event_id": "NULL",
        "idempotency_key": "ev || ':bench:' || g",
        "email": "'shopper' || mod(g, 250000) || '@example.com'",
        "order_number": "(100000 + g)::text",
        "method": "'POST'",
        "path": "'/subscribers'",
        "request_body": (
            "jsonb_build_object('update_on_duplicate', true, 'automation', 'reset', 'tags', jsonb_build_array(ev),"
            " 'subscribers', jsonb_build_object('email', 'shopper' || mod(g, 250000) || '@example.com',"
            " 'fields', jsonb_build_array(jsonb_build_object('key', 'Order.Number', 'value', (100000 + g)::text),"
            " jsonb_build_object('key', 'Order.Currency', 'value', 'SEK'))))"
        ),
        "status": "st",
        "trigger": "CASE mod(g, 50) WHEN 0 THEN 'test' WHEN 1 THEN 'resend' WHEN 2 THEN 'reconcile' ELSE 'event' END",
        "attempt_count": "3",
        "next_attempt_at": "CASE WHEN st IN ('pending', 'retrying') THEN now() + interval '10 minutes' END",
        "lease_until": "CASE WHEN st = 'sending' THEN now() + interval '2 minutes' END",
        "last_error": "CASE WHEN st = 'failed' THEN "
        "'400 BadRequest: email is invalid (fields: {\"email\": [\"invalid\"]})' ELSE '' END",
        "notes": "''",
        "created_at": "now() - g * interval '7.776 seconds'",  # a million rows over 90 days
        "updated_at": "now() - g * interval '7.776 seconds'",
        "finished_at": "CASE WHEN st IN ('succeeded', 'failed') THEN now() - g * interval '7.776 seconds' "
        "+ interval '3 seconds' END",
    }


def attempt_columns() -> dict[str, str]:
    """SQL expressions (over delivery `d` and attempt number `n`) for each column of an attempt."""
    return {
        "delivery_id": "d.id",
        "number": "n",
        "started_at": "d.created_at + n * interval '1 second'",
        "duration_ms": "20 + n",
        "status_code": "CASE WHEN n = 3 AND d.status = 'succeeded' THEN 200 WHEN n = 3 AND d.status = 'failed' "
        "THEN 400 ELSE 503 END",
        "response_body": "CASE WHEN n = 3 AND d.status = 'succeeded' THEN '{\"subscriber\": {\"id\": 1}}' "
        'ELSE \'{"error": "ServiceUnavailable"}\' END',
        "error": "''",
        "outcome": "CASE WHEN n < 3 THEN 'retry' WHEN d.status = 'succeeded' THEN 'succeeded' "
        "WHEN d.status = 'failed' THEN 'failed' ELSE 'retry' END",
        "counted": "true",
        "note": "''",
    }


def _complete(model, expressions: dict[str, str]) -> tuple[list[str], list[str], list]:
    """Columns and expressions for every concrete column of `model`; a column added later gets its default."""
    from django.db import connection

    columns, values, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(field.column)
        if field.column in expressions:
            values.append(expressions[field.column])
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.get_default(), connection=connection))
    return columns, values, params


def build(deliveries: int) -> None:
    """Fill the tables with INSERT ... SELECT generate_series (a few minutes for a million)."""
    from django.db import connection, transaction

    from integration import catalog
    from integration.models import Connection, Delivery, DeliveryAttempt

    events = list(catalog.EVENTS)
    conn_ids = [
        Connection.objects.create_with_flows(name=f"shop-{i}", rule_api_key="bench-key").pk for i in range(CONNECTIONS)
    ]
    whens = " ".join(f"WHEN mod(g, 100) < {bound} THEN '{st}'" for bound, st in STATUS_BY_PERCENT)
    status_case = f"CASE {whens} END"
    columns, values, params = _complete(Delivery, delivery_columns())
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Delivery._meta.db_table} ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM (SELECT g, %s::bigint[] AS conns, "
            f"(%s::text[])[1 + mod(g * 7, {len(events)})] AS ev, {status_case} AS st "
            f"FROM generate_series(1, %s) AS g) AS s",
            [*params, conn_ids, events, deliveries],
        )
    common.progress(f"admin: {deliveries} deliveries in {time.monotonic() - started:.0f} s")
    columns, values, params = _complete(DeliveryAttempt, attempt_columns())
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DeliveryAttempt._meta.db_table} ({', '.join(columns)}) "
            f"SELECT {', '.join(values)} FROM {Delivery._meta.db_table} AS d CROSS JOIN generate_series(1, 3) AS n",
            params,
        )
    common.progress(f"admin: {3 * deliveries} attempts in {time.monotonic() - started:.0f} s")
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {Delivery._meta.db_table}")
        cursor.execute(f"VACUUM ANALYZE {DeliveryAttempt._meta.db_table}")
    count_hours()


def count_hours() -> None:
    """The home page's hourly counts, recounted from the generated log (the engine keeps them as it sends)."""
    from django.db import connection

    from integration.models import DeliveryHour
    from integration.ops import delivery_stats

    started = time.monotonic()
    rows = delivery_stats.rebuild()
    common.progress(f"admin: {rows} hourly count rows in {time.monotonic() - started:.0f} s")
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {DeliveryHour._meta.db_table}")


def counts_match(dbname: str, deliveries: int) -> bool:
    import psycopg

    if not common.database_exists(dbname):
        return False
    try:
        with psycopg.connect(common.pg_url(dbname)) as conn:
            got = conn.execute(
                "SELECT (SELECT count(*) FROM integration_delivery), (SELECT count(*) FROM integration_deliveryattempt)"
            ).fetchone()
    except psycopg.Error:
        return False
    return got == (deliveries, 3 * deliveries)


def timed_get(client, url: str) -> tuple[float, list[dict]]:
    """Median milliseconds of REPEATS GETs (after one warm-up) and the queries of one of them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    return common.median(times), list(captured.captured_queries)


def full_counts(queries: list[dict]) -> list[str]:
    """COUNTs with neither WHERE nor LIMIT: they read a whole table."""
    found = []
    for query in queries:
        sql = query["sql"]
        upper = sql.upper()
        if FULL_COUNT.search(sql) and " WHERE " not in upper and " LIMIT " not in upper:
            found.append(sql[:200])
    return found


def baseline_ms(cl) -> float:
    """Median milliseconds of the admin page's own LIMITed SELECT, run raw (rows fetched)."""
    from django.db import connection

    sql, params = cl.result_list.query.sql_with_params()
    times = []
    with connection.cursor() as cursor:
        for _ in range(REPEATS + 1):
            started = time.perf_counter()
            cursor.execute(sql, params)
            cursor.fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return common.median(times[1:])


def views(model_admin, user, changelist_url: str) -> list[tuple[str, str]]:
    """(label, query string) of the default list, the first choice of each filter, and an email search."""
    from django.test import RequestFactory

    request = RequestFactory().get(changelist_url)
    request.user = user
    cl = model_admin.get_changelist_instance(request)
    found = [("default list", "")]
    for spec in cl.filter_specs:
        choices = [c for c in spec.choices(cl) if not c.get("selected")]
        if choices:
            query = choices[0]["query_string"].lstrip("?")
            found.append((f"filter {spec.title}: {choices[0]['display']}", query))
    found.append(("search by email", urlencode({"q": "shopper12345@example.com"})))
    return found


def changelist(model_admin, user, url: str):
    from django.test import RequestFactory

    request = RequestFactory().get(url)
    request.user = user
    return model_admin.get_changelist_instance(request)


def main() -> None:
    args = common.parse_args(__doc__, [("--rebuild", {"action": "store_true", "help": "generate the rows again"})])
    deliveries = 100_000 if args.quick else 1_000_000
    dbname = "bench_admin_quick" if args.quick else "bench_admin"
    env = common.bench_env(dbname, redis=False, queue="bench-admin")
    notes = []
    kept = not args.rebuild and counts_match(dbname, deliveries)
    if not kept:
        common.progress(f"admin: building {dbname} ({deliveries} deliveries, {3 * deliveries} attempts)")
        common.recreate_database(dbname)
    common.migrate(env)
    common.setup_django(env)
    if not kept:
        build(deliveries)
    else:
        from integration.models import DeliveryHour

        if not DeliveryHour.objects.exists():  # a database built before the hourly counts existed
            count_hours()
    notes.append(
        f"{'kept the existing' if kept else 'generated a new'} {dbname}: {deliveries} deliveries, "
        f"{3 * deliveries} attempts"
    )

    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.urls import reverse

    from integration.models import Delivery

    user_model = get_user_model()
    user = user_model.objects.filter(username="bench-admin").first() or user_model.objects.create_superuser(
        "bench-admin", "bench@example.com", "bench-password-not-secret"
    )
    client = Client()
    client.force_login(user)
    model_admin = admin.site._registry[Delivery]
    list_url = reverse("admin:integration_delivery_changelist")
    figures = []
    for label, query in views(model_admin, user, list_url):
        url = f"{list_url}?{query}" if query else list_url
        ms, queries = timed_get(client, url)
        base = baseline_ms(changelist(model_admin, user, url))
        counts = full_counts(queries)
        if counts:
            notes.append(f"{label}: a COUNT over a whole table: {counts[0]}")
        figures.append(
            common.figure(
                f"deliveries list, {label} ({len(queries)} queries)",
                ms,
                "ms",
                baseline="the page's SELECT ... LIMIT run raw",
                baseline_value=base,
                target=f"< {TARGET_MS} ms, no full COUNT",
                ok=ms < TARGET_MS and not counts,
            )
        )
        common.progress(f"admin: {label}: {ms:.0f} ms (baseline {base:.1f} ms), {len(queries)} queries")

    delivery = Delivery.objects.filter(pk__gte=deliveries // 2).order_by("pk").first()
    change_url = reverse("admin:integration_delivery_change", args=[delivery.pk])
    ms, queries = timed_get(client, change_url)
    base = _change_baseline(delivery.pk)
    counts = full_counts(queries)
    if counts:
        notes.append(f"change page: a COUNT over a whole table: {counts[0]}")
    figures.append(
        common.figure(
            f"one delivery's change page with its 3 attempts ({len(queries)} queries)",
            ms,
            "ms",
            baseline="SELECT the delivery and its attempts run raw",
            baseline_value=base,
            target=f"< {TARGET_MS} ms",
            ok=ms < TARGET_MS and not counts,
        )
    )
    common.progress(f"admin: change page: {ms:.0f} ms (baseline {base:.1f} ms)")
    figures.append(home_page_figure(client, notes))
    params = {
        "deliveries": deliveries,
        "attempts": 3 * deliveries,
        "connections": CONNECTIONS,
        "requests_per_view": REPEATS,
        "statistic": "median",
        "database": "postgresql",
    }
    common.emit("admin", args.quick, figures, params, notes)


def home_page_figure(client, notes: list[str]) -> dict:
    """The admin home: each connection's health, activity and 24 h / 7 day charts."""
    from django.urls import reverse

    ms, queries = timed_get(client, reverse("admin:index"))
    base = _log_aggregate_ms()
    counts = full_counts(queries)
    if counts:
        notes.append(f"home page: a COUNT over a whole table: {counts[0]}")
    common.progress(f"admin: home page: {ms:.0f} ms (counting 7 days from the log: {base:.0f} ms)")
    return common.figure(
        f"home page: {CONNECTIONS} connections' health and deliveries per hour ({len(queries)} queries)",
        ms,
        "ms",
        baseline="the 7 days' deliveries per connection and hour counted from the delivery log (one GROUP BY)",
        baseline_value=base,
        target=f"< {TARGET_MS} ms, no full COUNT",
        ok=ms < TARGET_MS and not counts,
    )


def _log_aggregate_ms() -> float:
    """What the hourly counts save: the chart's numbers aggregated straight from the deliveries."""
    from django.db import connection

    sql = (
        "SELECT connection_id, date_trunc('hour', finished_at), status, count(*) FROM integration_delivery "
        "WHERE finished_at >= now() - interval '7 days' GROUP BY 1, 2, 3"
    )
    times = []
    with connection.cursor() as cursor:
        for _ in range(REPEATS + 1):
            started = time.perf_counter()
            cursor.execute(sql)
            cursor.fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return common.median(times[1:])


def _change_baseline(pk: int) -> float:
    from django.db import connection

    times = []
    with connection.cursor() as cursor:
        for _ in range(REPEATS + 1):
            started = time.perf_counter()
            cursor.execute("SELECT * FROM integration_delivery WHERE id = %s", [pk])
            cursor.fetchall()
            cursor.execute("SELECT * FROM integration_deliveryattempt WHERE delivery_id = %s ORDER BY number", [pk])
            cursor.fetchall()
            times.append((time.perf_counter() - started) * 1000)
    return common.median(times[1:])


if __name__ == "__main__":
    main()
