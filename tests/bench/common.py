"""What the benchmarks share: databases, environments, child processes, the JSON line each script prints.

Every benchmark uses its own PostgreSQL database (bench_<name>) and its own Redis database and queue name, so
it never touches another run's data. Figures go out as one JSON line:

    {"bench": "ingest", "quick": false, "figures": [{"name", "value", "unit", "baseline", "baseline_value",
     "ratio", "target", "ok"}], "params": {...}, "notes": [...]}

`ratio` is value / baseline_value (for a rate: the share of the baseline reached; for a time: how many times
the baseline it takes). `target` is a readable condition and `ok` whether this run met it (None: no target).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
LOG_DIR = ROOT / "var" / "bench"
PG_SERVER = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_SERVER = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
# The benchmarks' own Redis database; each run also uses its own queue name. BENCH_REDIS_DB and BENCH_PORTS
# ("18600-18699") let a run share the machine with others without touching their databases or ports.
REDIS_DB = int(os.environ.get("BENCH_REDIS_DB", "12"))
PORTS = os.environ.get("BENCH_PORTS", "")
BENCH_SETTINGS = "tests.bench.bench_settings"
# Fixed keys so a bench database built by one run can be read (secrets decrypted) by the next.
BENCH_SECRET_KEY = "bench-secret-key-not-for-production"
BENCH_FIELD_KEY = "bench-field-encryption-key-not-for-production"


def parse_args(description: str, extra: list[tuple[str, dict]] | None = None) -> argparse.Namespace:
    """`--quick` (smaller sizes) for every script, plus the script's own options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for trying the harness")
    for flag, options in extra or []:
        parser.add_argument(flag, **options)
    return parser.parse_args()


# ---------------------------------------------------------------- databases


def db_name(base: str) -> str:
    """A benchmark's own database: bench_<name>, plus BENCH_DB_SUFFIX when set (two people benchmarking at once
    on one server would otherwise drop each other's database)."""
    return base + os.environ.get("BENCH_DB_SUFFIX", "")


def pg_url(dbname: str) -> str:
    return f"{PG_SERVER}/{dbname}"


def _admin_connection():
    import psycopg

    return psycopg.connect(pg_url("postgres"), autocommit=True)


def database_exists(dbname: str) -> bool:
    with _admin_connection() as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone() is not None


def recreate_database(dbname: str) -> None:
    """Drop (ending its sessions) and create one of the benchmarks' own databases."""
    if not dbname.startswith("bench_"):
        raise ValueError(f"refusing to drop {dbname!r}: bench databases are named bench_*")
    from psycopg import sql

    with _admin_connection() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def bench_env(dbname: str, *, redis: bool, queue: str, settings: str = BENCH_SETTINGS, **extra: str) -> dict:
    """The environment of every process of one benchmark (web, worker, fake Rule, the script itself)."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DATABASE_URL=pg_url(dbname),
        DJANGO_SETTINGS_MODULE=settings,
        DEBUG="false",
        SECRET_KEY=BENCH_SECRET_KEY,
        FIELD_ENCRYPTION_KEY=BENCH_FIELD_KEY,
        ALLOW_PRIVATE_UPSTREAMS="1",  # the fake Rule listens on loopback
        SANDBOX="1",  # `manage.py fakerule` (the doubles are off without DEBUG)
        LOG_LEVEL="WARNING",
        Q_CLUSTER_NAME=queue,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        # The benches measure our own cost per event, not Rule's budget (its ceiling has its own bench); a bench
        # that wants the default ceiling passes RULE_CALLS_PER_MINUTE itself.
        RULE_CALLS_PER_MINUTE="60000",
    )
    if redis:
        env["REDIS_URL"] = f"{REDIS_SERVER}/{REDIS_DB}"
    env.update(extra)
    return env


def use_env(env: dict) -> None:
    """Make this process's environment `env` (before django.setup())."""
    for key in list(os.environ):
        if key not in env:
            del os.environ[key]
    os.environ.update(env)


def setup_django(env: dict) -> None:
    use_env(env)
    import django

    django.setup()


def migrate(env: dict) -> None:
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


def clear_queue(queue: str) -> None:
    """Drop whatever an earlier run left in this benchmark's Redis queue."""
    import redis

    client = redis.Redis.from_url(f"{REDIS_SERVER}/{REDIS_DB}")
    keys = list(client.scan_iter(f"django_q:{queue}:*"))
    if keys:
        client.delete(*keys)


# ---------------------------------------------------------------- child processes


_next_port = [0]


def free_port() -> int:
    """A port nothing listens on: any the system offers, or the next free one in BENCH_PORTS when it is set."""
    if PORTS:
        low, high = (int(x) for x in PORTS.split("-"))
        for _ in range(high - low + 1):
            port = low + _next_port[0] % (high - low + 1)
            _next_port[0] += 1
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
        raise RuntimeError(f"no free port in BENCH_PORTS={PORTS}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@contextlib.contextmanager
def child(name: str, args: list[str], env: dict, port: int | None = None) -> Iterator[subprocess.Popen]:
    """Run a child process (its output in var/bench/<name>.log) for the duration of the block."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / f"{name}.log", "wb") as log:
        process = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            if port is not None:
                wait_for_port(port, process=process)
            yield process
        finally:
            stop(process)


def stop(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM the child's own process group (gunicorn and qcluster fork workers), then SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def start_fake_rule(env: dict, port: int, api_key: str, latency_ms: int, name: str = "fakerule"):
    """The fake Rule (integration/sandbox/fake_rule.py) in its own process, answering after `latency_ms`."""
    args = [PYTHON, "manage.py", "fakerule", "--port", str(port), "--api-key", api_key, "--latency-ms", str(latency_ms)]
    return child(name, args, env, port=port)


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU used so far by every process of a child's process group (a qcluster and the workers it
    forked; children it has reaped included), from Linux /proc: less sensitive to a loaded machine than wall time."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        # after the name: state ppid pgrp ... utime(12) stime(13) cutime(14) cstime(15), counted from `state`
        if int(fields[2]) == pgid:
            total += sum(int(x) for x in fields[11:15])
    return total / ticks


# ---------------------------------------------------------------- figures


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; values need not be sorted."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def figure(
    name: str,
    value: float,
    unit: str,
    *,
    baseline: str = "",
    baseline_value: float | None = None,
    target: str = "",
    ok: bool | None = None,
) -> dict:
    ratio = value / baseline_value if baseline_value else None
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": None if baseline_value is None else round(baseline_value, 3),
        "ratio": None if ratio is None else round(ratio, 3),
        "target": target,
        "ok": ok,
    }


def emit(bench: str, quick: bool, figures: list[dict], params: dict, notes: list[str] | None = None) -> None:
    """The one JSON line run_all.py reads (the last line of stdout)."""
    print(
        json.dumps({"bench": bench, "quick": quick, "figures": figures, "params": params, "notes": notes or []}),
        flush=True,
    )


def progress(message: str) -> None:
    """Human progress on stderr; stdout carries only the JSON line."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
