"""`manage.py purge [--days N]`: delete finished deliveries and inbound events older than the retention."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from integration.management.commands.connection import print_json
from integration.ops.retention import purge


class Command(BaseCommand):
    help = "Delete succeeded/failed/cancelled deliveries and finished inbound events older than N days."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help=f"retention in days (default: RETENTION_DAYS = {settings.RETENTION_DAYS})",
        )

    def handle(self, *args, **options) -> None:
        if options["days"] is not None and options["days"] < 0:
            raise CommandError("--days must be zero or more.")
        print_json(self, purge(options["days"]))
