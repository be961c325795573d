"""What each Centra object of the history becomes: the one catalog event it is imported as, and every event it
stands for (so the live path does not send those again). No database, no network.

An order is imported once, as the furthest event its current state reached, with that flow's tags and fields:
RefundCompleted for a completed return (ReturnCompleted instead when nothing was refunded and that flow is on,
the live rule), else OrderShipped for a shipped shipment, else OrderCompleted. A flow that is off passes the
order down to the next one. It stands for all of them: its OrderCompleted, every shipped shipment's OrderShipped
and every completed return's event, keyed exactly as live deliveries are. Cancelled orders, and orders still
awaiting manual confirmation, are not imported.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, datetime

from integration import catalog
from integration.mapping import object_key

ORDER_EVENTS = ("OrderCompleted", "OrderShipped", "RefundCompleted", "ReturnCompleted")

SKIP_CANCELLED = "cancelled order"
SKIP_UNCONFIRMED = "not confirmed yet (the live flow sends it)"
SKIP_FLOW_OFF = "flow off"
SKIP_LIVE = "already delivered live"
SKIP_IMPORTED = "imported before"
SKIP_INACTIVE = "unsubscribed"
SKIP_WATCH = "a back-in-stock watch, not a newsletter sign-up"


@dataclass
class Planned:
    """One object: the event to send it as (None: skipped, with the reason) and the keys it stands for."""

    group: str
    event: str | None
    payload: dict | None = None
    keys: list[tuple[str, str]] = field(default_factory=list)  # (event, idempotency key), the sent one first
    occurred_at: str | None = None
    order_number: str = ""
    reason: str = ""


def _fires(event: str, doc: dict, manual_confirmation: bool, enabled: Container[str]) -> bool:
    """Whether the object's current state means `event`, by the event's declared Centra trigger (as live)."""
    trigger = catalog.EVENTS[event].centra
    settings = {"manual_confirmation": manual_confirmation, "enabled": frozenset(enabled), "action": ""}
    return trigger is not None and bool(trigger.fires(doc, **settings))


def _return_event(ret: dict, enabled: Container[str]) -> str | None:
    return next((e for e in ("RefundCompleted", "ReturnCompleted") if _fires(e, ret, False, enabled)), None)


def _key(event: str, payload: dict) -> str | None:
    natural = object_key(event, payload)
    return f"{event}:{natural}" if natural else None


def plan_order(order: dict, returns: list[dict], manual_confirmation: bool, enabled: Container[str]) -> Planned:
    """The event an order (with its `shipments` and these returns) is imported as, and the keys it stands for."""
    number = str(order.get("number") or "")
    planned = Planned(group=f"order:{number}", event=None, occurred_at=order.get("orderDate"), order_number=number)
    if not _fires("OrderCompleted", order, manual_confirmation, enabled):
        planned.reason = SKIP_CANCELLED if str(order.get("status")).upper() == "CANCELLED" else SKIP_UNCONFIRMED
        return planned
    # Furthest first: each candidate is (event, payload), the latest shipment and return winning.
    candidates: list[tuple[str, dict]] = []
    finished = [r for r in returns if _return_event(r, enabled)]
    for ret in sorted(finished, key=lambda r: (str(r.get("createdAt") or ""), r.get("id") or 0), reverse=True):
        candidates.append((_return_event(ret, enabled), {"return": {**ret, "order": order}}))
    shipped = [s for s in order.get("shipments") or [] if _fires("OrderShipped", s, manual_confirmation, enabled)]
    for shipment in sorted(shipped, key=lambda s: (str(s.get("shippedAt") or ""), s.get("id") or 0), reverse=True):
        candidates.append(("OrderShipped", {"shipment": {**shipment, "order": order}}))
    candidates.append(("OrderCompleted", {"order": order}))
    for event, payload in candidates:
        key = _key(event, payload)
        if key and (event, key) not in planned.keys:
            planned.keys.append((event, key))
    chosen = next(((e, p) for e, p in candidates if e in enabled), None)
    if chosen is None:
        planned.reason = SKIP_FLOW_OFF
        return planned
    planned.event, planned.payload = chosen
    sent_key = _key(*chosen)
    planned.keys.sort(key=lambda pair: pair[1] != sent_key)  # the sent event's key first
    return planned


def plan_customer(customer: dict, enabled: Container[str]) -> Planned:
    """A customer account, imported as CustomerRegistered."""
    payload = {"customer": customer}
    planned = Planned(group=f"customer:{customer.get('id')}", event=None)
    key = _key("CustomerRegistered", payload)
    planned.keys = [("CustomerRegistered", key)] if key else []
    if "CustomerRegistered" not in enabled:
        planned.reason = SKIP_FLOW_OFF
        return planned
    planned.event, planned.payload = "CustomerRegistered", payload
    return planned


def _when(value: object) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def plan_newsletter(subscription: dict, since: datetime, enabled: Container[str]) -> Planned | None:
    """An active newsletter subscription made since the start date, imported as Newsletter; None when older."""
    created = _when(subscription.get("createdAt"))
    if created is None or created < since:
        return None
    group = f"newsletter:{subscription.get('id')}"
    # Newsletter has no natural object in the live path (a person may sign up again); the import keys its own.
    planned = Planned(group=group, event=None, keys=[("Newsletter", f"Newsletter:{group}")])
    planned.occurred_at = subscription.get("createdAt")
    if subscription.get("productSize") or subscription.get("productVariant"):
        planned.reason = SKIP_WATCH
    elif subscription.get("isActive") is False:
        planned.reason = SKIP_INACTIVE
    elif "Newsletter" not in enabled:
        planned.reason = SKIP_FLOW_OFF
    else:
        country = subscription.get("country") or None
        planned.event = "Newsletter"
        planned.payload = {"email": subscription.get("email"), "address": {"country": country} if country else {}}
    return planned
