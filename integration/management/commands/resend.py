"""`manage.py resend ID... | --failed [--connection NAME]`: send deliveries again; their history is kept."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from integration.delivery import engine as delivery_module
from integration.management.commands.connection import get_connection, print_json
from integration.models import Delivery


class Command(BaseCommand):
    help = "Resend deliveries by id, or every failed one (optionally of one connection); a new attempt each."

    def add_arguments(self, parser) -> None:
        parser.add_argument("ids", nargs="*", type=int, metavar="DELIVERY_ID")
        parser.add_argument("--failed", action="store_true", help="every failed delivery")
        parser.add_argument("--connection", help="with --failed: only this connection's")

    def handle(self, *args, **options) -> None:
        ids, failed = options["ids"], options["failed"]
        if bool(ids) == bool(failed):
            raise CommandError("Give delivery ids or --failed (not both).")
        if options["connection"] and not failed:
            raise CommandError("--connection goes with --failed.")
        if failed:
            queryset = Delivery.objects.filter(status=Delivery.Status.FAILED)
            if options["connection"]:
                queryset = queryset.filter(connection=get_connection(options["connection"]))
        else:
            queryset = Delivery.objects.filter(pk__in=ids)
            missing = sorted(set(ids) - set(queryset.values_list("pk", flat=True)))
            if missing:
                raise CommandError(f"No delivery with id {', '.join(map(str, missing))}.")
        results = []
        for obj in queryset.select_related("connection").order_by("pk").iterator(chunk_size=500):
            if not delivery_module.resend(obj):
                results.append({"id": obj.pk, "resent": False, "error": "being sent right now"})
                continue
            obj.refresh_from_db()
            results.append({"id": obj.pk, "resent": True, "status": obj.status})
        print_json(self, {"resent": sum(r["resent"] for r in results), "deliveries": results})
