"""`manage.py send_test_call NAME`: every enabled flow's sample to the test email now, one JSON result per flow."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from integration.delivery.testcall import TestCallError, send_test_calls
from integration.management.commands.connection import get_connection, print_json


class Command(BaseCommand):
    help = "Send each enabled flow's sample payload to the connection's test email now; prints each result."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="connection name")

    def handle(self, *args, **options) -> None:
        conn = get_connection(options["name"])
        try:
            results = send_test_calls(conn)
        except TestCallError as exc:
            raise CommandError(str(exc)) from None
        print_json(
            self, {"connection": conn.name, "test_email": conn.test_email, "results": [r.as_dict() for r in results]}
        )
        if any(not r.ok for r in results):
            raise CommandError(f"{sum(not r.ok for r in results)} of {len(results)} test calls did not succeed.")
