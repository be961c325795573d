"""The two ingest benchmarks (JSON events, native webhooks): the service's endpoint against a bare baseline view.

Both run in one gunicorn (2 sync workers) on PostgreSQL, with Redis as the broker; no worker runs, so the
events are stored and enqueued only. Each round measures the service and the baseline at their maximum rate
(closed loop, 4 client threads), alternating which goes first; then each at half its own maximum (open loop)
for the latency percentiles.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from urllib.parse import quote

from tests.bench import common
from tests.bench.http_load import LoadResult, closed_loop, open_loop

SECRET = "bench-signing-secret"
CONCURRENCY = 4
LATENCY_THREADS = 16


def order_document(n: int) -> dict:
    """An order in Centra's GraphQL shape, about the size a storefront sends."""
    return {
        "number": str(100000 + n),
        "status": "CONFIRMED",
        "createdAt": "2026-01-01T12:00:00Z",
        "customer": {"email": f"shopper{n % 50000}@example.com", "firstName": "Anna", "lastName": "Berg"},
        "shippingAddress": {
            "firstName": "Anna",
            "lastName": "Berg",
            "address1": "Storgatan 1",
            "zipCode": "11122",
            "city": "Stockholm",
            "country": {"code": "SE"},
            "phoneNumber": "+46701234567",
        },
        "totals": {"grandTotal": {"value": 1399.0, "formattedValue": "1 399.00 SEK", "currency": {"code": "SEK"}}},
        "lines": [
            {
                "productName": f"Shirt {k}",
                "productNumber": f"P{k}",
                "size": "M",
                "quantity": 1,
                "unitPrice": {"value": 699.5, "formattedValue": "699.50 SEK"},
            }
            for k in range(2)
        ],
    }


def json_event(run: str, n: int) -> dict:
    """The n-th event of a run: OrderCompleted, Newsletter and OrderCreated in turn, each with a unique id."""
    envelope = {"id": f"{run}-{n}", "occurredAt": "2026-01-01T12:00:00Z"}
    kind = n % 3
    if kind == 0:
        return {**envelope, "type": "OrderCompleted", "order": order_document(n)}
    if kind == 1:
        return {
            **envelope,
            "type": "Newsletter",
            "email": f"reader{n}@example.com",
            "language": "sv",
            "address": {"country": "SE"},
        }
    return {
        **envelope,
        "type": "OrderCreated",
        "email": f"cart{n}@example.com",
        "selection": f"sel{n:012d}",
        "order": {"lines": order_document(n)["lines"]},
    }


def webhook_event(n: int) -> dict:
    kind = ("order", "shipment", "return", "customer")[n % 4]
    return {"type": kind, "action": "update", "date": "2026-01-01 12:05:10.000001", "id": 10_000_000 + n}


def signed(body: bytes, content_type: str) -> dict:
    from integration.inbound.signature import sign

    return {"Content-Type": content_type, "X-Centra-Signature": sign(SECRET, body)}


def json_request_maker(path: str, per_request: int) -> Callable[[int], tuple[str, bytes, dict]]:
    run = uuid.uuid4().hex[:8]

    def make(seq: int) -> tuple[str, bytes, dict]:
        events = [json_event(run, seq * per_request + k) for k in range(per_request)]
        body = json.dumps({"events": events}).encode()
        return path, body, signed(body, "application/json")

    return make


def webhook_request_maker(path: str, per_request: int, offset: int) -> Callable[[int], tuple[str, bytes, dict]]:
    def make(seq: int) -> tuple[str, bytes, dict]:
        events = [webhook_event(offset + seq * per_request + k) for k in range(per_request)]
        body = ("payload=" + quote(json.dumps({"events": events}), safe="")).encode()
        return path, body, signed(body, "application/x-www-form-urlencoded")

    return make


