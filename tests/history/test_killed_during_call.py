"""The Rule call of a batch runs while the next Centra pages are read and mapped. A worker killed (SIGKILL) in that
overlap resumes with every order sent, and none twice beyond what the kill itself left unknown: a batch whose
answer was recorded is never sent again, and the pages read during the call are read again, not skipped."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from integration.history import runner
from integration.history.models import HistoryBatch, HistoryImport
from tests.history.test_history_import import expected_event, import_calls
from tests.processes import wait_for


def expected_sends(history) -> Counter:
    expected = Counter()
    for number in history.numbers():
        event = expected_event(history, number)
        if event is not None:
            expected[(history.order(number)["customer"]["email"], event)] += 1
    return expected


def sends(calls) -> Counter:
    return Counter((s["email"], c["tags"][0]) for c in calls for s in c["subscribers"])


def first_call_in_flight(fake_centra, fake_rule, process) -> tuple[HistoryBatch, tuple[str, int]]:
    """Wait until batch 1 is in flight and Centra has answered a query for a later page meanwhile."""
    batch = wait_for(lambda: HistoryBatch.objects.filter(number=1, status=HistoryBatch.Status.SENDING).first(), 90)
    assert batch is not None, process.stdout.read() if process.poll() is not None else "batch 1 never went out"
    run = HistoryImport.objects.get(pk=batch.run_id)
    cursor = (run.phase, run.next_page)
    seen = len(fake_centra.queries)
    assert wait_for(lambda: len(fake_centra.queries) > seen, timeout=30)
    # Rule has not answered yet (the fake records a call once its latency is over): the read overlapped the call
    assert import_calls(fake_rule) == []
    return batch, cursor


def kill(process) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def resume(run: HistoryImport, worker, fake_rule, fake_centra) -> None:
    fake_centra.clear_failures()
    fake_rule.set_latency(0)
    HistoryImport.objects.filter(pk=run.pk).update(lease_until=timezone.now() - timedelta(seconds=1))
    assert runner.tick(timezone.now() + timedelta(minutes=2)) == 1
    worker.drain()
    run.refresh_from_db()
    assert run.status == HistoryImport.Status.FINISHED


@pytest.mark.cluster
def test_killed_after_rule_answered_while_the_next_pages_were_mapped(
    transactional_db, fake_centra, fake_rule, worker, import_process
):
    fake_rule.set_latency(2500)  # the first batch stays in flight long enough to watch Centra being read meanwhile
    history, shop, process = import_process("killed-after-answer")
    batch, cursor = first_call_in_flight(fake_centra, fake_rule, process)
    fake_centra.fail("slow", times=None, delay=20)  # the reading goes on past Rule's answer
    batch = wait_for(lambda: HistoryBatch.objects.filter(pk=batch.pk, status=HistoryBatch.Status.SENT).first(), 30)
    assert batch is not None  # the answer is recorded while the worker still waits for Centra
    time.sleep(0.3)
    kill(process)
    run = HistoryImport.objects.get(connection=shop)
    # the pages read during the call were not stored: the cursor is where the call found it
    assert (run.phase, run.next_page) == cursor
    assert len(import_calls(fake_rule)) == 1

    resume(run, worker, fake_rule, fake_centra)
    calls = import_calls(fake_rule)
    assert sends(calls) == expected_sends(history)  # every order once: none skipped, none twice
    batch.refresh_from_db()
    assert batch.attempts == 1 and "sent again" not in batch.note
    assert run.sent == sum(expected_sends(history).values())


@pytest.mark.cluster
def test_killed_during_the_call_while_the_next_pages_were_mapped(
    transactional_db, fake_centra, fake_rule, worker, import_process
):
    fake_rule.set_latency(2500)  # the first batch stays in flight long enough to watch Centra being read meanwhile
    history, shop, process = import_process("killed-in-call")
    batch, cursor = first_call_in_flight(fake_centra, fake_rule, process)
    kill(process)  # Rule has not answered: whether it took the batch is unknown to the import
    run = HistoryImport.objects.get(connection=shop)
    assert (run.phase, run.next_page) == cursor
    # whether Rule took the batch depends on how much of it was sent before the kill; the fake answers after 2.5 s
    wait_for(lambda: len(import_calls(fake_rule)) == 1, timeout=6)
    first = sends(import_calls(fake_rule))

    resume(run, worker, fake_rule, fake_centra)
    calls = import_calls(fake_rule)
    # batch 1 goes again, saying so (twice in Rule if it got there before the kill); every other order once,
    # and none skipped
    assert sends(calls) == expected_sends(history) + first
    batch.refresh_from_db()
    assert batch.status == HistoryBatch.Status.SENT and batch.attempts == 2 and "sent again" in batch.note
    assert run.sent == sum(expected_sends(history).values())
