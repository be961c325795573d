"""Delivery to Rule: every answer class, end to end against the fake Rule over real HTTP."""

import pytest

from integration import delivery
from integration.models import Delivery
from tests.factories import DeliveryFactory


def make_delivery(connection, **kwargs) -> Delivery:
    return delivery.create_delivery(
        connection=connection,
        event=kwargs.pop("event", "OrderCompleted"),
        body=kwargs.pop(
            "body",
            {"update_on_duplicate": True, "automation": "reset", "tags": ["OrderCompleted"],
             "subscribers": {"email": "anna@example.com", "fields": [{"key": "Order.Number", "value": "10452"}]}},
        ),
        email=kwargs.pop("email", "anna@example.com"),
        idempotency_key=kwargs.pop("idempotency_key", "OrderCompleted:order:10452"),
        **kwargs,
    )


def test_a_2xx_answer_succeeds_and_rule_receives_the_body(rule_connection, fake_rule):
    d = make_delivery(rule_connection)

    outcome = delivery.deliver(d.pk)

    d.refresh_from_db()
    assert outcome == "succeeded"
    assert d.status == Delivery.Status.SUCCEEDED
    [request] = fake_rule.requests
    assert request["method"] == "POST" and request["path"] == "/api/v2/subscribers"
    assert request["json"]["subscribers"]["fields"] == [{"key": "Order.Number", "value": "10452"}]
    assert fake_rule.subscriber("anna@example.com")["tags"] == ["OrderCompleted"]
    [attempt] = d.attempts.all()
    assert (attempt.number, attempt.status_code, attempt.outcome) == (1, 200, "succeeded")
