"""Shared helpers for the mapping tests: load the golden documents and run them through the public API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from integration import catalog
from integration.mapping import FlowConfig, MappingContext, RuleRequest, build_request, map_event
from integration.mapping.samples import sample

DATA = Path(__file__).resolve().parent.parent / "data" / "orders"
GOLDEN_FILES = sorted(DATA.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    """One golden case: event, context, flow, payload and the expected body."""
    return json.loads((DATA / name).read_text())


def flow_for(event: str, **overrides: Any) -> FlowConfig:
    """The catalog's default flow for `event`, with overrides."""
    values = {"tags": catalog.EVENTS[event].default_tags, "automation": "reset", "excluded_fields": frozenset()}
    values.update(overrides)
    return FlowConfig(**values)


def run(event: str, payload: dict, ctx: MappingContext | None = None, flow: FlowConfig | None = None) -> RuleRequest:
    """Map and build, as emit does."""
    ctx = ctx or MappingContext()
    return build_request(event, map_event(event, payload, ctx), flow or flow_for(event))


def fields(request: RuleRequest) -> dict[str, Any]:
    """The request's fields as {key: value}."""
    return {f["key"]: f["value"] for f in request.body["subscribers"]["fields"]}


def order_payload(**changes: Any) -> dict:
    """The OrderCompleted sample with top-level order keys changed."""
    payload = sample("OrderCompleted")
    payload["order"].update(changes)
    return payload
