"""`manage.py sweep`: enqueue everything due now (what the every-minute schedule does), e.g. after a broker was
flushed; `--every N` keeps doing it every N seconds (the fault suite runs it so that its drain times are not
dominated by the one-minute schedule)."""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand
from django.db import DatabaseError, close_old_connections

from integration.delivery.engine import sweep


class Command(BaseCommand):
    help = "Enqueue every due delivery and inbound event now (once, or every N seconds with --every)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--every", type=float, default=0, help="Repeat every this many seconds until stopped.")

    def handle(self, *args, every: float, **options) -> None:
        while True:
            try:
                counts = sweep()
                if counts["deliveries"] or counts["inbound_events"] or not every:
                    self.stdout.write(f"enqueued {counts['deliveries']} deliveries, {counts['inbound_events']} events")
            except DatabaseError as exc:  # --every outlives a database restart
                if not every:
                    raise
                self.stderr.write(f"sweep failed: {exc.__class__.__name__}")
                close_old_connections()
            self.stdout.flush()
            if not every:
                return
            time.sleep(every)
