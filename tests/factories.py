"""factory-boy factories for the integration models."""

import factory

from integration.models import Connection, Delivery, Flow, InboundEvent


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
