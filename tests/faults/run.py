"""The fault suite (`make faults`): signed OrderCompleted events posted to a real gunicorn while one fault at a time
hits the deployment (tests/faults/deployment.py); then every accepted event must reach the fake Rule, its cart-tag
removal too, and any request Rule got twice must be explained in the attempt log.

    .venv/bin/python tests/faults/run.py [--scenario NAME]... [--scale 1.0] [--events 120]

Needs PostgreSQL and Redis (DATABASE_URL's server, database `faults`, recreated; REDIS_URL's server, db 9,
flushed). Writes var/faults/report.md and report.json, and exits 1 when anything was lost, a duplicate is
unexplained, or a delivery failed. Outage durations are multiplied by --scale (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg
import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.faults.deployment import LOG_DIR, SUITE_SETTINGS, Deployment, suite_environment

SECRET = "faults-signing-secret"
EMAIL_DOMAIN = "faults.example.com"


# ---------------------------------------------------------------- the sender (Centra's side)


@dataclass
class Load:
    """Posts `count` signed events over `seconds`, each retried (as Centra retries) until answered 200."""

    events_url: str
    prefix: str
    count: int
    seconds: float
    accepted: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    refused: Counter = field(default_factory=Counter)

    def run(self) -> None:
        from integration.inbound.signature import HEADER, sign
        from integration.mapping.samples import sample

        lock = threading.Lock()
        started = time.monotonic()

        def post(n: int) -> None:
            time.sleep(max(0.0, started + n * self.seconds / self.count - time.monotonic()))
            email = f"{self.prefix}-{n}@{EMAIL_DOMAIN}"
            payload = copy.deepcopy(sample("OrderCompleted"))
            order = payload["order"]
            order["number"] = int(time.time() * 1000) % 10**9 * 1000 + n
            for place in (order["customer"], order["shippingAddress"], order["billingAddress"]):
                place["email"] = email
            raw = json.dumps(
                {"id": f"{self.prefix}-{n}", "type": "OrderCompleted", "occurredAt": "2026-11-29T12:00:00Z", **payload}
            ).encode()
            with lock:
                self.sent.add(email)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    answer = requests.post(
                        self.events_url,
                        data=raw,
                        timeout=10,
                        headers={"Content-Type": "application/json", HEADER: sign(SECRET, raw)},
                    )
                    if answer.status_code == 200:
                        with lock:
                            self.accepted.add(email)
                        return
                    reason = str(answer.status_code)
                except requests.RequestException as exc:
                    reason = exc.__class__.__name__
                with lock:
                    self.refused[reason] += 1
                time.sleep(0.5 + random.random())

        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(post, range(self.count)))


# ---------------------------------------------------------------- accounting


@dataclass
class Result:
    scenario: str
    fault: str
    sent: int = 0
    accepted: int = 0
    delivered: int = 0
    lost: int = 0
    follow_ups_missing: int = 0
    duplicated: int = 0
    explained: int = 0
    failed_deliveries: int = 0
    drain_seconds: float = 0.0
    sender_retries: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return (
            self.sent > 0
            and self.lost == 0
            and self.follow_ups_missing == 0
            and self.duplicated == self.explained
            and self.failed_deliveries == 0
        )


def rule_calls(deployment: Deployment, emails: set[str]) -> tuple[Counter, Counter]:
    """Per email: POSTs Rule answered 2xx (a shared call counts for each of its subscribers), and cart-tag DELETEs
    Rule answered (200, or 404: no such tag)."""
    posts, deletes = Counter(), Counter()
    quoted = {quote(e, safe=""): e for e in emails}
    for r in deployment.rule_requests():
        status = r.get("status") or 0
        if r["method"] == "POST" and r["path"].endswith("/subscribers") and 200 <= status < 300:
            subscribers = (r.get("json") or {}).get("subscribers") or []  # one, or a shared call's list
            for subscriber in [subscribers] if isinstance(subscribers, dict) else subscribers:
                if subscriber.get("email") in emails:
                    posts[subscriber["email"]] += 1
        elif r["method"] == "DELETE" and status in (200, 404):
            email = quoted.get(r["path"].split("/subscribers/", 1)[-1].split("/", 1)[0])
            if email:
                deletes[email] += 1
    return posts, deletes


def open_work(emails: set[str]) -> int:
    from integration.models import Delivery, InboundEvent

    received = InboundEvent.objects.filter(status=InboundEvent.Status.RECEIVED).count()
    open_deliveries = Delivery.objects.filter(email__in=emails, status__in=Delivery.OPEN_STATUSES).count()
    return received + open_deliveries


def explained_duplicates(email: str, event: str) -> bool:
    """Whether the attempt log shows why Rule got this delivery twice: an answer after our timeout, or a worker
    stopped during the call."""
    from integration.delivery.engine import MAY_HAVE_ARRIVED, WORKER_STOPPED
    from integration.models import DeliveryAttempt

    attempts = DeliveryAttempt.objects.filter(delivery__email=email, delivery__event=event)
    return any(MAY_HAVE_ARRIVED in a.note or a.error == WORKER_STOPPED for a in attempts)


def account(deployment: Deployment, load: Load, result: Result, drain_from: float, limit: float) -> None:
    from django.db import close_old_connections

    from integration.delivery.engine import REMOVE_CART_TAG
    from integration.models import Delivery

    accepted = set(load.accepted)
    deadline = drain_from + limit
    while True:
        close_old_connections()
        posts, deletes = rule_calls(deployment, accepted)
        done = all(posts[e] and deletes[e] for e in accepted)
        if done and open_work(accepted) == 0:
            break
        if time.monotonic() > deadline:
            result.notes.append(f"not drained after {limit:.0f} s")
            break
        time.sleep(1)
    result.drain_seconds = round(max(0.0, time.monotonic() - drain_from), 1)
    result.sent, result.accepted = len(load.sent), len(accepted)
    result.sender_retries = sum(load.refused.values())
    result.delivered = sum(1 for e in accepted if posts[e])
    result.lost = result.accepted - result.delivered
    result.follow_ups_missing = sum(1 for e in accepted if posts[e] and not deletes[e])
    for email in accepted:
        for event, count in (("OrderCompleted", posts[email]), (REMOVE_CART_TAG, deletes[email])):
            if count > 1:
                result.duplicated += count - 1
                if explained_duplicates(email, event):
                    result.explained += count - 1
    result.failed_deliveries = Delivery.objects.filter(email__in=accepted, status=Delivery.Status.FAILED).count()
    if load.refused:
        result.notes.append("sender retried: " + ", ".join(f"{k} x{v}" for k, v in sorted(load.refused.items())))


# ---------------------------------------------------------------- faults


def terminate_backends(database: str) -> int:
    """pg_terminate_backend on every other session of the suite's database (web, workers, sweeper)."""
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        ).fetchall()
    return len(rows)