def run(bench: str, kind: str, per_request: int, quick: bool) -> None:
    """Measure `kind` ("events" or "webhook") with `per_request` events per request and print the JSON line."""
    dbname, queue = common.db_name(f"bench_{bench}"), f"bench-{bench}"
    env = common.bench_env(dbname, redis=True, queue=queue)
    seconds, rounds = (3.0, 1) if quick else (10.0, 2)

    common.progress(f"{bench}: fresh database {dbname}")
    common.recreate_database(dbname)
    common.migrate(env)
    common.clear_queue(queue)
    common.setup_django(env)
    from django.urls import reverse

    from integration.models import Connection, InboundEvent

    connection = Connection.objects.create_with_flows(
        name="bench", signing_secrets=SECRET, rule_api_key="bench-rule-key"
    )
    service_path = reverse(f"centra-{kind}", args=[connection.token])
    baseline_path = reverse(f"bench-baseline-{kind}", args=[connection.token])
    seq = itertools.count()
    if kind == "events":
        service = json_request_maker(service_path, per_request)
        baseline = json_request_maker(baseline_path, per_request)
    else:
        # Webhook ids must differ between the two endpoints' requests too: one shared counter, two offsets.
        service = webhook_request_maker(service_path, per_request, 0)
        baseline = webhook_request_maker(baseline_path, per_request, 500_000_000)

    port = common.free_port()
    gunicorn = [
        common.PYTHON,
        "-m",
        "gunicorn",
        "config.wsgi:application",
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--backlog",
        "2048",
    ]
    notes: list[str] = []
    with common.child(f"{bench}-gunicorn", gunicorn, env, port=port):
        common.progress(f"{bench}: warming up")
        for maker in (service, baseline):
            closed_loop(port, maker, 1.0, CONCURRENCY, seq)

        service_runs: list[LoadResult] = []
        baseline_runs: list[LoadResult] = []
        for round_no in range(rounds):
            order = [(service, service_runs), (baseline, baseline_runs)]
            for maker, results in order if round_no % 2 == 0 else reversed(order):
                results.append(closed_loop(port, maker, seconds, CONCURRENCY, seq))
                common.progress(
                    f"{bench}: round {round_no + 1} {'service' if maker is service else 'baseline'}: "
                    f"{results[-1].events_per_second:.0f} events/s, {results[-1].errors} errors"
                )
        service_max = common.median([r.events_per_second for r in service_runs])
        baseline_max = common.median([r.events_per_second for r in baseline_runs])

        half_service = service_max / 2 / per_request
        half_baseline = baseline_max / 2 / per_request
        common.progress(f"{bench}: latency at {half_service:.1f} and {half_baseline:.1f} requests/s")
        service_lat = open_loop(port, service, half_service, seconds, LATENCY_THREADS, seq)
        baseline_lat = open_loop(port, baseline, half_baseline, seconds, LATENCY_THREADS, seq)

    errors = sum(r.errors for r in service_runs + baseline_runs) + service_lat.errors + baseline_lat.errors
    samples = [s for r in service_runs + baseline_runs + [service_lat, baseline_lat] for s in r.error_samples]
    if errors:
        notes.append(f"{errors} requests were not answered 200, e.g. {samples[:2]}")
    accepted = sum(r.events for r in service_runs + baseline_runs) + service_lat.events + baseline_lat.events
    stored = InboundEvent.objects.count()
    warmup = stored - accepted
    notes.append(f"{stored} inbound events stored ({accepted} accepted in the measured runs, {warmup} in warm-up)")
    notes.append(f"{_queued(queue)} processing tasks were waiting in the Redis queue at the end (no worker ran)")

    ratio = service_max / baseline_max if baseline_max else 0.0
    label = "events" if kind == "events" else "webhook events"
    figures = [
        common.figure(
            f"{label} accepted per second ({per_request} per request)",
            service_max,
            "events/s",
            baseline="bare view inserting the same rows",
            baseline_value=baseline_max,
            target=">= 0.7 x baseline",
            ok=ratio >= 0.7,
        ),
        common.figure(
            f"p50 latency at half the maximum rate ({half_service:.1f} req/s)",
            service_lat.p(50),
            "ms",
            baseline=f"bare view at half its maximum ({half_baseline:.1f} req/s)",
            baseline_value=baseline_lat.p(50),
        ),
        common.figure(
            f"p99 latency at half the maximum rate ({half_service:.1f} req/s)",
            service_lat.p(99),
            "ms",
            baseline=f"bare view at half its maximum ({half_baseline:.1f} req/s)",
            baseline_value=baseline_lat.p(99),
        ),
    ]
    params = {
        "events_per_request": per_request,
        "seconds_per_run": seconds,
        "rounds": rounds,
        "client_threads": CONCURRENCY,
        "gunicorn_workers": 2,
        "worker_class": "sync",
        "broker": "redis",
        "database": "postgresql",
    }
    common.emit(bench, quick, figures, params, notes)


def _queued(queue: str) -> int:
    import redis

    return redis.Redis.from_url(f"{common.REDIS_SERVER}/{common.REDIS_DB}").llen(f"django_q:{queue}:q")
