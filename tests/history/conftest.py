"""Fixtures for the history import: a fake Centra serving a generated history, and a way to run an import's
queued steps the way a worker would."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.factories import ConnectionFactory
from tests.processes import manage

END = datetime(2026, 11, 1, tzinfo=UTC)
START = datetime(2022, 11, 1, tzinfo=UTC)


@pytest.fixture
def history(fake_centra):
    """3,000 orders over four years in seven markets (seed 14), served by the fake Centra."""
    return fake_centra.generate_history(orders=3000, seed=14, start=START, end=END)


@pytest.fixture
def importing(centra_connection, history, settings):
    """The connection pointed at the fake Centra and Rule, with a Rule budget that does not slow tests down."""
    settings.RULE_CALLS_PER_MINUTE = 60_000
    return centra_connection


class Worker:
    """Runs queued tasks in queue order, as one worker would, with on-commit enqueues taking effect."""

    def __init__(self, task_queue, capture) -> None:
        self.task_queue, self.capture = task_queue, capture

    def run_one(self):
        """Run the task at the head of the queue; its result."""
        from django.utils.module_loading import import_string
        from django_q.models import OrmQ

        row = OrmQ.objects.order_by("id").first()
        task = row.task
        row.delete()
        with self.capture(execute=True):
            return task["func"], import_string(task["func"])(*task["args"], **task.get("kwargs", {}))

    def drain(self, limit: int = 10_000) -> list:
        """Run tasks until the queue is empty; [(task path, result)] in the order they ran."""
        results = []
        while self.task_queue.pending() and len(results) < limit:
            results.append(self.run_one())
        return results


@pytest.fixture
def worker(task_queue, django_capture_on_commit_callbacks) -> Worker:
    return Worker(task_queue, django_capture_on_commit_callbacks)


@pytest.fixture
def import_process(fake_centra, fake_rule, settings):
    """Starts `manage.py import_history` in a process of its own (so a test can kill it) for a new connection over
    3,000 generated orders (seed 14), with a Rule budget that does not slow tests down: `start(name)` gives
    (history, connection, process). A process still running at the end of the test is killed."""
    settings.RULE_CALLS_PER_MINUTE = 60_000
    processes = []

    def start(name: str):
        history = fake_centra.generate_history(orders=3000, seed=14, start=START, end=END)
        shop = ConnectionFactory(
            name=name,
            rule_api_url=fake_rule.url,
            rule_api_key=fake_rule.api_key,
            centra_api_url=fake_centra.url,
            centra_api_token=fake_centra.token,
        )
        process = manage(
            "import_history", shop.name, "--since", "2022-11-01", "--only", "orders", RULE_CALLS_PER_MINUTE="60000"
        )
        processes.append(process)
        return history, shop, process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
