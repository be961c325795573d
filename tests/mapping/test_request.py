"""build_request / build_batch_request: the flow's choices and Rule's limits."""

import json

import pytest

from integration.mapping import FlowConfig, MappingError, Subscriber, build_batch_request, build_request
from integration.mapping.request import GROUP_LIMIT_BYTES
from tests.mapping.cases import fields, flow_for, run, sample


def subscriber(**fields_: object) -> Subscriber:
    return Subscriber(email="anna@example.com", phone_number=None, language="sv", fields=dict(fields_))


def test_body_shape_for_one_subscriber():
    request = build_request("OrderShipped", subscriber(**{"Order.Number": "1"}), flow_for("OrderShipped"))

    assert request.body == {
        "update_on_duplicate": True,
        "automation": "reset",
        "tags": ["OrderShipped"],
        "subscribers": {
            "email": "anna@example.com",
            "language": "sv",
            "fields": [{"key": "Order.Number", "value": "1"}],
        },
    }
    assert request.order_number == "1"
    assert request.notes == []


@pytest.mark.parametrize(("mode", "expected"), [("reset", "reset"), ("force", "force"), ("none", False), ("", False)])
def test_automation_mode(mode, expected):
    request = build_request("Newsletter", subscriber(), FlowConfig(tags=("Newsletter",), automation=mode))

    assert request.body["automation"] == expected
    assert type(request.body["automation"]) is type(expected)  # false, not "none"


def test_tags_are_stripped_non_empty_and_deduplicated_in_order():
    flow = FlowConfig(tags=(" VIP", "OrderCompleted", "", "VIP ", "  ", "OrderCompleted", "Autumn"))

    request = build_request("OrderCompleted", subscriber(), flow)

    assert request.body["tags"] == ["VIP", "OrderCompleted", "Autumn"]


def test_tags_that_differ_only_in_case_are_sent_once_in_the_first_spelling():
    # The same rule as the admin form and the `flow` command, which refuse such a list outright
    flow = FlowConfig(tags=("VIP", "OrderCompleted", "vip", "ORDERCOMPLETED"))

    request = build_request("OrderCompleted", subscriber(), flow)

    assert request.body["tags"] == ["VIP", "OrderCompleted"]


@pytest.mark.parametrize("tags", [(), ("", "  "), (None,)])
def test_no_tags_is_a_mapping_error(tags):
    with pytest.raises(MappingError, match="no tags"):
        build_request("OrderCompleted", subscriber(), FlowConfig(tags=tags))


def test_excluded_fields_are_left_out():
    flow = flow_for("OrderCompleted", excluded_fields=frozenset({"Order.Products", "Order.Tele", "Order.Nothing"}))

    sent = fields(run("OrderCompleted", sample("OrderCompleted"), flow=flow))

    assert "Order.Products" not in sent and "Order.Tele" not in sent
    assert sent["Order.Skus"] == ["NW-SCARF-GRN-OS", "NW-SOCK-GRY-3942"]


def test_keys_without_exactly_one_dot_are_dropped_with_a_note():
    sub = subscriber(**{"Order.Number": "7", "Order.giftWrap.message": "x", "Ordernumber": "y", ".Number": "z"})

    request = build_request("OrderCompleted", sub, flow_for("OrderCompleted"))

    assert fields(request) == {"Order.Number": "7"}
    assert len(request.notes) == 3
    assert all("exactly one dot" in note for note in request.notes)


def test_a_field_the_catalog_does_not_give_the_event_is_never_sent():
    sub = subscriber(**{"Order.Number": "7", "Order.BillingCity": "Lund", "Order.Trackingno": "X1"})

    request = build_request("OrderPlaced", sub, flow_for("OrderPlaced"))

    assert fields(request) == {"Order.Number": "7"}
    assert any("Order.BillingCity" in note for note in request.notes)


def test_empty_values_never_reach_the_body():
    sub = subscriber(
        **{"Order.Number": "7", "Order.City": "", "Order.Brands": [], "Order.Names": [None, " "], "Order.Company": None}
    )

    assert fields(build_request("OrderCompleted", sub, flow_for("OrderCompleted"))) == {"Order.Number": "7"}


def test_types_are_named_except_text():
    request = run("OrderCompleted", sample("OrderCompleted"))

    types = {f["key"]: f.get("type") for f in request.body["subscribers"]["fields"]}
    assert types["Order.Number"] is None
    assert types["Order.Date"] == "datetime"
    assert types["Order.Brands"] == "multiple"
    assert types["Order.Products"] == "json"
    assert isinstance(json.loads(fields(request)["Order.Products"]), list)


def _group_bytes(request, group):
    total = 0
    for f in request.body["subscribers"]["fields"]:
        if f["key"].split(".")[0] == group:
            value = f["value"]
            total += sum(len(v.encode()) for v in value) if isinstance(value, list) else len(value.encode())
    return total


def test_a_group_over_65_kib_loses_elements_from_the_end_of_its_longest_value():
    # given an order with 600 lines whose names and products together exceed 65 KiB
    payload = sample("OrderCompleted")
    line = payload["order"]["lines"][0]
    payload["order"]["lines"] = [
        {**line, "productName": f"Merino Scarf no. {i:04d} " + "x" * 60, "productSize": {"SKU": f"SKU-{i:04d}"}}
        for i in range(600)
    ]

    # when it is built
    request = run("OrderCompleted", payload)

    # then the Order group fits, the longest value (Products) was cut from the end, and a note says so
    assert _group_bytes(request, "Order") <= GROUP_LIMIT_BYTES
    products = json.loads(fields(request)["Order.Products"])
    assert 0 < len(products) < 600
    assert products[0]["name"].startswith("Merino Scarf no. 0000")
    assert products[-1]["name"].startswith(f"Merino Scarf no. {len(products) - 1:04d}")
    assert any(note.startswith("Order.Products trimmed from 600 to") for note in request.notes)
    assert fields(request)["Order.Number"] == "10452"
    assert fields(request)["Customer.Number"] == "7781"  # other groups untouched


def test_a_group_under_the_limit_is_untouched():
    request = run("OrderCompleted", sample("OrderCompleted"))

    assert request.notes == []
    assert len(json.loads(fields(request)["Order.Products"])) == 2


def test_batch_request_for_back_in_stock():
    subs = [Subscriber(email=f"w{i}@example.com", fields={"ProductAlert.SKU": "S1"}) for i in range(3)]

    body = build_batch_request("ProductAlertTriggered", subs, flow_for("ProductAlertTriggered"))

    assert body["sync_subscribers"] is True
    assert body["tags"] == ["Rule - Product Alert Triggered"]
    assert [s["email"] for s in body["subscribers"]] == ["w0@example.com", "w1@example.com", "w2@example.com"]
    assert body["subscribers"][0]["fields"] == [{"key": "ProductAlert.SKU", "value": "S1"}]


@pytest.mark.parametrize("count", [0, 101])
def test_batch_holds_one_to_a_hundred_subscribers(count):
    subs = [Subscriber(email=f"w{i}@example.com") for i in range(count)]

    with pytest.raises(MappingError):
        build_batch_request("ProductAlertTriggered", subs, flow_for("ProductAlertTriggered"))


def test_missing_email_is_a_mapping_error():
    with pytest.raises(MappingError, match="no email"):
        build_request("Newsletter", Subscriber(email=""), flow_for("Newsletter"))