def scenario_rule_503(d: Deployment, scale: float, r: Result) -> None:
    d.rule_control(status=503, times=100_000)
    time.sleep(20 * scale)
    d.rule_control(clear_failures=True)


def scenario_worker_killed_mid_call(d: Deployment, scale: float, r: Result) -> None:
    d.rule_control(latency_ms=1500)  # calls last long enough to be in flight when the host dies
    time.sleep(3)
    d.workers[0].kill()
    time.sleep(2 * scale)
    d.workers[0].start()
    time.sleep(2)
    d.rule_control(latency_ms=0)


def scenario_redis_flushed(d: Deployment, scale: float, r: Result) -> None:
    broker = redis.Redis.from_url(d.env["REDIS_URL"])
    d.rule_control(latency_ms=800)  # tasks pile up in the queue, so a flush loses some
    lost = 0
    for _ in range(3):
        time.sleep(2 * scale)
        lost += broker.llen(f"django_q:{d.env['Q_CLUSTER_NAME']}:q") or 0
        broker.flushdb()
    d.rule_control(latency_ms=0)
    r.notes.append(f"{lost} queued tasks flushed")


def scenario_database_backends_terminated(d: Deployment, scale: float, r: Result) -> None:
    database = urlsplit(d.env["DATABASE_URL"]).path.lstrip("/")
    killed = 0
    for _ in range(6):
        time.sleep(1.5 * scale)
        killed += terminate_backends(database)
    r.notes.append(f"{killed} backends terminated in 6 rounds")


def scenario_rule_429_storm(d: Deployment, scale: float, r: Result) -> None:
    d.rule_control(status=429, times=100_000, retry_after="3")
    time.sleep(12 * scale)
    d.rule_control(clear_failures=True)


def scenario_rule_hangs(d: Deployment, scale: float, r: Result) -> None:
    read_timeout = float(SUITE_SETTINGS["RULE_READ_TIMEOUT"])
    d.rule_control(latency_ms=int((read_timeout + 2) * 1000))  # Rule acts, but answers after our timeout
    time.sleep(12 * scale)
    d.rule_control(latency_ms=0)


def scenario_web_killed(d: Deployment, scale: float, r: Result) -> None:
    time.sleep(3)
    d.web.kill()
    time.sleep(2 * scale)
    d.web.start()
    d.wait_for_web()


def scenario_two_workers_killed_in_turn(d: Deployment, scale: float, r: Result) -> None:
    d.rule_control(latency_ms=1000)
    for worker in d.workers[:2]:
        time.sleep(2)
        worker.kill()
        time.sleep(2 * scale)
        worker.start()
    d.rule_control(latency_ms=0)


def scenario_rolling_restart(d: Deployment, scale: float, r: Result) -> None:
    """A deploy: every worker in turn gets SIGTERM (systemd's stop) and starts again; graceful, so no duplicate."""
    d.rule_control(latency_ms=1000)
    for worker in d.workers:
        time.sleep(1)
        r.notes.append(f"{worker.name} stopped in {worker.terminate():.1f} s")
        worker.start()
    d.rule_control(latency_ms=0)


