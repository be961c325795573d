"""Property tests: any order document Centra could plausibly send maps without error and within Rule's rules."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integration import catalog
from integration.mapping import FlowConfig, MappingContext, MappingError, build_request, map_event
from integration.mapping.orders import cart_items

ORDER_EVENTS = [
    "OrderCreated",
    "OrderPlaced",
    "OrderCompleted",
    "OrderShipped",
    "OrderCancellation",
    "RefundCompleted",
    "ReturnCompleted",
    "GiftCertificate",
]

# Real documents have nulls, numbers as strings, blanks and odd unicode where you least expect them.
scalars = st.one_of(
    st.none(),
    st.text(max_size=12),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["", " ", "0", "12.50", "1 299,00", "sv-SE", "SE", "2026-01-01T10:00:00Z"]),
)
money = st.one_of(
    st.none(),
    scalars,
    st.fixed_dictionaries(
        {},
        optional={
            "value": scalars,
            "formattedValue": scalars,
            "currency": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"code": scalars})),
        },
    ),
)
address = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            k: scalars
            for k in (
                "firstName",
                "lastName",
                "companyName",
                "address1",
                "address2",
                "city",
                "zipCode",
                "stateOrProvince",
                "email",
                "phoneNumber",
                "cellPhoneNumber",
            )
        }
        | {
            "country": st.one_of(scalars, st.fixed_dictionaries({}, optional={"code": scalars})),
            "state": st.one_of(scalars, st.fixed_dictionaries({}, optional={"code": scalars})),
        },
    ),
)
line = st.fixed_dictionaries(
    {},
    optional={
        "productName": scalars,
        "productVariantName": scalars,
        "size": scalars,
        "quantity": scalars,
        "taxPercent": scalars,
        "discountPercent": scalars,
        "folderName": scalars,
        "productBrand": scalars,
        "productExternalUrl": scalars,
        "brand": st.one_of(st.none(), st.fixed_dictionaries({"name": scalars})),
        "collection": st.one_of(st.none(), st.fixed_dictionaries({"name": scalars})),
        "productSize": st.one_of(st.none(), st.fixed_dictionaries({"SKU": scalars})),
        "unitPrice": money,
        "lineValue": money,
    },
)
attribute = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(scalars, st.fixed_dictionaries({"name": scalars})),
        "elements": st.one_of(
            st.none(),
            st.lists(
                st.fixed_dictionaries({}, optional={"key": scalars, "value": scalars, "selectionValue": scalars}),
                max_size=3,
            ),
        ),
    },
)
order = st.fixed_dictionaries(
    # an email is always there somewhere: without one the mapping rightly refuses the event
    {
        "customer": st.fixed_dictionaries(
            {"email": st.just("anna@example.com")}, optional={"id": scalars, "firstName": scalars, "language": scalars}
        )
    },
    optional={
        "number": scalars,
        "orderDate": scalars,
        "createdAt": scalars,
        "otherComment": scalars,
        "language": st.one_of(scalars, st.fixed_dictionaries({}, optional={"code": scalars})),
        "shippingAddress": address,
        "billingAddress": address,
        "grandTotal": money,
        "totals": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    k: money
                    for k in (
                        "lineValues",
                        "discounts",
                        "shipping",
                        "handling",
                        "taxIncluded",
                        "taxAdded",
                        "taxDeducted",
                        "returnCost",
                    )
                },
            ),
        ),
        "paymentMethod": st.one_of(scalars, st.fixed_dictionaries({"name": scalars})),
        "shippingPriceGroup": st.one_of(
            st.none(),
            st.fixed_dictionaries({"shippingOption": st.one_of(st.none(), st.fixed_dictionaries({"name": scalars}))}),
        ),
        "lines": st.one_of(st.none(), st.lists(line, max_size=4)),
        "attributes": st.one_of(st.none(), st.lists(attribute, max_size=3)),
    },
)
contexts = st.builds(
    MappingContext,
    time_zone=st.sampled_from(["Europe/Stockholm", "UTC", "America/New_York", "", "Bad/Zone"]),
    default_language=st.sampled_from(["", "sv", "en-GB", "xx-yy-zz"]),
    send_cart_link=st.booleans(),
    cart_link_template=st.sampled_from(["", "https://s.example/{selection}", "https://s.example/no-placeholder"]),
    tracking_link_templates=st.sampled_from([{}, {"default": "https://t.example/{tracking}"}]),
    shop_url=st.sampled_from(["", "https://shop.example"]),
    cancellation_message=st.sampled_from(["", "Sorry"]),
)
tags = st.lists(st.sampled_from(["OrderCompleted", " VIP ", "", "  ", "VIP", "Autumn"]), max_size=6).filter(
    lambda ts: any(t.strip() for t in ts)
)


def payload_for(event: str, doc: dict, extra: dict) -> dict:
    if event == "OrderShipped":
        return {"shipment": {"order": doc, **extra}}
    if event in ("RefundCompleted", "ReturnCompleted"):
        return {
            "return": {
                "order": doc,
                "lines": [{"orderLine": line, "lineValue": line.get("lineValue")} for line in doc.get("lines") or []],
                **extra,
            }
        }
    if event == "GiftCertificate":
        return {"order": doc, "giftCertificate": extra}
    if event == "OrderCreated":
        return {"order": doc, "selection": extra.get("trackingNumber")}
    return {"order": doc}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    event=st.sampled_from(ORDER_EVENTS),
    doc=order,
    ctx=contexts,
    flow_tags=tags,
    extra=st.fixed_dictionaries(
        {},
        optional={
            "trackingNumber": scalars,
            "grandTotal": money,
            "carrierInformation": st.fixed_dictionaries({"carrierName": scalars}),
            "date": scalars,
            "value": money,
            "valueAsNumber": scalars,
            "code": scalars,
            "lines": st.lists(
                st.one_of(scalars, st.fixed_dictionaries({}, optional={"quantity": scalars})), max_size=3
            ),
        },
    ),
)
def test_any_order_document_maps_within_rules_rules(event, doc, ctx, flow_tags, extra):
    payload = payload_for(event, doc, extra)
    if event == "OrderCreated" and not cart_items(doc):
        # an abandoned cart without items is refused with the reason, never sent
        with pytest.raises(MappingError, match="no items"):
            map_event(event, payload, ctx)
        return

    # when any plausible document is mapped and built
    request = build_request(event, map_event(event, payload, ctx), FlowConfig(tags=tuple(flow_tags)))

    # then no value is empty, no tag is empty or repeated, and every key has exactly one dot
    body = request.body
    assert body["tags"] and len(body["tags"]) == len(set(body["tags"]))
    assert all(tag and tag == tag.strip() for tag in body["tags"])
    for field in body["subscribers"]["fields"]:
        assert field["key"].count(".") == 1
        assert field["value"] not in (None, "", [], {})
        if isinstance(field["value"], list):
            assert all(isinstance(v, str) and v.strip() for v in field["value"])
            if not catalog.is_per_item(field["key"]):
                assert len(field["value"]) == len(set(field["value"]))
        else:
            assert isinstance(field["value"], str) and field["value"].strip()
    assert body["subscribers"]["email"] == "anna@example.com"
    assert all(isinstance(note, str) and note for note in request.notes)
