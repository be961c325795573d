"""History import: 100,000 orders read from the fake Centra and imported into the fake Rule at 20 ms.

Targets (issue 14): under 5 minutes of wall time, at most one Rule call per 500 orders. The fake Centra serves a
generated history (integration/sandbox/history.py, seed 14, five years, seven markets) in a process of its own,
the fake Rule answers every call after 20 ms in another, and `manage.py import_history` drives the import on
PostgreSQL with the default Rule budget (60 calls a minute). Baselines measured in the same run: the ideal
wall time of the Rule calls alone (calls x 20 ms, what a sender with nothing else to do would need) and the
budget's own floor ((calls - 1) x 1 s at 60 calls a minute); for calls, the fewest possible (orders / 1,000).
The CPU time of the import worker (user + system, from its rusage) and of the fake Centra (from /proc) are
reported beside the wall time: on a shared machine they say more about the code than the wall time does.
Run alone: `.venv/bin/python tests/bench/bench_history.py [--quick | --orders N]`; with
BENCH_HISTORY_PROFILE=PATH the worker runs under cProfile and leaves its stats in PATH.
"""

import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import common

RULE_KEY = "bench-rule-key-0123456789"
CENTRA_TOKEN = "bench-centra-token-0123456789"
DBNAME = common.db_name("bench_history")
LATENCY_MS = 20
SEED = 14


def cpu_seconds(pid: int) -> float:
    """User + system CPU a running process has used so far (Linux /proc; less sensitive to load than wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    args = common.parse_args(__doc__, [("--orders", {"type": int, "help": "orders in the history (default 100,000)"})])
    profile = os.environ.get("BENCH_HISTORY_PROFILE", "")  # a path: the worker runs under cProfile, stats there
    orders = args.orders or (10_000 if args.quick else 100_000)
    # The connection keeps the default Rule ceiling (60 calls a minute): the import is measured within its budget.
    env = common.bench_env(
        DBNAME, redis=False, queue=common.db_name("bench-history"), SANDBOX="1", RULE_CALLS_PER_MINUTE="60"
    )
    common.recreate_database(DBNAME)
    common.migrate(env)
    common.setup_django(env)
    from django.db import connections

    from integration.history.models import HistoryImport
    from integration.models import Connection
    from integration.rule.budget import calls_per_minute

    rule_port, centra_port = common.free_port(), common.free_port()
    centra_args = [
        common.PYTHON,
        "manage.py",
        "fakecentra",
        "--port",
        str(centra_port),
        "--token",
        CENTRA_TOKEN,
        "--history",
        str(orders),
        "--seed",
        str(SEED),
    ]
    with (
        common.start_fake_rule(env, rule_port, RULE_KEY, LATENCY_MS, name="history-fakerule"),
        common.child("history-fakecentra", centra_args, env, port=centra_port) as centra,
    ):
        connection = Connection.objects.create_with_flows(
            name="bench-history",
            rule_api_key=RULE_KEY,
            rule_api_url=f"http://127.0.0.1:{rule_port}/api/v2",
            centra_api_url=f"http://127.0.0.1:{centra_port}/graphql",
            centra_api_token=CENTRA_TOKEN,
        )
        ceiling = calls_per_minute(connection)
        connections.close_all()
        common.progress(f"history: importing {orders} orders (Rule at {LATENCY_MS} ms, {ceiling} calls a minute)")
        started = time.monotonic()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        centra_before = cpu_seconds(centra.pid)
        python = [common.PYTHON, "-m", "cProfile", "-o", profile] if profile else [common.PYTHON]
        command = [*python, "manage.py", "import_history", connection.name, "--since", "2000-01-01"]
        done = subprocess.run(
            [*command, "--only", "orders"], cwd=common.ROOT, env=env, stdout=subprocess.PIPE, text=True, check=True
        )
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        centra_cpu = cpu_seconds(centra.pid) - centra_before
        common.progress(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "no summary")
        run = HistoryImport.objects.get(connection__name="bench-history")
    connections.close_all()
    ideal = run.calls * LATENCY_MS / 1000
    floor = max(run.calls - 1, 0) * 60 / ceiling
    fewest = math.ceil(run.sent / 1000)
    figures = [
        common.figure(
            f"wall time, {orders:,} orders",
            wall,
            "s",
            baseline="ideal: Rule calls x 20 ms",
            baseline_value=ideal,
            target="< 300 s",
            ok=wall < 300 and run.status == "finished",
        ),
        common.figure(
            "wall time against the budget's floor",
            wall,
            "s",
            baseline=f"(calls - 1) at {ceiling} calls a minute",
            baseline_value=floor,
        ),
        common.figure(
            "Rule calls",
            run.calls,
            "calls",
            baseline="fewest: subscribers sent / 1,000",
            baseline_value=fewest,
            target=f"<= {orders // 500} (one per 500 orders)",
            ok=run.calls <= orders / 500,
        ),
        common.figure("orders read per second", run.fetched / wall, "orders/s"),
        common.figure("CPU time of the import worker (user + system)", worker_cpu, "s"),
        common.figure("CPU time of the fake Centra while importing", centra_cpu, "s"),
    ]
    params = {
        "orders": orders,
        "sent": run.sent,
        "skipped": run.skipped,
        "failed": run.failed,
        "status": run.status,
        "rule_latency_ms": LATENCY_MS,
        "calls_per_minute": ceiling,
        "seed": SEED,
    }
    notes = [f"skipped: {run.skip_reasons}"]
    common.emit("history", args.quick, figures, params, notes)


if __name__ == "__main__":
    main()
