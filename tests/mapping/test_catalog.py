"""The catalog is complete and closed: every field it lists is produced by some input, and nothing else is."""

import json
import re
from pathlib import Path

import pytest

from integration import catalog, catalog_table
from integration.mapping import MappingContext, map_event
from tests.mapping.cases import GOLDEN_FILES, sample

CTX = MappingContext(
    cart_link_template="https://shop.example/cart/{selection}",
    tracking_link_templates={"default": "https://track.example/{tracking}"},
    shop_url="https://shop.example",
    cancellation_message="Your order was cancelled.",
)


def _b2b_export(order: dict) -> dict:
    """The same order shipped to a company in a US state, sold without VAT (tax deducted)."""
    order = dict(order)
    order["shippingAddress"] = {
        **order.get("shippingAddress", {}),
        "companyName": "Miles & Rivera LLC",
        "state": {"code": "NY"},
    }
    order["billingAddress"] = {
        **order.get("billingAddress", {}),
        "companyName": "Miles & Rivera LLC",
        "stateOrProvince": "New York",
    }
    order["totals"] = {**order.get("totals", {}), "taxDeducted": {"value": 269.4, "formattedValue": "269.40 SEK"}}
    return order


def inputs_for(event: str) -> list[dict]:
    """Every payload the tests know for `event`: the sample, the golden documents and a B2B export variant."""
    payloads = [sample(event)]
    payloads += [
        json.loads(p.read_text())["payload"] for p in GOLDEN_FILES if json.loads(p.read_text())["event"] == event
    ]
    variant = sample(event)
    if "order" in variant:
        variant["order"] = _b2b_export(variant["order"])
    if "shipment" in variant:
        variant["shipment"]["order"] = _b2b_export(variant["shipment"]["order"])
    payloads.append(variant)
    return payloads


def produced(event: str) -> set[str]:
    return {key for payload in inputs_for(event) for key in map_event(event, payload, CTX).fields}


@pytest.mark.parametrize("event", list(catalog.EVENTS))
def test_every_catalog_field_of_the_event_is_produced(event):
    expected = {f.key for f in catalog.fields_for_event(event) if not f.dynamic}

    missing = expected - produced(event)

    assert not missing, f"{event} never produces {sorted(missing)}"


def _attribute_keys(payloads: list[dict]) -> set[str]:
    """Order.<type>_<element> for the custom attributes present in the input documents."""
    keys = set()
    for payload in payloads:
        order = payload.get("order") or payload.get("shipment", {}).get("order") or {}
        for attribute in order.get("attributes") or []:
            for element in attribute["elements"]:
                keys.add(f"Order.{attribute['type']['name']}_{element['key']}")
    return keys


@pytest.mark.parametrize("event", list(catalog.EVENTS))
def test_no_key_outside_the_catalog_is_produced(event):
    fixed = {f.key for f in catalog.fields_for_event(event) if not f.dynamic}
    dynamic = any(f.dynamic for f in catalog.fields_for_event(event))

    extra = {key for key in produced(event) if key not in fixed}

    # only the custom attributes of the input orders, and only for events whose catalog has them
    assert extra <= (_attribute_keys(inputs_for(event)) if dynamic else set())


def test_dynamic_attribute_keys_are_allowed_only_where_the_catalog_says():
    assert catalog.is_field_allowed("OrderCompleted", "Order.giftWrap_message")
    assert catalog.is_field_allowed("GiftCertificate", "Order.giftWrap_message")
    assert not catalog.is_field_allowed("RefundCompleted", "Order.giftWrap_message")
    assert not catalog.is_field_allowed("OrderCompleted", "Order.Giftwrap")


def test_a_key_listed_for_two_event_groups_is_allowed_for_both():
    assert catalog.is_field_allowed("OrderCompleted", "Customer.Language")
    assert catalog.is_field_allowed("CustomerRegistered", "Customer.Language")
    assert not catalog.is_field_allowed("Newsletter", "Customer.Language")


def test_every_field_has_a_rule_type_and_a_one_dot_key():
    for spec in catalog.FIELDS:
        assert spec.type in catalog.FIELD_TYPES
        assert spec.key.count(".") == 1, spec.key


def test_readme_holds_the_rendered_catalog_table_verbatim():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    match = re.search(r"<!-- catalog:start -->\n(.*?)<!-- catalog:end -->", readme, re.S)

    assert match, "README.md lacks the catalog markers"
    assert match.group(1).strip() == catalog_table.render().strip(), (
        "README catalog table is stale: paste `python -m integration.catalog_table` between the markers"
    )


def test_rendered_table_lists_every_event_and_field():
    table = catalog_table.render()

    for name in catalog.EVENTS:
        assert f"| `{name}` |" in table
    for spec in catalog.FIELDS:
        assert f"| `{spec.key}` | {spec.type} |" in table
