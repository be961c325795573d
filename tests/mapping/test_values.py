"""Value rules: money styles, amounts, dates, languages; and the settings read from the models."""

from decimal import Decimal

import pytest

from integration.mapping import FlowConfig, MappingContext
from integration.mapping.values import MoneyStyle, amount, language_code, rule_date


@pytest.mark.parametrize(
    ("sample", "value", "expected"),
    [
        ("1 299.00 SEK", "1249.8", "1 249.80 SEK"),
        ("249.80 SEK", "1249.8", "1249.80 SEK"),  # no thousands group seen: none used
        ("$1,187.87", "77.5", "$77.50"),
        ("$1,187.87", "12345.678", "$12,345.68"),
        ("1 599,00 NOK", "2000", "2 000,00 NOK"),
        ("129,90 €", "-3.1", "-3,10 €"),
        ("1.299,00 EUR", "1000000", "1.000.000,00 EUR"),
        ("¥1,200", "3400", "¥3,400"),
        ("1,200 KWD", "3.4", "3,400 KWD"),  # the sample's value (1.2) shows the comma is decimal here
    ],
)
def test_money_style_learnt_from_a_formatted_value(sample, value, expected):
    sample_value = 1.2 if sample == "1,200 KWD" else 1200
    style = MoneyStyle.learn([{"value": sample_value, "formattedValue": sample}])

    assert style.format(Decimal(value)) == expected


def test_money_style_without_any_formatted_value_uses_the_currency_code():
    assert MoneyStyle.learn([None, {"value": 1}], "DKK").format(Decimal("5")) == "5.00 DKK"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"value": 1299}, "1299.00"),
        ({"value": "12.345"}, "12.35"),
        ("1 299,5", "1299.50"),
        (None, None),
        ({"value": "n/a"}, None),
        ({"value": float("nan")}, None),
        (True, None),
    ],
)
def test_amount_is_two_decimals_with_a_dot(value, expected):
    assert amount(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("sv-SE", "sv"), ("sv_SE", "sv"), ("SV", "sv"), ({"languageCode": "da"}, "da"), ("swe", None), ("", None)],
)
def test_language_code(value, expected):
    assert language_code(value) == expected


def test_rule_date_keeps_plain_dates_and_converts_datetimes():
    assert rule_date("2027-12-20", "Europe/Stockholm") == "2027-12-20"
    assert rule_date("2026-12-31T23:30:00+00:00", "Europe/Stockholm") == "2027-01-01"
    assert rule_date("not a date", "UTC") is None


def test_context_and_flow_config_read_the_models(connection):
    # given a connection with its settings and its default OrderShipped flow, changed by the merchant
    connection.default_language = "sv"
    connection.cancellation_message = "We are sorry."
    flow = connection.flows.get(event="OrderShipped")
    flow.tags = ["OrderShipped", "Autumn"]
    flow.automation = "none"
    flow.excluded_fields = ["Order.Products"]

    ctx = MappingContext.from_connection(connection)
    config = FlowConfig.from_flow(flow)

    assert ctx.time_zone == "Europe/Stockholm"
    assert ctx.default_language == "sv"
    assert ctx.cart_link_template == "https://shop.example/abandoned-cart/{selection}"
    assert ctx.tracking_link_templates["default"] == "https://track.example/{tracking}"
    assert ctx.shop_url == "https://shop.example"
    assert ctx.cancellation_message == "We are sorry."
    assert config.tags == ("OrderShipped", "Autumn")
    assert config.automation == "none"
    assert config.excluded_fields == frozenset({"Order.Products"})
