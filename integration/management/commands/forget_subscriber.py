"""`manage.py forget_subscriber EMAIL [--connection NAME] [--rule]`: erase one person's stored data."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from integration.management.commands.connection import get_connection, print_json
from integration.ops.erasure import forget_subscriber


class Command(BaseCommand):
    help = (
        "Erase everything stored about an email (inbound events and the deliveries built from them, deliveries, "
        "back-in-stock watchers, admin history; batch deliveries keep their other recipients), keep a hashed "
        "tombstone so replays and late webhooks about them are dropped, print what was erased and what remains "
        "outside. With --rule also the subscriber at Rule."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("email")
        parser.add_argument("--connection", help="only this connection (default: all)")
        parser.add_argument(
            "--rule", action="store_true", help="also DELETE /subscribers/<email> at each connection's Rule account"
        )

    def handle(self, *args, **options) -> None:
        conn = get_connection(options["connection"]) if options["connection"] else None
        if "@" not in options["email"]:
            raise CommandError(f"{options['email']!r} is not an email.")
        result = forget_subscriber(options["email"], connection=conn, at_rule=options["rule"])
        print_json(self, result)
        failed = [r["connection"] for r in result.get("rule", []) if not r["ok"]]
        if failed:
            raise CommandError(f"Not deleted at Rule for: {', '.join(failed)}.")
