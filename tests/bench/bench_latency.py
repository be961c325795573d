"""Latency: one event from the POST to Rule receiving the call, with events sent open-loop at 20 per second.

Two set-ups, each in a process of its own (Django's settings and django-q's broker are fixed at start-up):
- `redis`: gunicorn (2 sync workers), one qcluster (2 workers), Redis broker, PostgreSQL;
- `make-run`: `make run`'s defaults: `manage.py runserver` and one qcluster (2 workers), SQLite, the ORM broker.
Both against an independent fake Rule process answering in 20 ms. The sender is open-loop: signed
OrderCompleted events (one per request, each with its own email) are due at fixed times, 20 per second, and
sent from a pool of threads without waiting for answers. Latency = the event's due time until the fake Rule
received the call naming its email (the fake records arrival times: `GET /_fake/arrivals`; one clock, one
machine). Reported as p50/p95/p99; the hops between are read from the rows (stored, processed, the delivery's
first attempt started) and reported as medians and p95s, so the profile of the path comes with the figure.
Targets: p99 < 150 ms (redis), < 250 ms (make-run).
Run alone: `.venv/bin/python tests/bench/bench_latency.py [--quick]`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import common
from tests.bench.http_load import post
from tests.bench.inbound_bench import SECRET, order_document, signed

RATE = 20.0  # events per second
WORKERS = 2
RULE_KEY = "bench-rule-key-0123456789"
RULE_LATENCY_MS = 20
SENDER_THREADS = 16
WARMUP_EVENTS = 20
TARGETS_MS = {"redis": 150.0, "make-run": 250.0}


def event(run: str, n: int) -> dict:
    # Each run its own order numbers too: the delivery key is the order's, so a repeated number would be skipped.
    order = order_document(int(run[-6:], 16) * 10_000 + n)
    order["customer"]["email"] = f"latency-{run}-{n}@example.com"
    return {"id": f"{run}-{n}", "type": "OrderCompleted", "occurredAt": "2026-01-01T12:00:00Z", "order": order}


def send_open_loop(port: int, path: str, run: str, count: int, rate: float) -> dict[str, float]:
    """POST `count` events due at fixed times (`rate` per second) without waiting for answers; {email: due
    time (epoch seconds)}. A request that fails is reported by its missing arrival."""
    due_at: dict[str, float] = {}
    failures: list[str] = []
    bodies = []
    for n in range(count):
        doc = event(run, n)
        body = json.dumps(doc).encode()
        bodies.append((doc["order"]["customer"]["email"], body, signed(body, "application/json")))
    start = time.time() + 0.2

    def send(n: int) -> None:
        email, body, headers = bodies[n]
        due = start + n / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        due_at[email] = due
        try:
            status, data = post(port, path, body, headers)
        except OSError as exc:
            failures.append(str(exc))
            return
        if status != 200:
            failures.append(f"{status} {data[:120]!r}")

    # Every event has its own slot in time; the pool only has to be large enough that no slot waits for a free
    # thread (each request takes a few ms at 20/s).
    with ThreadPoolExecutor(SENDER_THREADS) as pool:
        for n in range(count):
            pool.submit(send, n)
    if failures:
        common.progress(f"latency: {len(failures)} requests failed, e.g. {failures[:2]}")
    return due_at


def arrivals(rule_port: int) -> dict[str, float]:
    """{email: when the fake Rule received the first call naming it}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{rule_port}/_fake/arrivals", timeout=30) as answer:
        found: dict[str, float] = {}
        for entry in json.load(answer):
            for email in entry["emails"]:
                found.setdefault(email, entry["at"])
        return found


