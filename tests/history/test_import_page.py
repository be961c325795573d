"""The admin's "Import history" page: linked from the connection, an estimate before starting, then progress
with pause, resume and cancel, and the import kept as a record."""

from __future__ import annotations

import pytest
from django.urls import reverse

from integration.history.models import HistoryImport

pytestmark = pytest.mark.django_db


def test_estimate_start_follow_pause_resume_and_cancel(
    importing, history, fake_rule, admin_client, worker, django_capture_on_commit_callbacks
):
    page = reverse("admin:integration_history_import", args=[importing.pk])
    change = admin_client.get(reverse("admin:integration_connection_change", args=[importing.pk]))
    assert page in change.content.decode()

    form = admin_client.get(page).content.decode()
    assert "Import orders placed from" in form and "Start import" not in form  # estimate first

    estimate = admin_client.post(page, {"since": "2022-11-01", "kinds": ["orders", "customers"], "action": "estimate"})
    text = estimate.content.decode()
    assert f"{len(history.numbers())} orders placed since 2022-11-01" in text
    assert f"{history.customer_count} customer accounts" in text
    assert "Rule calls" in text and "Start import" in text
    assert "The CustomerRegistered flow is off" in text and "The ReturnCompleted flow is off: orders go as" in text
    assert fake_rule.requests == []

    with django_capture_on_commit_callbacks(execute=True):
        started = admin_client.post(page, {"since": "2022-11-01", "kinds": ["orders"], "action": "start"})
    assert started.status_code == 302
    run = HistoryImport.objects.get()
    assert run.started_by == "admin" and run.kinds == ["orders"]
    worker.run_one()

    following = admin_client.get(page).content.decode()
    assert 'id="import-progress"' in following and "Pause" in following
    progress = admin_client.get(reverse("admin:integration_history_progress", args=[run.pk])).json()
    assert progress["sent"] == 1000 and progress["calls"] == 1 and progress["status"] == "running"
    assert 0 < progress["done"] <= progress["estimated"] == len(history.numbers())

    admin_client.post(page, {"action": "pause"})
    assert HistoryImport.objects.get().status == "paused"
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(page, {"action": "resume"})
    assert HistoryImport.objects.get().status == "running"
    admin_client.post(page, {"action": "cancel"})
    worker.drain()
    run.refresh_from_db()
    assert run.status == "cancelled" and run.sent == 1000

    # the record stays, with its batches
    record = admin_client.get(reverse("admin:integration_historyimport_change", args=[run.pk])).content.decode()
    assert "OrderShipped" in record and "cancelled" in record
    assert "Estimate" in admin_client.get(page).content.decode()  # a new import can be planned


def test_a_future_start_date_is_refused(importing, admin_client):
    page = reverse("admin:integration_history_import", args=[importing.pk])
    answer = admin_client.post(page, {"since": "2999-01-01", "kinds": ["orders"], "action": "estimate"})
    assert "The start date is in the future" in answer.content.decode()