SCENARIOS = {
    "rule-503": ("Rule answers 503 to everything for 20 s", scenario_rule_503),
    "worker-killed-mid-call": (
        "one qcluster host SIGKILLed with calls in flight (Rule 1.5 s)",
        scenario_worker_killed_mid_call,
    ),
    "redis-flushed": ("the Redis queue flushed three times, 2 s apart (Rule 0.8 s)", scenario_redis_flushed),
    "db-backends-terminated": (
        "pg_terminate_backend on every session, six times, 1.5 s apart",
        scenario_database_backends_terminated,
    ),
    "rule-429-storm": ("Rule answers 429 (Retry-After: 3) to everything for 12 s", scenario_rule_429_storm),
    "rule-hangs": ("Rule answers after our 3 s read timeout for 12 s", scenario_rule_hangs),
    "web-killed": ("gunicorn (master and workers) SIGKILLed under load, back after 2 s", scenario_web_killed),
    "two-workers-killed": ("two qcluster hosts SIGKILLed in turn (Rule 1 s)", scenario_two_workers_killed_in_turn),
    "rolling-restart": (
        "every qcluster stopped with SIGTERM in turn and restarted (Rule 1 s)",
        scenario_rolling_restart,
    ),
}


def run_scenario(d: Deployment, name: str, events: int, scale: float) -> Result:
    description, inject = SCENARIOS[name]
    result = Result(name, description)
    d.rule_control(clear_failures=True, latency_ms=0)
    d.clear_rule_requests()
    events_url = d.connection["events_url"]
    load = Load(events_url, f"{name}-{int(time.time())}", events, seconds=8)
    failures = []

    def send() -> None:
        try:
            load.run()
        except Exception as exc:  # reported below: a broken sender must fail the suite, not pass it empty
            failures.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(1)
    inject(d, scale, result)
    sender.join()
    if failures:
        raise RuntimeError(f"the sender failed: {failures[0]!r}") from failures[0]
    account(d, load, result, drain_from=time.monotonic(), limit=150)
    return result


# ---------------------------------------------------------------- setup and report


def admin_dsn() -> str:
    parts = urlsplit(os.environ.get("FAULTS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/faults"))
    return parts._replace(path="/postgres").geturl()


def fresh_database(url: str) -> None:
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def report(results: list[Result], started: float, args) -> str:
    lines = [
        f"Command: `{' '.join(['.venv/bin/python tests/faults/run.py', *sys.argv[1:]])}` "
        f"(scale {args.scale}, {args.events} events per scenario)  ",
        f"Machine: {platform.node()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; total {time.monotonic() - started:.0f} s  ",
        "",
        "| scenario | fault | sent | accepted | delivered | lost | duplicated (explained) | drain s | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        notes = "; ".join(
            r.notes + ([f"{r.follow_ups_missing} cart-tag removals missing"] if r.follow_ups_missing else [])
        )
        if r.failed_deliveries:
            notes = f"{r.failed_deliveries} deliveries failed; " + notes
        lines.append(
            f"| {r.scenario} | {r.fault} | {r.sent} | {r.accepted} | {r.delivered} | {r.lost} | "
            f"{r.duplicated} ({r.explained}) | {r.drain_seconds} | {notes} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply outage durations")
    parser.add_argument("--events", type=int, default=120, help="events posted per scenario (over 8 s)")
    parser.add_argument("--workers", type=int, default=3, help="qcluster processes")
    args = parser.parse_args()
    started = time.monotonic()

    database_url = os.environ.get("FAULTS_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/faults")
    redis_url = os.environ.get("FAULTS_REDIS_URL", "redis://127.0.0.1:6379/9")
    fresh_database(database_url)
    redis.Redis.from_url(redis_url).flushdb()
    env = suite_environment(database_url, redis_url)
    os.environ.update(env)  # this process reads the same database (accounting) as the deployment
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()

    for old in LOG_DIR.glob("*.log"):
        old.unlink()
    d = Deployment(env, workers=args.workers)
    d.env["PUBLIC_BASE_URL"] = d.web_url
    print("migrating", flush=True)
    d.manage("migrate", "--no-input")
    d.connection = json.loads(
        d.manage(
            "connection",
            "upsert",
            "faults",
            "--rule-api-key",
            d.rule_key,
            "--rule-api-url",
            f"{d.rule_url}/api/v2",
            "--secret",
            SECRET,
            # Every order is followed by its cart-tag DELETE (the shoppers posted here have no cart of their own):
            # the suite checks that this follow-up, too, reaches Rule exactly once under each fault.
            "--remove-cart-tag-always",
        )
    )
    d.manage("flow", "set", "faults", "OrderCompleted", "--enable")
    d.manage("flow", "set", "faults", "OrderCreated", "--enable", "--tag", "OrderCreated")
    results = []
    try:
        d.start()
        for name in args.scenario or list(SCENARIOS):
            print(f"== {name}: {SCENARIOS[name][0]}", flush=True)
            result = run_scenario(d, name, args.events, args.scale)
            results.append(result)
            print(json.dumps(asdict(result)), flush=True)
    finally:
        d.stop()
    text = report(results, started, args)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / "report.md").write_text(text)
    (LOG_DIR / "report.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    print(text)
    failed = [r.scenario for r in results if not r.passed]
    if failed:
        print(f"FAILED: {', '.join(failed)} (logs in {LOG_DIR})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