def wait_for_arrivals(rule_port: int, emails: set[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        seen = arrivals(rule_port)
        if emails <= set(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def one_run(setup: str, count: int) -> dict:
    """One set-up: fresh database, web server, qcluster and fake Rule; the open-loop run; the figures."""
    queue = common.db_name(f"bench-latency-{setup}")  # the queue too: BENCH_DB_SUFFIX keeps it apart
    extra = {"Q_WORKERS": str(WORKERS), "SANDBOX": "1"}  # SANDBOX: the fake Rule, and its plain http
    if setup == "redis":
        dbname = common.db_name("bench_latency")
        env = common.bench_env(dbname, redis=True, queue=queue, **extra)
        common.recreate_database(dbname)
        common.clear_queue(queue)
    else:
        sqlite = common.LOG_DIR / f"{common.db_name('bench-latency')}.sqlite3"
        common.LOG_DIR.mkdir(parents=True, exist_ok=True)
        for leftover in sqlite.parent.glob(sqlite.name + "*"):
            leftover.unlink()
        env = common.bench_env("unused", redis=False, queue=queue, **extra)
        env["DATABASE_URL"] = f"sqlite:///{sqlite}"
    common.migrate(env)
    common.setup_django(env)
    from django.db import connections
    from django.urls import reverse

    from integration.models import Connection, Delivery, DeliveryAttempt, InboundEvent

    rule_port, web_port = common.free_port(), common.free_port()
    connection = Connection.objects.create_with_flows(
        name="bench", signing_secrets=SECRET, rule_api_key=RULE_KEY, rule_api_url=f"http://127.0.0.1:{rule_port}/api/v2"
    )
    path = reverse("centra-events", args=[connection.token])
    connections.close_all()
    if setup == "redis":
        web = [common.PYTHON, "-m", "gunicorn", "config.wsgi:application", "--workers", "2"]
        web += ["--bind", f"127.0.0.1:{web_port}", "--log-level", "warning"]
    else:
        web = [common.PYTHON, "manage.py", "runserver", f"127.0.0.1:{web_port}", "--noreload"]
    with (
        common.start_fake_rule(env, rule_port, RULE_KEY, RULE_LATENCY_MS, name=f"latency-fakerule-{setup}"),
        common.child(f"latency-web-{setup}", web, env, port=web_port),
        common.child(f"latency-qcluster-{setup}", [common.PYTHON, "manage.py", "qcluster"], env),
    ):
        warm = f"warm{uuid.uuid4().hex[:6]}"  # (the last 6 characters are hex: the runs' order numbers)
        common.progress(f"latency {setup}: warming up ({WARMUP_EVENTS} events)")
        warm_due = send_open_loop(web_port, path, warm, WARMUP_EVENTS, RATE / 2)
        wait_for_arrivals(rule_port, set(warm_due), 60)
        run = f"run{uuid.uuid4().hex[:6]}"
        common.progress(f"latency {setup}: {count} events at {RATE:.0f}/s")
        due_at = send_open_loop(web_port, path, run, count, RATE)
        seen = wait_for_arrivals(rule_port, set(due_at), 60)
        hops = _hops(run, due_at, seen, InboundEvent, Delivery, DeliveryAttempt)
    connections.close_all()
    latencies = [(seen[email] - due) * 1000 for email, due in due_at.items() if email in seen]
    return {
        "setup": setup,
        "count": count,
        "arrived": len(latencies),
        "p50": common.percentile(latencies, 50),
        "p95": common.percentile(latencies, 95),
        "p99": common.percentile(latencies, 99),
        "max": max(latencies) if latencies else float("nan"),
        "hops": hops,
    }


def _hops(run: str, due_at: dict, seen: dict, InboundEvent, Delivery, DeliveryAttempt) -> dict[str, dict]:
    """Where the time went, per event, from the rows: due -> stored (the POST), stored -> processed (the
    processing task's enqueue, pickup and work), processed -> first attempt started (the delivery's dispatch),
    attempt started -> Rule received it (the HTTP call's way out)."""
    events = {
        e.payload["order"]["customer"]["email"]: e
        for e in InboundEvent.objects.filter(dedupe_key__startswith=f"events:{run}-")
    }
    started = {}
    for email, at in (
        DeliveryAttempt.objects.filter(delivery__inbound_event__dedupe_key__startswith=f"events:{run}-")
        .order_by("started_at")
        .values_list("delivery__email", "started_at")
    ):
        started.setdefault(email, at.timestamp())
    spans: dict[str, list[float]] = {"post": [], "processing": [], "dispatch": [], "call": []}
    for email, due in due_at.items():
        inbound = events.get(email)
        if inbound is None or inbound.processed_at is None or email not in started or email not in seen:
            continue
        stored, processed = inbound.received_at.timestamp(), inbound.processed_at.timestamp()
        spans["post"].append((stored - due) * 1000)
        spans["processing"].append((processed - stored) * 1000)
        spans["dispatch"].append((started[email] - processed) * 1000)
        spans["call"].append((seen[email] - started[email]) * 1000)
    return {
        name: {"p50": common.percentile(values, 50), "p95": common.percentile(values, 95), "n": len(values)}
        for name, values in spans.items()
    }


def isolated_run(setup: str, count: int) -> dict:
    command = [common.PYTHON, __file__, "--run", setup, str(count)]
    done = subprocess.run(command, cwd=common.ROOT, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = common.parse_args(
        __doc__, [("--run", {"nargs": 2, "metavar": ("SETUP", "COUNT"), "help": "one set-up only"})]
    )
    if args.run:
        setup, count = args.run
        print(json.dumps(one_run(setup, int(count))), flush=True)
        return
    count = 200 if args.quick else 1200  # 10 s or 60 s of events at 20/s
    figures, notes = [], []
    for setup in ("redis", "make-run"):
        run = isolated_run(setup, count)
        target = TARGETS_MS[setup]
        common.progress(
            f"latency {setup}: p50 {run['p50']:.0f} ms, p95 {run['p95']:.0f} ms, p99 {run['p99']:.0f} ms "
            f"({run['arrived']}/{count} arrived)"
        )
        label = "Redis + PostgreSQL, gunicorn" if setup == "redis" else "make run defaults: SQLite, ORM broker"
        for q in (50, 95):
            figures.append(common.figure(f"end-to-end latency p{q} ({label})", run[f"p{q}"], "ms"))
        figures.append(
            common.figure(
                f"end-to-end latency p99 ({label})",
                run["p99"],
                "ms",
                baseline=f"Rule's own answer ({RULE_LATENCY_MS} ms)",
                baseline_value=RULE_LATENCY_MS,
                target=f"< {target:.0f} ms",
                ok=run["p99"] < target and run["arrived"] == count,
            )
        )
        hops = ", ".join(f"{name} p50 {h['p50']:.0f} / p95 {h['p95']:.0f} ms" for name, h in run["hops"].items())
        notes.append(f"{setup}: hops (due -> stored -> processed -> attempt started -> at Rule): {hops}")
        if run["arrived"] < count:
            notes.append(f"{setup}: only {run['arrived']} of {count} events reached the fake Rule within 60 s")
    params = {
        "rate_per_second": RATE,
        "events": count,
        "event": "OrderCompleted, one per request, signed",
        "sender": f"open loop, {SENDER_THREADS} threads, latency from each event's due time",
        "qcluster_workers": WORKERS,
        "fake_rule_latency_ms": RULE_LATENCY_MS,
        "web": "gunicorn 2 sync workers (redis); manage.py runserver (make-run)",
    }
    common.emit("latency", args.quick, figures, params, notes)


if __name__ == "__main__":
    main()
