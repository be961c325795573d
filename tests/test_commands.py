"""Management commands: connection, flow, send_test_call, resend, purge, forget_subscriber (JSON out)."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from integration import catalog
from integration.encryption import mask
from integration.models import Connection, Delivery, DeliveryAttempt, InboundEvent
from tests.factories import ConnectionFactory, DeliveryAttemptFactory, DeliveryFactory, InboundEventFactory

pytestmark = pytest.mark.django_db

RULE_KEY = "rule-key-cli-0123456789abcdef"
SECRET = "whsec-cli-secret-abcdef"


def run(*args: str) -> tuple[object, str]:
    """Run a command; its parsed JSON output and the raw text."""
    out = StringIO()
    call_command(*args, stdout=out)
    text = out.getvalue()
    return json.loads(text), text


# --------------------------------------------------------------------------------------------- connection


def test_connection_upsert_creates_and_prints_urls_with_secrets_masked():
    data, text = run(
        "connection",
        "upsert",
        "my-shop",
        "--rule-api-key",
        RULE_KEY,
        "--secret",
        SECRET,
        "--secret",
        "whsec-old-999",
        "--test-email",
        "me@example.com",
        "--centra-api-url",
        "https://shop.centra.com/graphql",
        "--centra-api-token",
        "centra-cli-token-55555",
        "--manual-confirmation",
        "--time-zone",
        "Europe/Oslo",
        "--default-language",
        "SV",
        "--tracking-link",
        "PostNord=https://t.example/{tracking}",
        "--cart-link-template",
        "https://shop.example/cart/{selection}",
        "--shop-url",
        "https://shop.example",
    )

    conn = Connection.objects.get(name="my-shop")
    assert data["name"] == "my-shop"
    assert data["status"] == "active"
    assert data["events_url"] == conn.events_url() and conn.token in data["events_url"]
    assert data["webhook_url"] == conn.webhook_url()
    assert data["rule_api_key"] == mask(RULE_KEY)
    assert data["signing_secrets"] == [mask(SECRET), mask("whsec-old-999")]
    assert data["centra_api_token"] == mask("centra-cli-token-55555")
    for secret in (RULE_KEY, SECRET, "whsec-old-999", "centra-cli-token-55555"):
        assert secret not in text
    # and the settings are stored as given
    assert conn.rule_api_key == RULE_KEY
    assert conn.signing_secret_list == [SECRET, "whsec-old-999"]
    assert conn.manual_confirmation is True
    assert conn.time_zone == "Europe/Oslo"
    assert conn.default_language == "sv"
    assert conn.tracking_link_templates == {"PostNord": "https://t.example/{tracking}"}
    assert {f["event"] for f in data["flows"]} == set(catalog.EVENTS)


def test_connection_upsert_changes_only_what_is_given():
    run("connection", "upsert", "my-shop", "--rule-api-key", RULE_KEY, "--secret", SECRET)
    token = Connection.objects.get(name="my-shop").token

    data, _ = run("connection", "upsert", "my-shop", "--test-email", "new@example.com", "--no-manual-confirmation")

    conn = Connection.objects.get(name="my-shop")
    assert conn.test_email == "new@example.com"
    assert conn.rule_api_key == RULE_KEY
    assert conn.signing_secret_list == [SECRET]
    assert conn.token == token
    assert data["webhook_url"] == conn.webhook_url()


def test_connection_upsert_sets_who_loses_the_cart_tag():
    data, _ = run("connection", "upsert", "my-shop", "--rule-api-key", RULE_KEY, "--secret", SECRET)
    assert (data["remove_cart_tag"], data["remove_cart_tag_always"]) == (True, False)

    data, _ = run("connection", "upsert", "my-shop", "--remove-cart-tag-always")
    conn = Connection.objects.get(name="my-shop")
    assert (conn.remove_cart_tag, conn.remove_cart_tag_always) == (True, True)
    assert data["remove_cart_tag_always"] is True

    run("connection", "upsert", "my-shop", "--no-remove-cart-tag")
    conn.refresh_from_db()
    assert (conn.remove_cart_tag, conn.remove_cart_tag_always) == (False, True)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--secret", SECRET], "needs --rule-api-key"),
        (["--rule-api-key", RULE_KEY], "needs --secret"),
        (["--rule-api-key", RULE_KEY, "--secret", SECRET, "--time-zone", "Nowhere/Land"], "unknown time zone"),
        (["--rule-api-key", RULE_KEY, "--secret", SECRET, "--tracking-link", "PostNord"], "CARRIER=TEMPLATE"),
        (["--rule-api-key", RULE_KEY, "--secret", SECRET, "--rule-api-url", "not a url"], "is not a URL"),
    ],
)
def test_connection_upsert_rejects_bad_input_without_echoing_secrets(args, error):
    with pytest.raises(CommandError) as exc:
        call_command("connection", "upsert", "bad-shop", *args, stdout=StringIO())

    assert error in str(exc.value)
    assert RULE_KEY not in str(exc.value) and SECRET not in str(exc.value)
    assert not Connection.objects.filter(name="bad-shop").exists()


def test_connection_list_and_show():
    a = ConnectionFactory(name="alpha")
    ConnectionFactory(name="beta", status=Connection.Status.PAUSED, paused_reason="Rule said 401")

    listed, text = run("connection", "list")
    shown, _ = run("connection", "show", "alpha")

    assert [c["name"] for c in listed] == ["alpha", "beta"]
    assert listed[1]["status"] == "paused" and listed[1]["paused_reason"] == "Rule said 401"
    assert a.rule_api_key not in text
    assert shown["webhook_url"] == a.webhook_url()
    assert len(shown["flows"]) == len(catalog.EVENTS)
    with pytest.raises(CommandError, match="No connection named 'gamma'"):
        call_command("connection", "show", "gamma", stdout=StringIO())


# --------------------------------------------------------------------------------------------- flow


def test_flow_set_changes_one_flow():
    conn = ConnectionFactory(name="shop")

    data, _ = run(
        "flow",
        "set",
        "shop",
        "OrderCancellation",
        "--enable",
        "--tag",
        "Cancelled",
        "--tag",
        "OrderCancellation",
        "--automation",
        "force",
        "--exclude-field",
        "Order.CompanyUrl",
    )

    flow = conn.flows.get(event="OrderCancellation")
    assert (flow.enabled, flow.tags, flow.automation, flow.excluded_fields) == (
        True,
        ["Cancelled", "OrderCancellation"],
        "force",
        ["Order.CompanyUrl"],
    )
    assert data == {
        "connection": "shop",
        "event": "OrderCancellation",
        "enabled": True,
        "tags": ["Cancelled", "OrderCancellation"],
        "automation": "force",
        "excluded_fields": ["Order.CompanyUrl"],
    }
    # other flows are untouched
    assert conn.flows.get(event="OrderShipped").tags == ["OrderShipped"]

    run("flow", "set", "shop", "OrderCancellation", "--disable")
    assert conn.flows.get(event="OrderCancellation").enabled is False
    assert conn.flows.get(event="OrderCancellation").tags == ["Cancelled", "OrderCancellation"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["OrderDelivered"], "Unknown event 'OrderDelivered'"),
        (["Newsletter", "--exclude-field", "Order.Trackingno"], "Order.Trackingno not sent by Newsletter"),
        (["Newsletter", "--tag", "A", "--tag", "a"], "duplicate tags"),
    ],
)
def test_flow_set_rejects_unknown_events_and_fields(args, error):
    conn = ConnectionFactory(name="shop")

    with pytest.raises(CommandError, match=error):
        call_command("flow", "set", "shop", *args, stdout=StringIO())

    assert conn.flows.get(event="Newsletter").excluded_fields == []
    assert conn.flows.get(event="Newsletter").tags == ["Newsletter"]


# --------------------------------------------------------------------------------------------- send_test_call


def test_send_test_call_prints_each_flows_result(rule_connection, fake_rule):
    rule_connection.flows.exclude(event__in=["OrderCompleted", "OrderShipped"]).update(enabled=False)

    data, text = run("send_test_call", rule_connection.name)

    assert data["test_email"] == rule_connection.test_email
    assert {r["event"] for r in data["results"]} == {"OrderCompleted", "OrderShipped"}
    for result in data["results"]:
        assert result["ok"] is True and result["status_code"] == 200 and result["status"] == "succeeded"
        assert Delivery.objects.get(pk=result["delivery_id"]).trigger == Delivery.Trigger.TEST
    posts = [r for r in fake_rule.requests if r["method"] == "POST"]
    assert sorted(p["json"]["tags"][0] for p in posts) == ["OrderCompleted", "OrderShipped"]
    assert {p["json"]["subscribers"]["email"] for p in posts} == {rule_connection.test_email}
    assert rule_connection.rule_api_key not in text


def test_send_test_call_sends_order_placed_only_in_manual_confirmation_mode(rule_connection, fake_rule):
    # given: the cart and order flows on, the connection in auto-confirm mode
    rule_connection.flows.exclude(event__in=["OrderPlaced", "OrderCompleted"]).update(enabled=False)

    # when / then: OrderPlaced is never sent in auto-confirm mode, so its test call is not made either
    data, _ = run("send_test_call", rule_connection.name)
    assert [r["event"] for r in data["results"]] == ["OrderCompleted"]

    # when / then: in manual-confirmation mode both go
    Connection.objects.filter(pk=rule_connection.pk).update(manual_confirmation=True)
    data, _ = run("send_test_call", rule_connection.name)
    assert [r["event"] for r in data["results"]] == ["OrderPlaced", "OrderCompleted"]


def test_send_test_call_fails_loudly(rule_connection, fake_rule):
    rule_connection.flows.exclude(event="OrderCompleted").update(enabled=False)
    fake_rule.fail(400, body={"error": "BadRequest", "message": "nope"})
    out = StringIO()

    with pytest.raises(CommandError, match="1 of 1 test calls did not succeed"):
        call_command("send_test_call", rule_connection.name, stdout=out)

    [result] = json.loads(out.getvalue())["results"]
    assert result["status_code"] == 400 and "nope" in result["answer"]

    Connection.objects.filter(pk=rule_connection.pk).update(test_email="")
    with pytest.raises(CommandError, match="has no test email"):
        call_command("send_test_call", rule_connection.name, stdout=StringIO())


# --------------------------------------------------------------------------------------------- resend


def failed_delivery(conn: Connection, **kwargs) -> Delivery:
    delivery = DeliveryFactory(connection=conn, failed=True, attempt_count=1, last_error="400 BadRequest", **kwargs)
    DeliveryAttemptFactory(delivery=delivery, number=1, refused=True)
    return delivery


def test_resend_by_id_sends_again_with_history_kept(
    rule_connection, fake_rule, task_queue, django_capture_on_commit_callbacks
):
    delivery = failed_delivery(rule_connection)

    with django_capture_on_commit_callbacks(execute=True):
        data, _ = run("resend", str(delivery.pk))
    task_queue.run_all()

    assert data == {"resent": 1, "deliveries": [{"id": delivery.pk, "resent": True, "status": "pending"}]}
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.SUCCEEDED
    assert list(delivery.attempts.order_by("number").values_list("number", "status_code")) == [(1, 400), (2, 200)]
    # the order once more (its cart tag removal, a DELETE, may follow in the same drain)
    assert [r["json"]["subscribers"]["email"] for r in fake_rule.requests if r["method"] == "POST"] == [delivery.email]


def test_resend_failed_of_one_connection(rule_connection):
    other = ConnectionFactory()
    mine = failed_delivery(rule_connection)
    theirs = failed_delivery(other)
    done = DeliveryFactory(connection=rule_connection, status=Delivery.Status.SUCCEEDED)

    data, _ = run("resend", "--failed", "--connection", rule_connection.name)

    assert [d["id"] for d in data["deliveries"]] == [mine.pk]
    assert Delivery.objects.get(pk=mine.pk).status == Delivery.Status.PENDING
    assert Delivery.objects.get(pk=theirs.pk).status == Delivery.Status.FAILED
    assert Delivery.objects.get(pk=done.pk).status == Delivery.Status.SUCCEEDED


def test_resend_needs_ids_or_failed_and_known_ids():
    with pytest.raises(CommandError, match="Give delivery ids or --failed"):
        call_command("resend", stdout=StringIO())
    with pytest.raises(CommandError, match="No delivery with id 424242"):
        call_command("resend", "424242", stdout=StringIO())


# --------------------------------------------------------------------------------------------- purge


def test_purge_deletes_only_old_finished_rows(connection, settings):
    settings.RETENTION_DAYS = 30
    old = timezone.now() - timedelta(days=31)
    recent = timezone.now() - timedelta(days=29)
    old_done = [
        DeliveryFactory(connection=connection, status=s, created_at=old) for s in ("succeeded", "failed", "cancelled")
    ]
    DeliveryAttemptFactory(delivery=old_done[0], number=1)
    old_open = [
        DeliveryFactory(connection=connection, status=s, created_at=old) for s in ("pending", "sending", "retrying")
    ]
    recent_done = DeliveryFactory(connection=connection, status="succeeded", created_at=recent)
    old_events = [
        InboundEventFactory(connection=connection, status=s, received_at=old)
        for s in ("processed", "ignored", "failed")
    ]
    old_received = InboundEventFactory(connection=connection, status="received", received_at=old)
    recent_event = InboundEventFactory(connection=connection, status="processed", received_at=recent)

    data, _ = run("purge")

    assert data["days"] == 30
    assert data["deliveries_deleted"] == 3 and data["inbound_events_deleted"] == 3
    assert set(Delivery.objects.values_list("pk", flat=True)) == {d.pk for d in [*old_open, recent_done]}
    assert set(InboundEvent.objects.values_list("pk", flat=True)) == {old_received.pk, recent_event.pk}
    assert not DeliveryAttempt.objects.exists()
    assert not any(InboundEvent.objects.filter(pk=e.pk).exists() for e in old_events)


def test_purge_days_option_and_batches(connection):
    from integration.ops.retention import purge

    old = timezone.now() - timedelta(days=8)
    for _ in range(5):
        DeliveryFactory(connection=connection, status="succeeded", created_at=old)

    assert run("purge", "--days", "10")[0]["deliveries_deleted"] == 0
    assert purge(7, batch_size=2)["deliveries_deleted"] == 5
    assert not Delivery.objects.exists()
    with pytest.raises(CommandError, match="--days must be zero or more"):
        call_command("purge", "--days", "-1", stdout=StringIO())


# --------------------------------------------------------------------------------------------- forget_subscriber


def test_forget_subscriber_deletes_their_rows_only(connection):
    other = ConnectionFactory()
    DeliveryFactory(connection=connection, email="anna@example.com")
    DeliveryFactory(connection=other, email="Anna@Example.com")
    kept_delivery = DeliveryFactory(connection=connection, email="bo@example.com")
    InboundEventFactory(connection=connection, email="anna@example.com")
    kept_event = InboundEventFactory(connection=connection, email="bo@example.com")

    data, _ = run("forget_subscriber", "anna@example.com")

    assert data["email"] == "anna@example.com"
    assert (data["deliveries_deleted"], data["inbound_events_deleted"]) == (2, 1)
    assert any(line.startswith("Rule:") for line in data["remains_outside"])  # without --rule
    assert list(Delivery.objects.values_list("pk", flat=True)) == [kept_delivery.pk]
    assert list(InboundEvent.objects.values_list("pk", flat=True)) == [kept_event.pk]


def test_forget_subscriber_of_one_connection_and_at_rule(rule_connection, fake_rule):
    other = ConnectionFactory()
    theirs = DeliveryFactory(connection=other, email="anna@example.com")
    # Anna is a subscriber at the fake Rule
    from integration.rule.client import RuleClient

    RuleClient(fake_rule.url, fake_rule.api_key).send(
        "POST",
        "/subscribers",
        json={"update_on_duplicate": True, "tags": ["Newsletter"], "subscribers": {"email": "anna@example.com"}},
    )
    assert fake_rule.subscriber("anna@example.com") is not None
    DeliveryFactory(connection=rule_connection, email="anna@example.com")
    fake_rule.clear()

    data, text = run("forget_subscriber", "anna@example.com", "--connection", rule_connection.name, "--rule")

    assert data["deliveries_deleted"] == 1
    assert data["rule"] == [
        {"connection": rule_connection.name, "ok": True, "status_code": 200, "message": "deleted at Rule"}
    ]
    [call] = fake_rule.requests
    assert call["method"] == "DELETE"
    assert call["path"].endswith("/subscribers/anna@example.com")
    assert call["query"] == {"identified_by": "email"}
    assert fake_rule.subscriber("anna@example.com") is None
    assert Delivery.objects.filter(pk=theirs.pk).exists()
    assert rule_connection.rule_api_key not in text


def test_forget_subscriber_reports_a_rule_failure(rule_connection, fake_rule):
    fake_rule.fail(500)
    out = StringIO()

    with pytest.raises(CommandError, match=f"Not deleted at Rule for: {rule_connection.name}"):
        call_command(
            "forget_subscriber", "anna@example.com", "--connection", rule_connection.name, "--rule", stdout=out
        )

    assert json.loads(out.getvalue())["rule"][0]["status_code"] == 500
