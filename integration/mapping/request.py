"""A mapped subscriber plus a flow's choices to the `POST /subscribers` body, with Rule's limits enforced.

Rule's rules (see rule-api.md): tags never empty and never twice; keys `Group.Field` with exactly one dot;
`multiple` is a JSON array of strings and `json` a JSON-encoded string; at most 65 KiB of value data per field
group per subscriber; batches with `sync_subscribers: true` hold at most 100 subscribers; any batch at most 1,000.

Ours: text fields carry no `"type"` (text is Rule's default); every other type is always named.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from integration import catalog
from integration.mapping.context import FlowConfig, MappingError, Subscriber
from integration.mapping.values import distinct, is_empty, text

GROUP_LIMIT_BYTES = 65 * 1024
BATCH_LIMIT = 100
IMPORT_BATCH_LIMIT = 1000


@dataclass
class RuleRequest:
    """One `POST /subscribers` body, the email and order number it is about, and notes for the delivery log."""

    body: dict
    email: str
    order_number: str = ""
    notes: list[str] = field(default_factory=list)


def distinct_tags(tags: Iterable[Any]) -> tuple[list[str], list[str]]:
    """The one rule for a flow's tags, used by the admin form, the `flow` command and every request: (the tags
    stripped, without empties, each once in the merchant's order; the repeats left out).

    Ours: tags that differ only in case are the same tag and the first spelling is kept. Rule refuses a request
    naming a tag twice; whether it matches names without case its documentation does not say, so "VIP" and "vip"
    are never sent together (at best they would make two look-alike tags in the merchant's account).
    """
    kept: dict[str, str] = {}
    repeated = []
    for tag in tags if not isinstance(tags, str) else [tags]:
        name = text(tag)
        if not name:
            continue
        if name.casefold() in kept:
            repeated.append(name)
        else:
            kept[name.casefold()] = name
    return list(kept.values()), repeated


def clean_tags(tags: Iterable[Any]) -> list[str]:
    """The tags a request sends (distinct_tags); MappingError when none is left."""
    kept, _ = distinct_tags(tags)
    if not kept:
        raise MappingError("the flow has no tags: Rule needs at least one")
    return kept


def automation_value(mode: Any) -> str | bool:
    """Rule's `automation`: "reset" or "force", or false for a flow set to "none"."""
    mode = text(mode)
    return mode if mode in ("reset", "force") else False


def valid_key(key: Any) -> bool:
    """True for `Group.Field`: exactly one dot, both parts non-empty, no surrounding space."""
    if not isinstance(key, str) or key != key.strip() or key.count(".") != 1:
        return False
    group, name = key.split(".")
    return bool(group) and bool(name)


def _field_items(fields: Any) -> list[tuple[Any, Any]]:
    # Mappers give a dict; callers that build fields themselves may give [{key, value}] or pairs.
    if isinstance(fields, Mapping):
        return list(fields.items())
    items = []
    for entry in fields or []:
        if isinstance(entry, Mapping):
            items.append((entry.get("key"), entry.get("value")))
        elif isinstance(entry, tuple | list) and len(entry) == 2:
            items.append((entry[0], entry[1]))
    return items


def _rule_value(type_: str, value: Any, per_item: bool = False) -> Any:
    """The value in the shape Rule wants for `type_`; None when it cannot be given that shape.

    A `multiple` is a distinct list, except a per-item one (one value per item: repeats are kept)."""
    if type_ == catalog.MULTIPLE:
        values = value if isinstance(value, list | tuple) else [value]
        items = [item for item in (text(v) for v in values) if item is not None]
        return (items if per_item else distinct(items)) or None
    if type_ == catalog.JSON:
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text(value)


def _size(value: Any) -> int:
    """Bytes of value data (UTF-8; a list counts its strings)."""
    if isinstance(value, list):
        return sum(len(item.encode()) for item in value)
    return len(str(value).encode())


def _trim_group(group: str, entries: list[dict], notes: list[str]) -> list[dict]:
    """Keep a field group under Rule's 65 KiB: drop elements from the end of its longest list or JSON array
    value first; a group still too big loses its longest field."""
    originals: dict[str, int] = {}
    while sum(_size(e["value"]) for e in entries) > GROUP_LIMIT_BYTES:
        trimmable = [e for e in entries if _elements(e) is not None and len(_elements(e)) > 1]
        if trimmable:
            entry = max(trimmable, key=lambda e: _size(e["value"]))
            elements = _elements(entry)
            originals.setdefault(entry["key"], len(elements))
            over = sum(_size(e["value"]) for e in entries) - GROUP_LIMIT_BYTES
            # Drop roughly what is over in one step, then one at a time (elements differ in size).
            average = max(1, _size(entry["value"]) // len(elements))
            drop = max(1, min(len(elements) - 1, over // average))
            kept = elements[:-drop]
            entry["value"] = (
                kept
                if entry.get("type") == catalog.MULTIPLE
                else json.dumps(kept, ensure_ascii=False, separators=(",", ":"))
            )
            continue
        largest = max(entries, key=lambda e: _size(e["value"]))
        entries = [e for e in entries if e is not largest]
        notes.append(f"{largest['key']} left out: the {group} group is over Rule's 65 KiB limit even without it")
    for key, before in originals.items():
        entry = next(e for e in entries if e["key"] == key)
        after = len(_elements(entry) or [])
        notes.append(f"{key} trimmed from {before} to {after} elements: the {group} group was over Rule's 65 KiB limit")
    return entries


def _elements(entry: dict) -> list | None:
    """The elements of a list value or of a JSON array string; None for anything else."""
    value = entry["value"]
    if isinstance(value, list):
        return value
    if entry.get("type") == catalog.JSON and isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        return parsed if isinstance(parsed, list) else None
    return None


_VALID_KEYS: dict[str, bool] = {}


def _valid_key(key: Any) -> bool:
    """valid_key, remembered per key (a pure function of the key; mapping asks it for every field)."""
    if type(key) is not str:
        return valid_key(key)
    known = _VALID_KEYS.get(key)
    if known is None:
        known = valid_key(key)
        if len(_VALID_KEYS) < 100_000:
            _VALID_KEYS[key] = known
    return known


def _size_at_most(entries: list[dict]) -> int:
    """An upper bound of the entries' bytes of value data (a character is at most 4 bytes in UTF-8): when it is
    under the limit, the exact count (_size) is not needed."""
    chars = 0
    for entry in entries:
        value = entry["value"]
        chars += sum(len(item) for item in value) if isinstance(value, list) else len(value)
    return 4 * chars


def subscriber_body(event: str, subscriber: Subscriber, flow_config: FlowConfig, notes: list[str]) -> dict:
    """The `subscribers` object of one subscriber: allowed, valid, non-empty fields within Rule's limits."""
    email = text(subscriber.email)
    if not email:
        raise MappingError("no email")
    excluded = set(flow_config.excluded_fields)
    entries: list[dict] = []
    seen: set[str] = set()
    for key, value in _field_items(subscriber.fields):
        if not _valid_key(key):
            notes.append(f"field {key!r} left out: a Rule key needs exactly one dot (Group.Field)")
            continue
        if key in excluded or key in seen:
            continue
        allowed, type_, per_item = catalog.field_facts(event, key)
        if not allowed:
            notes.append(f"field {key} left out: the catalog does not give it to {event}")
            continue
        value = _rule_value(type_, value, per_item)
        if is_empty(value):
            continue
        seen.add(key)
        entry = {"key": key, "value": value}
        if type_ != catalog.TEXT:
            entry["type"] = type_
        entries.append(entry)
    kept = entries
    if _size_at_most(entries) > GROUP_LIMIT_BYTES:  # some group may be over Rule's limit: look at each
        groups: dict[str, list[dict]] = {}
        for entry in entries:
            groups.setdefault(entry["key"].split(".")[0], []).append(entry)
        kept = []
        for group, group_entries in groups.items():
            if sum(_size(e["value"]) for e in group_entries) > GROUP_LIMIT_BYTES:
                group_entries = _trim_group(group, group_entries, notes)
            kept.extend(group_entries)
        order = {id(e): i for i, e in enumerate(entries)}
        kept.sort(key=lambda e: order[id(e)])
    body: dict[str, Any] = {"email": email}
    phone = text(subscriber.phone_number)
    if phone:
        body["phone_number"] = phone
    language = text(subscriber.language)
    if language:
        body["language"] = language
    body["fields"] = kept
    return body


def build_request(event: str, subscriber: Subscriber, flow_config: FlowConfig) -> RuleRequest:
    """The single-subscriber `POST /subscribers` request for one event and flow."""
    notes: list[str] = list(subscriber.notes)
    tags = clean_tags(flow_config.tags)
    sub = subscriber_body(event, subscriber, flow_config, notes)
    body = {
        "update_on_duplicate": True,
        "automation": automation_value(flow_config.automation),
        "tags": tags,
        "subscribers": sub,
    }
    number = dict(_field_items(subscriber.fields)).get("Order.Number")
    return RuleRequest(body=body, email=sub["email"], order_number=text(number) or "", notes=notes)


def build_batch_request(event: str, subscribers: Iterable[Subscriber], flow_config: FlowConfig) -> dict:
    """A batch body for back-in-stock alerts: at most 100 subscribers, `sync_subscribers: true` so Rule runs
    the automation for each of them."""
    subscribers = list(subscribers)
    if not subscribers:
        raise MappingError("a batch needs at least one subscriber")
    if len(subscribers) > BATCH_LIMIT:
        raise MappingError(f"a batch holds at most {BATCH_LIMIT} subscribers, got {len(subscribers)}")
    notes: list[str] = []
    return {
        "update_on_duplicate": True,
        "automation": automation_value(flow_config.automation),
        "sync_subscribers": True,
        "tags": clean_tags(flow_config.tags),
        "subscribers": [subscriber_body(event, s, flow_config, notes) for s in subscribers],
    }


def build_import_request(subscribers: list[dict], flow_config: FlowConfig) -> dict:
    """A history import batch: up to 1,000 `subscribers` entries (from subscriber_body) with the flow's tags, and
    no automation at all (`automation: false`, `sync_subscribers: false`): Rule stores tags and fields, and no
    email goes out for an old order."""
    if not subscribers:
        raise MappingError("a batch needs at least one subscriber")
    if len(subscribers) > IMPORT_BATCH_LIMIT:
        raise MappingError(f"an import batch holds at most {IMPORT_BATCH_LIMIT} subscribers, got {len(subscribers)}")
    return {
        "update_on_duplicate": True,
        "automation": False,
        "sync_subscribers": False,
        "tags": clean_tags(flow_config.tags),
        "subscribers": list(subscribers),
    }
