"""django-q2 tasks: thin wrappers that take ids (never data) and call the domain functions."""

from __future__ import annotations

from . import delivery
from .processing import process_inbound_event


def process_inbound(inbound_id: int) -> str:
    """Turn one stored inbound event into deliveries."""
    return process_inbound_event(inbound_id)


def deliver(delivery_id: int) -> str:
    """Send one delivery to Rule if it is due and no other worker has it."""
    return delivery.deliver(delivery_id)


def sweep() -> dict[str, int]:
    """Enqueue what is due (the every-minute schedule)."""
    return delivery.sweep()
