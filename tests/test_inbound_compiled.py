"""The compiled serializers (integration/inbound/compiled.py) vouch only for what DRF itself accepts, with the same
validated values; everything else is left to DRF (so every refusal keeps DRF's own words)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from integration import catalog
from integration.inbound.compiled import NotSure, compile_serializer
from integration.inbound.validation import EnvelopeSerializer, WebhookEventSerializer, run_serializer
from integration.mapping.samples import sample

GOLDEN = Path(__file__).resolve().parent / "data" / "orders"

# Values a sender may put anywhere: the types DRF converts (numbers for text, text for numbers), blanks,
# whitespace, nulls, over-long text, NUL, non-ASCII, nested shapes.
ODD_VALUES = [
    None,
    "",
    "   ",
    " padded ",
    "x" * 300,
    "a\x00b",
    "Åsa Öberg",
    "anna@example.com",
    "not an email",
    0,
    -1,
    7,
    2**31,
    1.5,
    2.0,
    True,
    "12",
    "1 299,50",
    [],
    {},
    {"value": "12.5"},
    {"value": "twelve"},
    [{"quantity": 1}],
    "2026-01-01T12:00:00Z",
    "2026-01-01 12:00",
]


def declared_serializers() -> list[type[serializers.Serializer]]:
    found = [EnvelopeSerializer, WebhookEventSerializer]
    for inbound in catalog.INBOUND_TYPES.values():
        if inbound.serializer is not None and inbound.serializer not in found:
            found.append(inbound.serializer)
    return found


def documents() -> list[tuple[str, dict]]:
    """(type, event) for every declared sample and every golden document, with an envelope."""
    envelope = {"id": "evt-1", "occurredAt": "2026-01-01T12:00:00Z"}
    events = [(name, {**envelope, "type": name, **sample(name)}) for name in catalog.EVENTS if sample(name)]
    for path in sorted(GOLDEN.glob("*.json")):
        case = json.loads(path.read_text())
        events.append((case["event"], {**envelope, "type": case["event"], **case["payload"]}))
    return [(t, e) for t, e in events if t in catalog.INBOUND_TYPES]


def leaf_paths(doc: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(doc, dict):
        return [path] + [p for k, v in doc.items() for p in leaf_paths(v, (*path, k))]
    if isinstance(doc, list):
        return [path] + [p for i, v in enumerate(doc) for p in leaf_paths(v, (*path, i))]
    return [path]


def replaced(doc: Any, path: tuple, value: Any) -> Any:
    doc = copy.deepcopy(doc)
    if not path:
        return copy.deepcopy(value)
    holder = doc
    for step in path[:-1]:
        holder = holder[step]
    holder[path[-1]] = copy.deepcopy(value)
    return doc


def drf_answer(serializer_class: type[serializers.Serializer], data: Any) -> tuple[bool, Any]:
    try:
        return True, serializer_class().run_validation(data)
    except serializers.ValidationError:
        return False, None


def assert_same_answer(serializer_class: type[serializers.Serializer], data: Any) -> bool:
    """The compiled form either leaves `data` to DRF or gives exactly DRF's validated value; True if it vouched."""
    check = compile_serializer(serializer_class())
    try:
        compiled = check(data)
    except NotSure:
        return False
    accepted, value = drf_answer(serializer_class, data)
    assert accepted, f"{serializer_class.__name__} compiled accepted what DRF refuses: {data!r:.300}"
    assert json.loads(json.dumps(compiled, default=str)) == json.loads(json.dumps(value, default=str))
    return True


@pytest.mark.parametrize(("event_type", "event"), documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_valid_documents_are_vouched_for_with_drfs_values(event_type, event):
    serializer_class = catalog.INBOUND_TYPES[event_type].serializer
    accepted, _ = drf_answer(serializer_class, event)
    if accepted:  # the compiled form takes the fast way for what DRF accepts from real senders
        assert assert_same_answer(serializer_class, event)
        assert assert_same_answer(EnvelopeSerializer, event)


@pytest.mark.parametrize(("event_type", "event"), documents(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_single_odd_value_anywhere_gets_drfs_answer(event_type, event):
    serializer_class = catalog.INBOUND_TYPES[event_type].serializer
    for path in leaf_paths(event):
        for value in ODD_VALUES:
            changed = replaced(event, path, value)
            assert_same_answer(serializer_class, changed)
            assert_same_answer(EnvelopeSerializer, changed)
            # and the door's answer (validated data or DRF's problems) is DRF's
            assert run_serializer(serializer_class, changed)[1] == _drf_problems(serializer_class, changed)


def _drf_problems(serializer_class, data):
    from integration.inbound.validation import flatten_errors

    try:
        serializer_class().run_validation(data)
    except serializers.ValidationError as exc:
        return flatten_errors(exc.detail)
    return []


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_changes_get_drfs_answer(data):
    event_type, event = data.draw(st.sampled_from(documents()))
    path = data.draw(st.sampled_from(leaf_paths(event)))
    changed = replaced(event, path, data.draw(JSON_VALUES))
    for serializer_class in (catalog.INBOUND_TYPES[event_type].serializer, EnvelopeSerializer):
        assert_same_answer(serializer_class, changed)


@pytest.mark.parametrize("serializer_class", declared_serializers(), ids=lambda c: c.__name__)
def test_nothing_is_vouched_for_that_is_not_an_object(serializer_class):
    for value in ODD_VALUES:
        assert_same_answer(serializer_class, value)


def test_webhook_events_get_drfs_answer():
    valid = {"type": "order", "action": "update", "date": "2026-01-01 12:05:10", "id": "10452"}
    assert assert_same_answer(WebhookEventSerializer, valid)
    for path in leaf_paths(valid):
        for value in [*ODD_VALUES, "abc", " 1", "1" * 21]:
            assert_same_answer(WebhookEventSerializer, replaced(valid, path, value))
