"""manage.py import_history NAME --since DATE [--only orders,customers] [--dry-run]: import a connection's order
history from Centra into Rule with no automation started (integration/history), with a progress bar."""

from __future__ import annotations

import json
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from integration.centra.client import CentraError
from integration.history import runner
from integration.history.dryrun import dry_run
from integration.history.models import KINDS, HistoryImport
from integration.models import Connection


def parse_since(value: str, connection: Connection) -> datetime:
    """YYYY-MM-DD at midnight in the connection's time zone."""
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise CommandError(f"--since {value!r}: use a date as YYYY-MM-DD") from None
    return day.replace(tzinfo=ZoneInfo(connection.time_zone or "UTC"))


def parse_only(value: str) -> list[str]:
    kinds = [k.strip() for k in value.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise CommandError(f"--only takes a comma-separated list of {', '.join(KINDS)}; got {value!r}")
    return kinds


class Command(BaseCommand):
    help = "Import a connection's order history from Centra into Rule (automation off: no email goes out)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the connection's name")
        parser.add_argument("--since", help="import orders placed from this date (YYYY-MM-DD)")
        parser.add_argument("--only", default="orders,customers", help="what to import: orders,customers,newsletter")
        parser.add_argument("--dry-run", action="store_true", help="count and show sample requests; send nothing")
        parser.add_argument("--sample", type=int, default=2, help="subscribers shown per sample request")
        parser.add_argument("--resume", action="store_true", help="resume the connection's paused import")

    def handle(self, *args, **options) -> None:
        connection = Connection.objects.filter(name=options["name"]).first()
        if connection is None:
            raise CommandError(f"no connection named {options['name']!r}")
        if options["resume"]:
            run = runner.open_import(connection)
            if run is None:
                raise CommandError(f"{connection.name} has no paused import")
            runner.resume(run)
            return self._follow(run)
        if not options["since"]:
            raise CommandError("--since DATE is required (YYYY-MM-DD)")
        since = parse_since(options["since"], connection)
        kinds = parse_only(options["only"])
        if options["dry_run"]:
            return self._dry_run(connection, since, kinds, options["sample"])
        try:
            run = runner.start(connection, since, kinds, started_by="manage.py import_history")
        except runner.CannotStart as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Import {run.pk} for {connection.name}: {', '.join(kinds)} since {since:%Y-%m-%d}; about "
            f"{run.estimated_orders} orders, {run.estimated_calls} Rule calls (automation off)."
        )
        self._follow(run)

    def _follow(self, run: HistoryImport) -> None:
        """Drive the import here (a running qcluster may take steps too: one worker at a time) with a bar."""
        state = runner.progress(run)
        bar = tqdm(total=state["estimated"] or None, unit="obj", desc="importing", file=self.stdout._out)
        try:
            while True:
                outcome = runner.step(run.pk)
                state = runner.progress(run)
                bar.total = max(state["estimated"], state["done"]) or None
                bar.n = state["done"]
                bar.set_postfix(
                    sent=state["sent"], skipped=state["skipped"], failed=state["failed"], calls=state["calls"]
                )
                bar.refresh()
                if state["status"] != HistoryImport.Status.RUNNING:
                    break
                if outcome == "not due" or outcome.startswith("waiting"):
                    time.sleep(0.5)
        except KeyboardInterrupt:
            runner.pause(run)
            bar.close()
            self.stdout.write(f"Paused. Resume with: manage.py import_history {run.connection.name} --resume")
            return
        bar.close()
        self._summary(state)

    def _summary(self, state: dict) -> None:
        self.stdout.write(
            f"Import {state['id']} {state['status']}: {state['done']} read, {state['sent']} sent, "
            f"{state['skipped']} skipped, {state['failed']} failed, {state['calls']} Rule calls "
            f"in {state['elapsed_seconds']} s."
        )
        for reason, n in sorted(state["skip_reasons"].items(), key=lambda kv: -kv[1]):
            self.stdout.write(f"  {n:>8}  {reason}")
        if state["last_error"]:
            self.stdout.write(f"Last error: {state['last_error']}")

    def _dry_run(self, connection: Connection, since: datetime, kinds: list[str], sample: int) -> None:
        bar = tqdm(unit="obj", desc="reading (dry run)", file=self.stdout._out)

        def on_page(report) -> None:
            bar.n = report.read
            bar.set_postfix(to_send=sum(report.to_send.values()), calls=report.calls)
            bar.refresh()

        try:
            report = dry_run(connection, since, kinds, on_page=on_page)
        except CentraError as exc:
            raise CommandError(f"Centra: {exc}") from None
        finally:
            bar.close()
        self.stdout.write(
            f"Dry run for {connection.name} since {since:%Y-%m-%d} ({', '.join(report.kinds)}): nothing sent."
        )
        self.stdout.write(f"Read {report.read} objects; {report.calls} Rule calls of up to 1,000 subscribers would go.")
        for event, n in sorted(report.to_send.items()):
            self.stdout.write(f"  send {n:>8}  as {event}")
        for reason, n in sorted(report.skipped.items(), key=lambda kv: -kv[1]):
            self.stdout.write(f"  skip {n:>8}  {reason}")
        for reason, n in sorted(report.failed.items(), key=lambda kv: -kv[1]):
            self.stdout.write(f"  fail {n:>8}  {reason}")
        for event, body in report.sample_requests(sample).items():
            shown, total = len(body["subscribers"]), len(report.first_batch[event])
            self.stdout.write(f"\nFirst {event} request (POST /subscribers; {shown} of its {total} subscribers shown):")
            self.stdout.write(json.dumps(body, indent=2, ensure_ascii=False))
