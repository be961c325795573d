"""The catalog as Markdown tables for the README: `python -m integration.catalog_table` prints them.

The README holds this output verbatim between `<!-- catalog:start -->` and `<!-- catalog:end -->`; a test
checks that it still matches the catalog.
"""

from __future__ import annotations

from integration import catalog

# Event sets the catalog uses often, named so a row reads "order events" instead of five names.
_GROUP_NAMES: list[tuple[frozenset[str], str]] = [
    (catalog.BASE_EVENTS, "order, return and gift certificate events"),
    (catalog.COMMON_EVENTS, "order events, GiftCertificate"),
    (catalog.ITEM_EVENTS, "order and return events"),
    (catalog.ORDER_EVENTS, "order events"),
    (catalog.RETURN_EVENTS, "RefundCompleted, ReturnCompleted"),
    (catalog.CUSTOMER_EVENTS, "CustomerRegistered, PasswordReset"),
]


def _cell(value: str) -> str:
    """A table cell: pipes escaped, no line breaks."""
    return value.replace("|", "\\|").replace("\n", " ").strip()


def events_label(events: frozenset[str]) -> str:
    """A short name for a set of events, in catalog order when it has no name."""
    for group, name in _GROUP_NAMES:
        if events == group:
            return name
    return ", ".join(name for name in catalog.EVENTS if name in events)


def render_events() -> str:
    """The events table: event, default tags, on by default, when it is sent."""
    rows = ["| Event | Default tags | On by default | When |", "|---|---|---|---|"]
    for spec in catalog.EVENTS.values():
        default = "yes" if spec.default_enabled else "no"
        if spec.manual_mode_only:
            default += " (manual confirmation mode)"
        tags = ", ".join(f"`{tag}`" for tag in spec.default_tags)
        rows.append(f"| `{spec.name}` | {tags} | {default} | {_cell(spec.when)} |")
    return "\n".join(rows)


def render_fields() -> str:
    """The fields table: Rule key, type, the events that send it, its source and condition."""
    rows = ["| Rule key | Type | Events | Source |", "|---|---|---|---|"]
    for spec in catalog.FIELDS:
        source = spec.source + (f" ({spec.condition})" if spec.condition else "")
        rows.append(f"| `{spec.key}` | {spec.type} | {_cell(events_label(spec.events))} | {_cell(source)} |")
    return "\n".join(rows)


def render() -> str:
    """Both tables, as pasted into the README between the catalog markers."""
    return f"### Events\n\n{render_events()}\n\n### Fields\n\n{render_fields()}\n"


if __name__ == "__main__":
    import os

    import django

    # The registry is filled when the apps are ready (each app declares its events).
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    print(render(), end="")
