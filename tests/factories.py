"""factory-boy factories for the integration models, with the states tests need as traits.

DeliveryFactory(connection=conn, due_later=True)     # retrying, next attempt in an hour
DeliveryFactory(abandoned=True)                      # `sending` whose worker's lease ran out
DeliveryAttemptFactory(delivery=d, answered_500=True)
"""

from datetime import timedelta

import factory
from django.utils import timezone

from integration.models import Connection, Delivery, DeliveryAttempt, Flow, InboundEvent


class ConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Connection
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"shop-{n}")
    signing_secrets = "whsec-test-1"
    rule_api_key = "rule-key-0123456789"
    rule_api_url = "http://127.0.0.1:9/api/v2"
    time_zone = "Europe/Stockholm"
    test_email = "merchant@example.com"
    send_cart_link = True
    cart_link_template = "https://shop.example/abandoned-cart/{selection}"
    tracking_link_templates = factory.LazyFunction(
        lambda: {
            "PostNord": "https://tracking.postnord.com/?id={tracking}",
            "default": "https://track.example/{tracking}",
        }
    )
    shop_url = "https://shop.example"

    @factory.post_generation
    def flows(conn, create, extracted, **kwargs):
        """Every catalog event's flow, as the admin and the `connection` command create them (flows=False: none)."""
        if create and extracted is not False:
            Flow.create_defaults(conn)


class InboundEventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = InboundEvent

    connection = factory.SubFactory(ConnectionFactory)
    source = InboundEvent.Source.EVENTS
    dedupe_key = factory.Sequence(lambda n: f"evt-{n}")
    event_type = "OrderCompleted"
    payload = factory.LazyFunction(dict)


class DeliveryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Delivery

    connection = factory.SubFactory(ConnectionFactory)
    event = "OrderCompleted"
    idempotency_key = factory.Sequence(lambda n: f"OrderCompleted:order:{n}")
    email = "anna@example.com"
    request_body = factory.LazyAttribute(
        lambda d: {
            "update_on_duplicate": True,
            "automation": "reset",
            "tags": [d.event],
            "subscribers": {"email": d.email, "fields": [{"key": "Order.Number", "value": "1"}]},
        }
    )

    next_attempt_at = factory.LazyFunction(timezone.now)

    class Params:
        retrying_due = factory.Trait(
            status=Delivery.Status.RETRYING,
            attempt_count=1,
            next_attempt_at=factory.LazyFunction(lambda: timezone.now() - timedelta(seconds=5)),
        )
        due_later = factory.Trait(
            status=Delivery.Status.RETRYING,
            attempt_count=1,
            next_attempt_at=factory.LazyFunction(lambda: timezone.now() + timedelta(hours=1)),
        )
        in_flight = factory.Trait(
            status=Delivery.Status.SENDING,
            lease_until=factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=1)),
        )
        abandoned = factory.Trait(
            status=Delivery.Status.SENDING,
            lease_until=factory.LazyFunction(lambda: timezone.now() - timedelta(minutes=1)),
        )
        succeeded = factory.Trait(
            status=Delivery.Status.SUCCEEDED,
            attempt_count=1,
            next_attempt_at=None,
            finished_at=factory.LazyFunction(timezone.now),
        )
        failed = factory.Trait(
            status=Delivery.Status.FAILED,
            attempt_count=12,
            next_attempt_at=None,
            last_error="HTTP 400: invalid",
            finished_at=factory.LazyFunction(timezone.now),
        )


class FlowFactory(factory.django.DjangoModelFactory):
    """A stored flow; give a connection made with flows=False (ConnectionFactory stores every flow itself)."""

    class Meta:
        model = Flow
        django_get_or_create = ("connection", "event")

    connection = factory.SubFactory(ConnectionFactory, flows=False)
    event = "OrderCompleted"
    enabled = True
    tags = factory.LazyAttribute(lambda f: [f.event])
    automation = "reset"
    excluded_fields = factory.LazyFunction(list)

    class Params:
        disabled = factory.Trait(enabled=False)


class DeliveryAttemptFactory(factory.django.DjangoModelFactory):
    """One answered attempt (200 by default); the delivery's attempt count is left to the test."""

    class Meta:
        model = DeliveryAttempt

    delivery = factory.SubFactory(DeliveryFactory)
    number = factory.Sequence(lambda n: n + 1)
    duration_ms = 42
    status_code = 200
    response_body = '{"message": "Success"}'
    outcome = "succeeded"

    class Params:
        answered_500 = factory.Trait(status_code=500, response_body='{"error": "server"}', outcome="retry")
        refused = factory.Trait(status_code=400, response_body='{"error": "BadRequest"}', outcome="failed")
        rate_limited = factory.Trait(status_code=429, response_body="", outcome="rate_limited", counted=False)
        no_answer = factory.Trait(status_code=None, response_body="", error="ConnectionError", outcome="retry")
        unanswered = factory.Trait(status_code=None, response_body="", outcome="")
