"""Benchmark: N watchers of one size restocked with enough stock, all alerted through a fake Rule (20 ms latency).

Measures the wall time from "stock is back" until Rule has answered every batch, and the peak RSS of this
process (psutil, sampled in a thread) while doing it. Targets: under 2 minutes and under 300 MB for 100,000.

    .venv/bin/python tests/bench/bench_backinstock.py [--watchers N] [--senders K]

Uses a fresh SQLite file under var/ (or a scratch PostgreSQL database when BENCH_DATABASE_URL is set, e.g.
postgres://postgres@127.0.0.1:5432/bench_backinstock), migrates it, and removes it afterwards. The fake Rule
runs in a child process so its own bookkeeping does not count towards this process's memory. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ITEM = "12366-23400"
RULE_KEY = "bench-rule-key-3c9e"
TARGET_SECONDS = 120
TARGET_MB = 300
FAKE_RULE = (
    "import sys; from integration.sandbox.fake_rule import FakeRule; "
    "FakeRule(api_key=sys.argv[1], port=int(sys.argv[2]), latency_ms=20).serve_forever()"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"fake Rule did not start on port {port}")


class PeakRss:
    """Peak resident memory of this process, sampled every 20 ms in a thread."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def scratch_database() -> tuple[str, callable]:
    """A DATABASE_URL for a fresh database and the function that removes it."""
    pg = os.environ.get("BENCH_DATABASE_URL", "")
    if pg:
        import psycopg
        from psycopg import sql

        parts = urlsplit(pg)
        name = parts.path.lstrip("/") or "bench_backinstock"
        if not name.startswith("bench_"):
            raise SystemExit(f"refusing to use {name!r}: the scratch database must be named bench_*")
        admin = urlunsplit(parts._replace(path="/postgres"))

        def run(statement) -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(statement)

        run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

        def drop() -> None:
            from django.db import connections

            connections.close_all()
            run(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

        return urlunsplit(parts._replace(path=f"/{name}")), drop
    path = ROOT / "var" / f"bench-backinstock-{os.getpid()}.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)

    def remove() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

    remove()
    return f"sqlite:///{path}", remove


def setup_django(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("SECRET_KEY", "bench-backinstock-secret-key-not-for-production")
    os.environ.setdefault("FIELD_ENCRYPTION_KEY", "bench-backinstock-field-key")
    os.environ.setdefault("ALLOW_PRIVATE_UPSTREAMS", "1")
    os.environ.pop("REDIS_URL", None)  # the ORM broker: nothing outside the scratch database
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def create_watchers(connection, count: int) -> None:
    """`count` waiting watchers of one size, one second apart, inserted in chunks."""
    from django.utils import timezone

    from backinstock.models import Watcher

    start = timezone.now() - timedelta(days=30)
    product = {
        "name": "Wool Coat",
        "brand": "Acme",
        "size": "M",
        "sku": "WC-100",
        "sizeSku": "WC-100-M",
        "uri": "https://shop.example/wool-coat",
        "price": "1 999.00 SEK",
        "priceAmount": "1999.00",
        "currency": "SEK",
    }
    chunk = 5000
    for first in range(0, count, chunk):
        Watcher.objects.bulk_create(
            [
                Watcher(
                    connection=connection,
                    email=f"shopper{n:06d}@example.com",
                    item=ITEM,
                    sku="WC-100-M",
                    language=("sv", "fi", "en")[n % 3],
                    country="SE",
                    product=product,
                    created_at=start + timedelta(seconds=n),
                )
                for n in range(first, min(first + chunk, count))
            ]
        )


def alert_everyone(connection, count: int, senders: int) -> dict:
    """Stock comes back; batches are stored by this thread and sent by `senders` threads as they commit."""
    from django.db import connections

    from backinstock.alerts import batch_key, iter_batches
    from backinstock.models import BackInStockSettings, ItemStock
    from backinstock.stock import record_stock
    from integration.delivery.engine import deliver
    from integration.models import Delivery

    work: queue.Queue[int | None] = queue.Queue()
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def send() -> None:
        try:
            while (delivery_id := work.get()) is not None:
                outcome = deliver(delivery_id)
                with lock:
                    outcomes[outcome] = outcomes.get(outcome, 0) + 1
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    settings = BackInStockSettings.of(connection)
    stock = -(-count // settings.alerts_per_unit) + settings.min_stock
    restock = record_stock(connection, ITEM, stock, source=ItemStock.Source.EVENT)
    batches = 0
    for _alerted in iter_batches(restock.pk):
        batches += 1
        work.put(Delivery.objects.values_list("id", flat=True).get(idempotency_key=batch_key(restock.pk, batches)))
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join()
    return {"batches": batches, "outcomes": outcomes, "restock_id": restock.pk}


def check(connection, count: int, rule_url: str) -> list[str]:
    """What a user would check: every watcher alerted once, every batch accepted by Rule, none over 100."""
    import requests
    from django.db.models import Count

    from backinstock.models import Watcher
    from integration.models import Delivery

    problems = []
    statuses = dict(Watcher.objects.values_list("status").annotate(n=Count("id")))
    if statuses != {"alerted": count}:
        problems.append(f"watcher statuses {statuses}")
    deliveries = dict(
        Delivery.objects.filter(event="ProductAlertTriggered").values_list("status").annotate(n=Count("id"))
    )
    if deliveries != {"succeeded": -(-count // 100)}:
        problems.append(f"delivery statuses {deliveries}")
    largest = 0
    for body in (
        Delivery.objects.filter(event="ProductAlertTriggered").values_list("request_body", flat=True).iterator()
    ):
        largest = max(largest, len(body["subscribers"]))
    if largest > 100:
        problems.append(f"a batch of {largest} subscribers")
    rule_subscribers = requests.get(rule_url.rsplit("/api/", 1)[0] + "/_fake/subscribers", timeout=60).json()
    tagged = sum(1 for s in rule_subscribers if "Rule - Product Alert Triggered" in (s.get("tags") or []))
    if tagged != count:
        problems.append(f"Rule holds {tagged} subscribers with the triggered tag, expected {count}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=100_000)
    parser.add_argument("--senders", type=int, default=8, help="threads sending deliveries, like qcluster workers")
    args = parser.parse_args()

    database_url, cleanup = scratch_database()
    port = free_port()
    fake = subprocess.Popen([sys.executable, "-c", FAKE_RULE, RULE_KEY, str(port)], cwd=ROOT)
    try:
        wait_for_port(port)
        setup_django(database_url)
        from integration.models import Connection

        rule_url = f"http://127.0.0.1:{port}/api/v2"
        connection = Connection.objects.create_with_flows(name="bench", rule_api_url=rule_url, rule_api_key=RULE_KEY)
        started = time.monotonic()
        create_watchers(connection, args.watchers)
        setup_seconds = time.monotonic() - started

        with PeakRss() as rss:
            started = time.monotonic()
            result = alert_everyone(connection, args.watchers, args.senders)
            seconds = time.monotonic() - started
        problems = check(connection, args.watchers, rule_url)
        from django.db import connection as db

        peak_mb = rss.peak / 1024 / 1024
        print(
            json.dumps(
                {
                    "bench": "backinstock",
                    "database": db.vendor,
                    "watchers": args.watchers,
                    "senders": args.senders,
                    "batches": result["batches"],
                    "outcomes": result["outcomes"],
                    "setup_seconds": round(setup_seconds, 2),
                    "wall_seconds": round(seconds, 2),
                    "peak_rss_mb": round(peak_mb, 1),
                    "targets": {"wall_seconds": f"< {TARGET_SECONDS}", "peak_rss_mb": f"< {TARGET_MB}"},
                    "ok": not problems and seconds < TARGET_SECONDS and peak_mb < TARGET_MB,
                    "problems": problems,
                }
            )
        )
    finally:
        fake.terminate()
        fake.wait(timeout=10)
        cleanup()


if __name__ == "__main__":
    main()
