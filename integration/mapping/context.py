"""What the mapping reads besides the document: the connection's settings and the flow's choices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from integration.models import Connection, Flow


class MappingError(Exception):
    """The event can never become a Rule request (no email, no tags, unknown event)."""


@dataclass(frozen=True)
class MappingContext:
    """The connection's settings the mapping needs (plain values: the mapping never touches the database)."""

    time_zone: str = "Europe/Stockholm"
    default_language: str = ""
    send_cart_link: bool = True
    cart_link_template: str = ""
    tracking_link_templates: dict[str, str] = field(default_factory=dict)
    shop_url: str = ""
    cancellation_message: str = ""

    @classmethod
    def from_connection(cls, conn: Connection) -> MappingContext:
        """The mapping settings of a Connection."""
        templates = conn.tracking_link_templates if isinstance(conn.tracking_link_templates, dict) else {}
        return cls(
            time_zone=conn.time_zone or "UTC",
            default_language=conn.default_language or "",
            send_cart_link=bool(conn.send_cart_link),
            cart_link_template=conn.cart_link_template or "",
            tracking_link_templates={str(k): str(v) for k, v in templates.items() if v},
            shop_url=conn.shop_url or "",
            cancellation_message=conn.cancellation_message or "",
        )


@dataclass
class Subscriber:
    """One Rule subscriber as mapped: `fields` maps each Rule key to its value, in catalog order.

    Values are already in Rule's format: text and json as str, multiple as a list of str, dates as text.
    `notes` say what the document held that could not be sent (shown on the delivery, never silent).
    """

    email: str
    phone_number: str | None = None
    language: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FlowConfig:
    """A flow's merchant choices: Rule tags, automation mode, and the fields left out."""

    tags: tuple[str, ...] = ()
    automation: str = "reset"
    excluded_fields: frozenset[str] = frozenset()

    @classmethod
    def from_flow(cls, flow: Flow) -> FlowConfig:
        """The choices stored on a Flow."""
        tags = flow.tags if isinstance(flow.tags, list) else [flow.tags]
        excluded = flow.excluded_fields if isinstance(flow.excluded_fields, list) else []
        return cls(
            tags=tuple(str(t) for t in tags if t is not None),
            automation=flow.automation or "reset",
            excluded_fields=frozenset(str(k) for k in excluded),
        )
