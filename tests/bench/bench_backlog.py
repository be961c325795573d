"""Backlog: stored inbound events processed and delivered by one qcluster (2 workers) against the fake Rule at 20 ms,
beside a hand-written Celery + Redis peer doing the same Rule calls one per event, in the same run.

1. N JSON events (OrderCompleted, OrderShipped, RefundCompleted and Newsletter in turn, each about its own
   shopper, spread over 4 connections) are stored as the door stores them: validated, turned into rows and
   stored 100 per request with `store_events`, whose processing tasks wait in the Redis queue (no worker runs).
2. The fake Rule (`manage.py fakerule --latency-ms 20`, its own process) and one `qcluster` (2 workers, Redis
   broker, PostgreSQL) start; the clock runs from the cluster's start until no event is left to process and
   every delivery succeeded. Figures: events/s, wall time, Rule calls (the fake's own count), events per call;
   the fake's count of subscribers it accepted (in all and distinct) must equal the deliveries (exactly once).
3. The Celery peer (tests/bench/celery_peer.py, 2 prefork processes, same Redis server, same fake): a sample of
   the deliveries made in step 2 is put back to pending and sent again one Rule call each (claim row, attempt
   row, POST, record). Its rate is counted from its first attempt's start to its last finish (its start-up
   not counted, in its favour); ours includes the cluster's start-up.

Targets (issue 12): under 60 s for 50,000 events, at most one Rule call per 50 events, at least 10x the peer.
Run alone: `.venv/bin/python tests/bench/bench_backlog.py [--quick | --events N] [--peer-events M]`.
"""

from __future__ import annotations

import copy
import json
import sys
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import common

DBNAME = common.db_name("bench_backlog")
QUEUE = common.db_name("bench-backlog")  # the queue too: BENCH_DB_SUFFIX keeps it apart
PEER_QUEUE = common.db_name("bench-backlog-celery-peer")
WORKERS = 2
LATENCY_MS = 20
CONNECTIONS = 4
PER_REQUEST = 100  # events per stored "request", as the door takes them
RULE_KEY = "bench-rule-key-0123456789"
EVENT_TYPES = ("OrderCompleted", "OrderShipped", "RefundCompleted", "Newsletter")
# Rule's budget is not what this bench measures (bench_budget.py is): a ceiling well above what 4 connections
# need here, so pacing never holds the drain back.
CALLS_PER_MINUTE = "6000"


# ---------------------------------------------------------------- events


def _person(order: dict, n: int) -> None:
    email = f"shopper{n}@example.com"
    order["customer"] = {**order["customer"], "email": email, "id": 500000 + n}
    phone = f"+4670{n % 10_000_000:07d}"
    for address in ("shippingAddress", "billingAddress"):
        order[address] = {**order[address], "email": email, "phoneNumber": phone}


def _order(n: int) -> dict:
    from integration.mapping import samples

    order = copy.deepcopy(samples.ORDER)
    order["number"] = 1_000_000 + n
    order["id"] = f"bench{n:012d}"
    _person(order, n)
    return order


def json_event(run: str, n: int) -> dict:
    """The n-th event of a run, as a storefront posts it: its type in turn, about its own shopper and object."""
    from integration.mapping import samples

    event_type = EVENT_TYPES[n % len(EVENT_TYPES)]
    envelope = {"id": f"{run}-{n}", "type": event_type, "occurredAt": "2026-11-29T12:00:00Z"}
    if event_type == "OrderCompleted":
        return {**envelope, "order": _order(n)}
    if event_type == "OrderShipped":
        shipment = {**copy.deepcopy(samples.SHIPMENT), "id": 2_000_000 + n, "number": f"{1_000_000 + n}-1"}
        shipment["order"] = _order(n)
        return {**envelope, "shipment": shipment}
    if event_type == "RefundCompleted":
        ret = {**copy.deepcopy(samples.RETURN), "id": 3_000_000 + n}
        ret["order"] = _order(n)
        return {**envelope, "return": ret}
    return {**samples.sample("Newsletter"), **envelope, "email": f"reader{n}@example.com"}


def make_connections(count: int, rule_url: str) -> list:
    from integration.models import Connection

    return [
        Connection.objects.create_with_flows(name=f"bench {k + 1}", rule_api_key=RULE_KEY, rule_api_url=rule_url)
        for k in range(count)
    ]


