"""Shoppers start and stop watching a size; old watchers expire."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from backinstock.models import BackInStockSettings, Watcher
from integration.centra.client import CentraClient, CentraError
from integration.models import Connection, InboundEvent
from integration.processing.dispatch import PermanentError
from integration.processing.emit import emit_event

log = logging.getLogger(__name__)

WAITING_EVENT = "ProductAlertWaiting"
PRODUCT_KEYS = (
    "name",
    "uri",
    "image",
    "brand",
    "variant",
    "size",
    "sku",
    "sizeSku",
    "ean",
    "price",
    "priceAmount",
    "currency",
)


def _text(value: object) -> str:
    return "" if value is None else str(value).strip()


def product_from_payload(payload: dict) -> dict:
    """The product fields a subscription carries, without empty values."""
    product = payload.get("product") if isinstance(payload.get("product"), dict) else {}
    fields = {key: _text(product.get(key)) for key in PRODUCT_KEYS}
    if not fields["sku"] and payload.get("sku"):
        fields["sku"] = _text(payload["sku"])
    return {key: value for key, value in fields.items() if value}


def product_from_centra(size: dict) -> dict:
    """Product fields from Centra's ProductSize document (name, brand, variant, size, SKUs, EAN)."""
    variant = size.get("productVariant") or {}
    product = variant.get("product") or {}
    fields = {
        "name": _text(product.get("name")),
        "brand": _text((product.get("brand") or {}).get("name")),
        "variant": _text(variant.get("name")),
        "size": _text(size.get("description")),
        "sizeSku": _text(size.get("SKU")),
        "ean": _text(size.get("EAN")),
    }
    return {key: value for key, value in fields.items() if value}


def centra_product(connection: Connection, payload: dict) -> dict:
    """What Centra knows now about a subscription's size (a network call: run it with no transaction open).
    Empty without a Centra token, when the shopper already waits for the item (nothing to refresh), or when
    Centra cannot answer: Centra being down never blocks a subscription."""
    email, item = _text(payload.get("email")).lower(), _text(payload.get("item"))
    if not (email and item and connection.centra_api_token and connection.centra_api_url):
        return {}
    if Watcher.objects.filter(connection=connection, email=email, item=item, status=Watcher.Status.WAITING).exists():
        return {}
    try:
        size = CentraClient.for_connection(connection).product_for_size(item)
    except (CentraError, ValueError) as exc:
        log.warning("product refresh for %s failed: %s", item, exc)
        return {}
    return product_from_centra(size) if size else {}


def subscribe(
    connection: Connection,
    payload: dict,
    inbound_event: InboundEvent | None = None,
    centra_fields: dict | None = None,
) -> tuple[Watcher, bool]:
    """Start watching (a second subscription while waiting changes nothing); emits ProductAlertWaiting once.

    `centra_fields` (from centra_product, fetched beforehand) complete and override the payload's product."""
    email = _text(payload.get("email")).lower()
    item = _text(payload.get("item"))
    if not email or not item:
        raise PermanentError("a back-in-stock subscription needs an email and an item")
    existing = Watcher.objects.filter(
        connection=connection, email=email, item=item, status=Watcher.Status.WAITING
    ).first()
    if existing:
        return existing, False
    ship_to = payload.get("shipTo") if isinstance(payload.get("shipTo"), dict) else {}
    product = {**product_from_payload(payload), **(centra_fields or {})}
    watcher = Watcher(
        connection=connection,
        email=email,
        item=item,
        sku=_text(payload.get("sku")) or product.get("sku", ""),
        language=_text(payload.get("languageCode")).lower()[:8],
        country=_text(ship_to.get("countryCode")).upper()[:2],
        state=_text(ship_to.get("stateCode"))[:10],
        product=product,
    )
    try:
        with transaction.atomic():
            watcher.save()
    except IntegrityError:
        # The same subscription arrived twice at once: the other one made the watcher.
        return Watcher.objects.get(connection=connection, email=email, item=item, status=Watcher.Status.WAITING), False
    emit_event(
        connection,
        WAITING_EVENT,
        watcher.event_payload(),
        inbound_event=inbound_event,
        key=f"{WAITING_EVENT}:watch:{watcher.pk}",
    )
    return watcher, True


def unsubscribe(connection: Connection, email: str, item: str = "") -> int:
    """Stop waiting: one item, or every item of that email when no item is given. Returns how many stopped."""
    watchers = Watcher.objects.filter(connection=connection, email=_text(email).lower(), status=Watcher.Status.WAITING)
    if item:
        watchers = watchers.filter(item=_text(item))
    return watchers.update(status=Watcher.Status.UNSUBSCRIBED, note="unsubscribed")


def expire_watchers(connection: Connection, now: datetime | None = None) -> int:
    """Drop waiting watchers older than the connection's expiry (Rule: not restocked in 365 days)."""
    days = BackInStockSettings.of(connection).expiry_days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return Watcher.objects.filter(connection=connection, status=Watcher.Status.WAITING, created_at__lt=cutoff).update(
        status=Watcher.Status.EXPIRED, note=f"not restocked in {days} days"
    )
