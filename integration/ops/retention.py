"""Retention and erasure: purge finished rows older than the retention, forget one subscriber's data."""

from __future__ import annotations

from datetime import datetime, timedelta
from urllib.parse import quote

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from integration.models import Connection, Delivery, DeliveryHour, InboundEvent, RejectedCall

BATCH_SIZE = 1000

FINISHED_DELIVERY_STATUSES = (Delivery.Status.SUCCEEDED, Delivery.Status.FAILED, Delivery.Status.CANCELLED)
FINISHED_INBOUND_STATUSES = (InboundEvent.Status.PROCESSED, InboundEvent.Status.IGNORED, InboundEvent.Status.FAILED)


def delete_in_batches(queryset: QuerySet, batch_size: int = BATCH_SIZE) -> int:
    """Delete the rows of `queryset` a batch at a time (short transactions, no huge lock); the count deleted."""
    model = queryset.model
    total = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:batch_size])
        if not ids:
            return total
        with transaction.atomic():
            # The filter is applied again, so a row that changed since the id read (e.g. resent) is kept.
            _, per_model = queryset.filter(pk__in=ids).delete()
        total += per_model.get(model._meta.label, 0)


def purge(days: int | None = None, *, now: datetime | None = None, batch_size: int = BATCH_SIZE) -> dict:
    """Delete finished deliveries and inbound events older than `days` (default RETENTION_DAYS); never open ones."""
    days = settings.RETENTION_DAYS if days is None else days
    if days < 0:
        raise ValueError("days must be zero or more")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deliveries = Delivery.objects.filter(status__in=FINISHED_DELIVERY_STATUSES, created_at__lt=cutoff)
    inbound = InboundEvent.objects.filter(status__in=FINISHED_INBOUND_STATUSES, received_at__lt=cutoff)
    return {
        "days": days,
        "cutoff": cutoff.isoformat(),
        "deliveries_deleted": delete_in_batches(deliveries, batch_size),
        "inbound_events_deleted": delete_in_batches(inbound, batch_size),
        # The console's hourly counts and the rejected calls age out with the log they summarise.
        "delivery_hours_deleted": delete_in_batches(DeliveryHour.objects.filter(hour__lt=cutoff), batch_size),
        "rejected_calls_deleted": delete_in_batches(RejectedCall.objects.filter(at__lt=cutoff), batch_size),
    }


def forget_subscriber(email: str, *, connection: Connection | None = None, at_rule: bool = False) -> dict:
    """Delete every stored inbound event and delivery of `email` (and, with at_rule, the subscriber at Rule)."""
    email = email.strip()
    if not email:
        raise ValueError("an email is required")
    connections = [connection] if connection else list(Connection.objects.all())
    # Case-insensitive: the same person may have typed their address differently over time.
    deliveries = Delivery.objects.filter(email__iexact=email)
    inbound = InboundEvent.objects.filter(email__iexact=email)
    if connection is not None:
        deliveries = deliveries.filter(connection=connection)
        inbound = inbound.filter(connection=connection)
    result: dict = {
        "email": email,
        "deliveries_deleted": delete_in_batches(deliveries),
        "inbound_events_deleted": delete_in_batches(inbound),
    }
    if at_rule:
        result["rule"] = [delete_at_rule(conn, email) for conn in connections]
    return result


def delete_at_rule(connection: Connection, email: str) -> dict:
    """DELETE /subscribers/<email>?identified_by=email on the connection's Rule account."""
    from integration.rule.client import RuleClient, RuleRequestError, error_message

    if not connection.rule_api_key:
        return {"connection": connection.name, "ok": False, "message": "no Rule API key"}
    client = RuleClient.for_connection(connection)
    try:
        response = client.send("DELETE", f"/subscribers/{quote(email, safe='@')}", params={"identified_by": "email"})
    except RuleRequestError as exc:
        return {"connection": connection.name, "ok": False, "message": str(exc)}
    finally:
        client.session.close()
    if 200 <= response.status_code < 300:
        return {
            "connection": connection.name,
            "ok": True,
            "status_code": response.status_code,
            "message": "deleted at Rule",
        }
    if response.status_code == 404:
        # Nothing to erase there is what the person asked for.
        return {"connection": connection.name, "ok": True, "status_code": 404, "message": "not found at Rule"}
    return {
        "connection": connection.name,
        "ok": False,
        "status_code": response.status_code,
        "message": error_message(response),
    }