def store_backlog(connections: list, count: int) -> int:
    """`count` events stored as the door stores them (rows from `json_events_to_store`, PER_REQUEST a call of
    `store_events`, one processing task each on commit); returns how many were accepted. The first request's
    events go through the door's validation; the rest, made the same way, skip it to keep the set-up short."""
    from datetime import UTC, datetime

    from integration.inbound.store import json_events_to_store, store_events, validate_json_events
    from integration.inbound.validation import CheckedEvent

    run = uuid.uuid4().hex[:8]
    occurred = datetime(2026, 11, 29, 12, tzinfo=UTC)
    accepted = 0
    for request_no, start in enumerate(range(0, count, PER_REQUEST)):
        connection = connections[request_no % len(connections)]
        events = [json_event(run, n) for n in range(start, min(start + PER_REQUEST, count))]
        if request_no == 0:
            checked = validate_json_events(events)
        else:
            envelope = ("id", "type", "occurredAt")
            checked = [
                CheckedEvent(e["id"], e["type"], occurred, {k: v for k, v in e.items() if k not in envelope})
                for e in events
            ]
        accepted += store_events(connection, json_events_to_store(connection, checked)).accepted
        if request_no % 100 == 99:
            common.progress(f"backlog: {start + PER_REQUEST} events stored")
    return accepted


# ---------------------------------------------------------------- the fake Rule's own count


def fake_stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_fake/stats", timeout=60) as answer:
        return json.load(answer)


def clear_fake(port: int) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/_fake/requests", method="DELETE")
    urllib.request.urlopen(request, timeout=30).close()


def fake_control(port: int, **control) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/_fake/control",
        data=json.dumps(control).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        if answer.status != 200:
            raise RuntimeError(f"the fake Rule refused the control {control}: {answer.status}")


# ---------------------------------------------------------------- waiting


def counts() -> dict:
    """Inbound events and deliveries by status (one query each)."""
    from django.db.models import Count

    from integration.models import Delivery, InboundEvent

    inbound = dict(InboundEvent.objects.order_by().values_list("status").annotate(n=Count("id")))
    deliveries = dict(Delivery.objects.order_by().values_list("status").annotate(n=Count("id")))
    return {"inbound": inbound, "deliveries": deliveries}


def drained(state: dict) -> bool:
    """Nothing left to process and no delivery open."""
    from integration.models import Delivery, InboundEvent

    if state["inbound"].get(InboundEvent.Status.RECEIVED, 0):
        return False
    return not any(state["deliveries"].get(s, 0) for s in Delivery.OPEN_STATUSES)


def delivered_events() -> int:
    """Inbound events processed whose every delivery succeeded (what a drain that ran out of time did finish)."""
    from django.db.models import Exists, OuterRef

    from integration.models import Delivery, InboundEvent

    unfinished = Delivery.objects.filter(inbound_event=OuterRef("pk")).exclude(status=Delivery.Status.SUCCEEDED)
    return InboundEvent.objects.filter(status=InboundEvent.Status.PROCESSED).exclude(Exists(unfinished)).count()


def wait_until(done, deadline: float, label: str, every: float = 1.0) -> tuple[bool, dict]:
    """Poll `counts()` until `done(state)` or the deadline; progress every 10 s."""
    last_report = time.monotonic()
    while True:
        state = counts()
        if done(state):
            return True, state
        if time.monotonic() >= deadline:
            return False, state
        if time.monotonic() - last_report >= 10:
            common.progress(f"{label}: {state}")
            last_report = time.monotonic()
        time.sleep(every)


# ---------------------------------------------------------------- the runs


def run_ours(env: dict, port: int, expected: int, timeout: float, fake_pid: int) -> dict:
    """One qcluster drains the stored backlog; returns the measured figures (with the CPU time the cluster, all
    its processes, and the fake Rule used meanwhile)."""
    from django.db import connections

    from integration.models import Delivery

    connections.close_all()
    clear_fake(port)
    started = time.monotonic()
    fake_before = common.group_cpu_seconds(fake_pid)
    with common.child("backlog-qcluster", [common.PYTHON, "manage.py", "qcluster"], env) as cluster:
        finished, state = wait_until(drained, started + timeout, "backlog")
        wall = time.monotonic() - started
        cluster_cpu = common.group_cpu_seconds(cluster.pid)
    fake_cpu = common.group_cpu_seconds(fake_pid) - fake_before
    # Read again once the cluster has stopped: a call in flight at the deadline is recorded by now.
    state = counts()
    stats = fake_stats(port)
    succeeded = state["deliveries"].get(Delivery.Status.SUCCEEDED, 0)
    posts = Delivery.objects.filter(status=Delivery.Status.SUCCEEDED, method="POST").count()
    return {
        "finished": finished,
        "wall_s": wall,
        "cluster_cpu_s": cluster_cpu,
        "fake_cpu_s": fake_cpu,
        "delivered_events": delivered_events(),
        "posts": posts,
        "state": state,
        "succeeded": succeeded,
        "expected": expected,
        "calls": stats["calls"],
        "statuses": stats["statuses"],
        "endpoints": stats["endpoints"],
        "accepted": stats["subscribers_accepted"],
        "distinct": stats["subscribers_distinct"],
    }


