"""The benchmarks' peer: a small hand-written Celery + Redis worker delivering one Rule call per delivery.

What a team would write without this service's engine: one task per delivery id, which claims the row with a
conditional UPDATE, writes the attempt row, POSTs the stored request body to Rule (a keep-alive session per
process, no transaction open) and records the answer on the attempt and the delivery in one short transaction.
No coalescing, no pacing, no retry schedule: the plain baseline the issue compares against. It reads and writes
the service's own tables through the ORM (Django set up in every worker process).

Started by the benchmarks as `python -m celery -A tests.bench.celery_peer worker ...` (see worker_command) with
the bench environment (DATABASE_URL, FIELD_ENCRYPTION_KEY, CELERY_PEER_BROKER). Needs the `bench` extra.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

try:
    from celery import Celery
    from celery.signals import worker_process_init
except ImportError as exc:  # fail loudly: the peer is part of the figure
    raise SystemExit("the Celery peer needs the bench extra: pip install -e '.[dev,bench]'") from exc

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.bench.bench_settings")
django.setup()

import requests  # noqa: E402
from django.db import connections, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from integration.models import Delivery, DeliveryAttempt  # noqa: E402

BROKER = os.environ.get("CELERY_PEER_BROKER", "redis://127.0.0.1:6379/12")
TASK = "celery_peer.deliver"
LEASE = timedelta(minutes=5)

app = Celery("celery_peer", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    worker_prefetch_multiplier=4,
    task_acks_late=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_session: requests.Session | None = None


@worker_process_init.connect
def _fresh_process(**_) -> None:
    """A forked process opens its own database connections and HTTP session."""
    global _session
    connections.close_all()
    _session = requests.Session()


@app.task(name=TASK)
def deliver(delivery_id: int) -> str:
    now = timezone.now()
    claimed = Delivery.objects.filter(pk=delivery_id, status__in=Delivery.WAITING_STATUSES).update(
        status=Delivery.Status.SENDING, lease_until=now + LEASE, updated_at=now
    )
    if not claimed:
        return "not ours"
    delivery = Delivery.objects.select_related("connection").get(pk=delivery_id)
    with transaction.atomic():
        attempt = DeliveryAttempt.objects.create(delivery=delivery, number=delivery.attempt_count + 1, started_at=now)
        Delivery.objects.filter(pk=delivery_id).update(attempt_count=delivery.attempt_count + 1)
    connection = delivery.connection
    session = _session or requests.Session()
    error, response = "", None
    try:
        response = session.request(
            delivery.method,
            connection.rule_base_url.rstrip("/") + delivery.path,
            json=delivery.request_body,
            headers={"Authorization": f"Bearer {connection.rule_api_key}"},
            timeout=30,
        )
    except requests.RequestException as exc:
        error = exc.__class__.__name__
    ok = response is not None and 200 <= response.status_code < 300
    with transaction.atomic():
        attempt.status_code = response.status_code if response is not None else None
        attempt.response_body = (response.text if response is not None else "")[:1000]
        attempt.error = error
        attempt.outcome = "succeeded" if ok else "failed"
        attempt.save(update_fields=["status_code", "response_body", "error", "outcome"])
        Delivery.objects.filter(pk=delivery_id).update(
            status=Delivery.Status.SUCCEEDED if ok else Delivery.Status.FAILED,
            finished_at=timezone.now(),
            lease_until=None,
            last_error="" if ok else f"{attempt.status_code or error}",
        )
    return attempt.outcome


def enqueue(delivery_ids: list[int], queue: str) -> None:
    """One task per delivery, sent before the worker starts (the backlog waits in Redis)."""
    with app.producer_or_acquire() as producer:
        for pk in delivery_ids:
            app.send_task(TASK, args=[pk], queue=queue, producer=producer)


def purge(queue: str) -> None:
    """Drop what an earlier run left in the peer's queue."""
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)


def worker_command(queue: str, processes: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tests.bench.celery_peer",
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        str(processes),
        "--queues",
        queue,
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
