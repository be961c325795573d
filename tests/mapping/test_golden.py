"""Golden tests: a realistic document per event goes in, exactly the reviewed Rule body comes out."""

import json

import pytest

from integration import catalog
from integration.mapping import FlowConfig, MappingContext, build_request, map_event
from tests.mapping.cases import GOLDEN_FILES


def test_every_catalog_event_has_a_golden_document():
    covered = {json.loads(path.read_text())["event"] for path in GOLDEN_FILES}

    assert covered == set(catalog.EVENTS)


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_document_maps_to_the_exact_rule_body(path):
    # given a stored document, the connection's settings and the flow
    case = json.loads(path.read_text())
    ctx = MappingContext(**case["context"])
    flow = FlowConfig(
        tags=tuple(case["flow"]["tags"]),
        automation=case["flow"]["automation"],
        excluded_fields=frozenset(case["flow"]["excluded_fields"]),
    )

    # when it is mapped and built
    request = build_request(case["event"], map_event(case["event"], case["payload"], ctx), flow)

    # then Rule gets exactly the reviewed body, field by field and in order
    expected = case["expected_body"]
    assert request.body["subscribers"]["fields"] == expected["subscribers"]["fields"]
    assert request.body == expected
    assert request.email == expected["subscribers"]["email"]
    # and, where the case lists them, exactly these notes on the delivery (what could not be sent, and why)
    if "expected_notes" in case:
        assert request.notes == case["expected_notes"]