def run_peer(env: dict, port: int, sample: int, timeout: float) -> dict:
    """The Celery peer sends `sample` of the deliveries again, one call each."""
    from django.db import connections
    from django.db.models import Max, Min
    from django.utils import timezone

    from integration.models import Delivery, DeliveryAttempt
    from tests.bench import celery_peer

    ids = list(Delivery.objects.filter(method="POST").order_by("pk").values_list("pk", flat=True)[:sample])
    DeliveryAttempt.objects.all().delete()
    Delivery.objects.filter(pk__in=ids).update(
        status=Delivery.Status.PENDING, attempt_count=0, finished_at=None, next_attempt_at=timezone.now()
    )
    Delivery.objects.exclude(pk__in=ids).delete()
    connections.close_all()
    clear_fake(port)
    celery_peer.purge(PEER_QUEUE)
    celery_peer.enqueue(ids, PEER_QUEUE)
    started = time.monotonic()

    def done(state: dict) -> bool:
        return state["deliveries"].get(Delivery.Status.SUCCEEDED, 0) + state["deliveries"].get("failed", 0) >= len(ids)

    with common.child("backlog-celery-peer", celery_peer.worker_command(PEER_QUEUE, WORKERS), env):
        finished, state = wait_until(done, started + timeout, "celery peer")
        wall = time.monotonic() - started
    first = DeliveryAttempt.objects.aggregate(t=Min("started_at"))["t"]
    last = Delivery.objects.aggregate(t=Max("finished_at"))["t"]
    span = (last - first).total_seconds() if first and last else float("nan")
    succeeded = state["deliveries"].get(Delivery.Status.SUCCEEDED, 0)
    stats = fake_stats(port)
    return {
        "finished": finished,
        "sample": len(ids),
        "succeeded": succeeded,
        "span_s": span,
        "wall_s": wall,
        "rate": succeeded / span if span else 0.0,
        "calls": stats["calls"],
        "statuses": stats["statuses"],
    }


