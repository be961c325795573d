"""Retention: purge finished rows older than the retention (erasure of one person: integration/ops/erasure.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from integration.models import Delivery, DeliveryHour, InboundEvent, RejectedCall

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
