"""Back in stock's part of erasing a person: their watchers (email, language, country, product), whatever state.

Connected to the core's `integration.signals.subscriber_forgotten` in BackInStockConfig.ready(); the batch
deliveries that alerted them are handled by the core (it finds them in the recorded request bodies)."""

from __future__ import annotations

from django.db import transaction

from backinstock.models import Watcher


def forget_watchers(sender, *, email: str, connection, mentions, **kwargs) -> dict:
    """Delete every watcher of `email` (compared trimmed and without case); {"backinstock_watchers_deleted": n}."""
    candidates = Watcher.objects.filter(email__icontains=email)
    if connection is not None:
        candidates = candidates.filter(connection=connection)
    ids = [pk for pk, stored in candidates.values_list("pk", "email") if mentions(stored)]
    with transaction.atomic():
        deleted, _ = Watcher.objects.filter(pk__in=ids).delete()
    return {"backinstock_watchers_deleted": deleted}
