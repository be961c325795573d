"""A real process running the import is killed (SIGKILL) in the middle; the import resumes where it stopped and
no order reaches Rule twice."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from integration.history import runner
from integration.history.models import HistoryBatch, HistoryImport
from tests.history.test_history_import import fields_of, import_calls
from tests.history.test_killed_during_call import expected_sends, sends
from tests.processes import wait_for


@pytest.mark.cluster
def test_a_killed_import_resumes_without_sending_anything_twice(
    transactional_db, fake_centra, fake_rule, worker, import_process
):
    history, shop, process = import_process("killed-shop")
    # when the first batch is in Rule (its answer recorded) and the process is reading Centra again, it is
    # killed outright (a kill before the answer is recorded sends that batch again: test_killed_during_call.py)
    assert wait_for(lambda: len(import_calls(fake_rule)) >= 1, timeout=60), (
        process.stdout.read() if process.poll() else ""
    )
    assert wait_for(lambda: HistoryBatch.objects.filter(number=1, status=HistoryBatch.Status.SENT).exists(), 30)
    fake_centra.fail("slow", times=1, delay=20)
    seen = len(fake_centra.queries)
    assert wait_for(lambda: len(fake_centra.queries) > seen, timeout=60)
    time.sleep(0.3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    fake_centra.clear_failures()
    sent_before = len(import_calls(fake_rule))
    run = HistoryImport.objects.get(connection=shop)
    assert run.status == HistoryImport.Status.RUNNING and run.lease_until  # it died holding its lease

    # two minutes later the lease has expired; the every-minute tick hands the import to a worker
    later = timezone.now() + timedelta(minutes=2)
    HistoryImport.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert runner.tick(later) == 1
    worker.drain()

    run.refresh_from_db()
    assert run.status == HistoryImport.Status.FINISHED
    calls = import_calls(fake_rule)
    assert len(calls) > sent_before
    expected = expected_sends(history)
    assert sends(calls) == expected
    numbers = [fields_of(s)["Order.Number"] for c in calls for s in c["subscribers"] if s.get("fields")]
    assert len(numbers) == len(set(numbers))
    assert run.sent == sum(expected.values())
