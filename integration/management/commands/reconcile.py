"""`manage.py reconcile NAME [--since DATE]`: catch a connection up with Centra now (a backfill with --since)."""

from __future__ import annotations

from datetime import datetime, time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from integration.centra.client import CentraError
from integration.management.commands.connection import get_connection, print_json
from integration.processing.reconcile import reconcile_connection


def parse_since(value: str) -> datetime:
    """An ISO date or date-time; naive values are in the server's time zone."""
    when = parse_datetime(value)
    if when is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"--since: {value!r} is not a date (YYYY-MM-DD or ISO 8601).")
        when = datetime.combine(day, time.min)
    return when if timezone.is_aware(when) else timezone.make_aware(when)


class Command(BaseCommand):
    help = (
        "Ask Centra for orders, shipments and returns changed since the cursor (or --since) and send what is missing."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="The connection's name.")
        parser.add_argument("--since", help="Start here instead of the cursor (YYYY-MM-DD or ISO 8601).")

    def handle(self, *args, name: str, since: str | None, **options) -> None:
        connection = get_connection(name)
        try:
            counts = reconcile_connection(connection, since=parse_since(since) if since else None)
        except CentraError as exc:
            raise CommandError(f"Centra: {exc}") from None
        print_json(self, counts)
