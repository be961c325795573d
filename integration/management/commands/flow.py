"""`manage.py flow set NAME EVENT ...`: one flow's on/off, tags, automation and excluded fields."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from integration import catalog
from integration.management.commands.connection import flow_json, get_connection, print_json
from integration.mapping.request import distinct_tags
from integration.mapping.values import distinct
from integration.models import Flow


class Command(BaseCommand):
    help = "Change a flow: flow set NAME EVENT [--enable|--disable] [--tag T]... [--automation M] [--exclude-field K]"

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        set_ = sub.add_parser("set", help="change one flow of a connection")
        set_.add_argument("name", help="connection name")
        set_.add_argument("event", help="catalog event, e.g. OrderShipped")
        onoff = set_.add_mutually_exclusive_group()
        onoff.add_argument("--enable", dest="enabled", action="store_const", const=True, default=None)
        onoff.add_argument("--disable", dest="enabled", action="store_const", const=False)
        set_.add_argument("--tag", action="append", default=[], help="Rule tag (repeatable; replaces the tags)")
        set_.add_argument("--automation", choices=[c for c, _ in catalog.AUTOMATION_CHOICES])
        set_.add_argument(
            "--exclude-field",
            action="append",
            default=None,
            help="catalog field to leave out (repeatable; replaces the list; '' clears it)",
        )

    def handle(self, *args, **options) -> None:
        conn = get_connection(options["name"])
        event = options["event"]
        if event not in catalog.EVENTS:
            raise CommandError(f"Unknown event {event!r}; catalog events: {', '.join(catalog.EVENTS)}.")
        flow = Flow.for_event(conn, event)  # saved below: a flow not stored yet is created by this command
        if options["enabled"] is not None:
            flow.enabled = options["enabled"]
        if options["tag"]:
            tags, repeated = distinct_tags(options["tag"])
            if not tags:
                raise CommandError("--tag: a flow needs at least one Rule tag.")
            if repeated:
                raise CommandError(f"--tag: duplicate tags in {tags + repeated} (case does not count).")
            flow.tags = tags
        if options["automation"]:
            flow.automation = options["automation"]
        if options["exclude_field"] is not None:
            keys = [k.strip() for k in options["exclude_field"] if k.strip()]
            unknown = [k for k in keys if not catalog.is_field_allowed(event, k)]
            if unknown:
                raise CommandError(
                    f"--exclude-field: {', '.join(unknown)} not sent by {event}; its fields: "
                    f"{', '.join(f.key for f in catalog.fields_for_event(event))}."
                )
            flow.excluded_fields = distinct(keys)
        flow.save()
        print_json(self, {"connection": conn.name, **flow_json(flow)})
