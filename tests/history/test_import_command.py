"""manage.py import_history: the dry run shows counts and the exact requests and sends nothing; a real run shows
a progress bar and a summary."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from integration.history.models import HistoryImport

pytestmark = pytest.mark.django_db


def run_command(*args) -> str:
    out = StringIO()
    call_command("import_history", *args, stdout=out)
    return out.getvalue()


def test_a_dry_run_counts_and_shows_the_exact_first_requests_without_sending(importing, history, fake_rule):
    output = run_command(importing.name, "--since", "2022-11-01", "--only", "orders", "--dry-run")

    assert fake_rule.requests == []
    assert not HistoryImport.objects.exists()
    shipped = sum(1 for n in history.numbers() if history.state(n).shipped)
    cancelled = sum(1 for n in history.numbers() if history.state(n).status == "CANCELLED")
    assert f"Read {len(history.numbers())} objects" in output
    assert f"skip {cancelled:>8}  cancelled order" in output
    lines = [line for line in output.splitlines() if line.startswith("  send")]
    assert sum(int(line.split()[1]) for line in lines) == len(history.numbers()) - cancelled
    assert any(line.endswith("as OrderShipped") and int(line.split()[1]) < shipped for line in lines)
    # the sample is the request the import sends: JSON, automation off, the flow's tag, two subscribers shown
    start = output.index("First OrderShipped request")
    body = json.JSONDecoder().raw_decode(output[output.index("{", start) :])[0]
    assert body["automation"] is False and body["sync_subscribers"] is False
    assert body["tags"] == ["OrderShipped"] and len(body["subscribers"]) == 2
    assert {f["key"] for f in body["subscribers"][0]["fields"]} >= {"Order.Number", "Order.Trackingno"}


def test_the_command_imports_with_a_progress_bar_and_a_summary(importing, history, fake_rule, capsys):
    output = run_command(importing.name, "--since", "2022-11-01", "--only", "orders")

    run = HistoryImport.objects.get()
    assert run.status == HistoryImport.Status.FINISHED and run.started_by == "manage.py import_history"
    assert f"finished: {len(history.numbers())} read, {run.sent} sent" in output
    assert f"{run.calls} Rule calls" in output
    assert "importing" in output and "100%" in output  # the bar reached the end
    assert len([r for r in fake_rule.requests if r["method"] == "POST"]) == run.calls


def test_bad_arguments_are_clear_errors(importing):
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        run_command(importing.name, "--since", "last year")
    with pytest.raises(CommandError, match="--only takes"):
        run_command(importing.name, "--since", "2024-01-01", "--only", "orders,carts")
    with pytest.raises(CommandError, match="no connection named"):
        run_command("nope", "--since", "2024-01-01")