def main() -> None:
    args = common.parse_args(
        __doc__,
        [
            ("--events", {"type": int, "help": "stored events (default 50,000; --quick 5,000)"}),
            ("--peer-events", {"type": int, "help": "deliveries the Celery peer sends (default 3,000; quick 600)"}),
        ],
    )
    count = args.events or (5_000 if args.quick else 50_000)
    sample = min(args.peer_events or (600 if args.quick else 3_000), count)
    env = common.bench_env(
        DBNAME,
        redis=True,
        queue=QUEUE,
        Q_WORKERS=str(WORKERS),
        RULE_CALLS_PER_MINUTE=CALLS_PER_MINUTE,
        CELERY_PEER_BROKER=f"{common.REDIS_SERVER}/{common.REDIS_DB}",
    )
    common.progress(f"backlog: fresh database {DBNAME}")
    common.recreate_database(DBNAME)
    common.migrate(env)
    common.clear_queue(QUEUE)
    common.setup_django(env)

    port = common.free_port()
    with common.start_fake_rule(env, port, RULE_KEY, LATENCY_MS, name="backlog-fakerule") as fake:
        connections = make_connections(CONNECTIONS, f"http://127.0.0.1:{port}/api/v2")
        clock = time.monotonic()
        accepted = store_backlog(connections, count)
        setup = time.monotonic() - clock
        common.progress(f"backlog: {accepted} events stored in {setup:.0f} s; qcluster starts")
        ours = run_ours(env, port, accepted, timeout=max(300.0, count / 20), fake_pid=fake.pid)
        processed = ours["state"]["inbound"].get("processed", 0)
        rate = ours["delivered_events"] / ours["wall_s"] if ours["wall_s"] else 0.0
        common.progress(
            f"backlog: {processed}/{accepted} events processed, {ours['succeeded']} deliveries succeeded in "
            f"{ours['wall_s']:.1f} s ({rate:.0f} events/s), Rule calls {ours['endpoints']}, "
            f"answers {ours['statuses']}; "
            f"CPU: qcluster {ours['cluster_cpu_s']:.1f} s ({1000 * ours['cluster_cpu_s'] / count:.2f} ms/event), "
            f"fake Rule {ours['fake_cpu_s']:.1f} s"
        )
        peer = run_peer(env, port, sample, timeout=max(120.0, sample / 5))
        common.progress(
            f"backlog: celery peer {peer['succeeded']}/{peer['sample']} in {peer['span_s']:.1f} s "
            f"({peer['rate']:.1f}/s), {peer['calls']} Rule calls"
        )

    per_call = ours["delivered_events"] / ours["calls"] if ours["calls"] else 0.0
    deliveries = sum(ours["state"]["deliveries"].values())
    # Every event processed and every delivery it made succeeded (an OrderCompleted makes a cart tag removal, a
    # DELETE call, only for a shopper whose cart went through the connection: none here, each shopper is new).
    complete = ours["finished"] and processed == accepted == count and ours["succeeded"] == deliveries
    exactly_once = ours["accepted"] == ours["distinct"] == ours["posts"]
    figures = [
        common.figure(
            f"events processed and delivered per second ({count:,} stored events)",
            rate,
            "events/s",
            baseline=f"Celery + Redis peer, {WORKERS} prefork processes, one Rule call per event",
            baseline_value=peer["rate"],
            target=">= 10 x peer, all delivered",
            ok=bool(peer["rate"]) and rate >= 10 * peer["rate"] and complete,
        ),
        common.figure(
            "wall time, qcluster start to the last delivery",
            ours["wall_s"],
            "s",
            baseline=f"the peer's time for the same events at its rate ({count:,} / peer rate)",
            baseline_value=count / peer["rate"] if peer["rate"] else None,
            target="< 60 s" if count >= 50_000 else f"< {60 * count / 50_000:.1f} s (60 s scaled to the size)",
            ok=complete and ours["wall_s"] < 60 * count / 50_000,
        ),
        common.figure(
            "events per Rule call (the fake's own count of calls)",
            per_call,
            "events/call",
            baseline="one call per event (the peer)",
            baseline_value=1.0,
            target=">= 50",
            ok=per_call >= 50,
        ),
        common.figure(
            "CPU time of the qcluster (all its processes) per event, processing and delivery",
            1000 * ours["cluster_cpu_s"] / count,
            "ms/event",
            target="<= 10 ms (issue 12: the whole pipeline's worker time per event)",
            ok=1000 * ours["cluster_cpu_s"] / count <= 10,
        ),
        common.figure("CPU time of the fake Rule while draining", ours["fake_cpu_s"], "s"),
        common.figure(
            "subscribers Rule accepted / deliveries succeeded (exactly once)",
            ours["distinct"] / ours["posts"] if ours["posts"] else 0.0,
            "",
            target="= 1, no subscriber twice",
            ok=exactly_once and complete,
        ),
    ]
    notes = [
        f"{count:,} events stored as the door stores them ({PER_REQUEST} a request, {CONNECTIONS} connections, "
        f"{', '.join(EVENT_TYPES)} in turn) in {setup:.0f} s before the cluster started",
        f"ours: {processed:,} of {accepted:,} events processed, {ours['delivered_events']:,} with every delivery "
        f"succeeded, and {ours['succeeded']:,} of {deliveries:,} "
        f"deliveries succeeded ({ours['posts']:,} POST /subscribers, {deliveries - ours['posts']:,} cart tag "
        "removals: the shoppers have no cart here) in "
        f"{ours['wall_s']:.1f} s, qcluster start-up included; {ours['calls']:,} Rule calls {ours['endpoints']}, "
        f"answers {ours['statuses']}; the fake accepted {ours['accepted']:,} subscribers, {ours['distinct']:,} "
        f"distinct; final state {ours['state']}",
        f"peer: {peer['succeeded']:,} of {peer['sample']:,} deliveries in {peer['span_s']:.1f} s from its first "
        f"attempt to its last finish ({peer['wall_s']:.1f} s with start-up); {peer['calls']:,} Rule calls, "
        f"answers {peer['statuses']}",
        f"Rule's budget is not measured here: RULE_CALLS_PER_MINUTE={CALLS_PER_MINUTE} (bench_budget.py measures it)",
    ]
    if not ours["finished"]:
        notes.append(f"ours did not finish within its deadline: {ours['state']}")
    if not peer["finished"]:
        notes.append(f"the peer did not finish within its deadline: {peer['succeeded']} of {peer['sample']}")
    params = {
        "events": count,
        "connections": CONNECTIONS,
        "workers": WORKERS,
        "rule_latency_ms": LATENCY_MS,
        "peer_events": peer["sample"],
        "broker": "redis",
        "database": "postgresql",
    }
    common.emit("backlog", args.quick, figures, params, notes)


if __name__ == "__main__":
    main()
