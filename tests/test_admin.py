"""The merchant's admin: connection page, flows, actions, logs and preview, driven through Django's test client."""

from __future__ import annotations

import inspect
import json
import re

import pytest
from django import forms
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backinstock.models import BackInStockSettings
from integration import catalog
from integration.delivery import engine as delivery_module
from integration.delivery.testcall import enabled_flows
from integration.encryption import mask
from integration.mapping.samples import sample
from integration.models import Connection, Delivery, DeliveryAttempt, InboundEvent
from integration.processing import emit
from tests.factories import ConnectionFactory, DeliveryFactory, InboundEventFactory

pytestmark = pytest.mark.django_db

CENTRA_TOKEN = "centra-token-abcdef-987654"
SIGNING_SECRET = "whsec-very-secret-4242"


def change_url(obj) -> str:
    return reverse(f"admin:integration_{obj._meta.model_name}_change", args=[obj.pk])


def changelist_url(model) -> str:
    return reverse(f"admin:integration_{model._meta.model_name}_changelist")


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _field_data(form, name: str) -> list[tuple[str, object]]:
    """What a browser would post for one field of a rendered form."""
    field = form.fields[name]
    key = form.add_prefix(name)
    value = form[name].value()
    if isinstance(field, forms.BooleanField):
        return [(key, "on")] if value else []
    if getattr(field.widget, "allow_multiple_selected", False):
        return [(key, v) for v in value or []]
    if value is None:
        return [(key, "")]
    return [(key, value if isinstance(value, str) else field.prepare_value(value))]


def form_data(response) -> dict:
    """The POST data of an admin change page as rendered: main form, inline management forms and rows."""
    form = response.context["adminform"].form
    pairs = [pair for name in form.fields for pair in _field_data(form, name)]
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        pairs += [(management.add_prefix(n), management[n].value()) for n in management.fields]
        pairs += [pair for sub in inline.formset.forms for name in sub.fields for pair in _field_data(sub, name)]
    data: dict = {}
    for key, value in pairs:
        data.setdefault(key, []).append(value)
    return {
        k: v if len(v) > 1 or k.endswith("excluded_fields") or k.endswith("signing_secrets") else v[0]
        for k, v in data.items()
    }


@pytest.fixture
def shop(rule_connection) -> Connection:
    rule_connection.centra_api_token = CENTRA_TOKEN
    rule_connection.signing_secrets = SIGNING_SECRET
    rule_connection.save()
    return rule_connection


def post_change(admin_client, conn: Connection, **changes) -> tuple[object, dict]:
    """Load the change page, apply `changes` to its form data, post it; the response and the posted data."""
    page = admin_client.get(change_url(conn))
    data = form_data(page)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return admin_client.post(change_url(conn), data), data


def inline_key(conn: Connection, event: str, field: str, data: dict) -> str:
    flow = conn.flows.get(event=event)
    for key, value in data.items():
        if re.fullmatch(r"flows-\d+-id", key) and str(value) == str(flow.pk):
            return key[: -len("id")] + field
    raise AssertionError(f"no inline row for {event}")


# --------------------------------------------------------------------------------------------- connection page


def test_connection_page_shows_both_inbound_urls_and_never_a_raw_secret(admin_client, shop):
    # given a connection with a Rule key, a Centra token and a signing secret
    # when the merchant opens its page
    html = admin_client.get(change_url(shop)).content.decode()

    # then both inbound URLs are there, ready to copy, and every secret appears only masked
    assert f'value="{shop.events_url()}"' in html
    assert f'value="{shop.webhook_url()}"' in html
    assert html.count("copy-button") >= 2
    for secret in (shop.rule_api_key, CENTRA_TOKEN, SIGNING_SECRET):
        assert secret not in html
        assert secret[-4:] in html  # the masked form: last four characters
    assert mask(shop.rule_api_key) in html


def test_connection_list_masks_the_rule_key(admin_client, shop):
    html = admin_client.get(changelist_url(Connection)).content.decode()

    assert shop.name in html
    assert mask(shop.rule_api_key) in html
    assert shop.rule_api_key not in html


def test_saving_with_empty_secret_boxes_keeps_the_stored_secrets(admin_client, shop):
    key_before = shop.rule_api_key

    response, _ = post_change(admin_client, shop, shop_url="https://new-shop.example")

    assert response.status_code == 302, response.content.decode()[:2000]
    shop.refresh_from_db()
    assert shop.shop_url == "https://new-shop.example"
    assert shop.rule_api_key == key_before
    assert shop.centra_api_token == CENTRA_TOKEN
    assert shop.signing_secret_list == [SIGNING_SECRET]


def test_a_new_key_replaces_and_clear_removes_and_secrets_rotate(admin_client, shop):
    response, _ = post_change(
        admin_client,
        shop,
        new_rule_api_key="rule-key-new-000111222",
        clear_centra_api_token="on",
        new_signing_secrets="whsec-next-7777",
    )
    assert response.status_code == 302
    shop.refresh_from_db()
    assert shop.rule_api_key == "rule-key-new-000111222"
    assert shop.centra_api_token == ""
    assert shop.signing_secret_list == ["whsec-next-7777", SIGNING_SECRET]

    # when the old secret (second in the list) is removed
    response, _ = post_change(admin_client, shop, remove_signing_secrets=["1"])
    assert response.status_code == 302
    shop.refresh_from_db()
    assert shop.signing_secret_list == ["whsec-next-7777"]


def test_an_invalid_form_does_not_echo_the_typed_secret(admin_client, shop):
    response, _ = post_change(admin_client, shop, new_rule_api_key="typed-secret-55555", time_zone="Mars/Olympus")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Unknown time zone" in html
    assert "typed-secret-55555" not in html


def test_secrets_are_encrypted_in_the_database(admin_client, shop):
    post_change(admin_client, shop, new_rule_api_key="rule-key-plain-424242")

    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT rule_api_key, centra_api_token, signing_secrets FROM integration_connection WHERE id = %s",
            [shop.pk],
        )
        stored = cursor.fetchone()
    assert all(value.startswith("fernet:") for value in stored)
    assert "rule-key-plain-424242" not in stored[0]
    assert CENTRA_TOKEN not in stored[1]
    assert SIGNING_SECRET not in stored[2]
    assert Connection.objects.get(pk=shop.pk).rule_api_key == "rule-key-plain-424242"


def test_connection_page_shows_operations_and_back_in_stock_settings(admin_client, shop):
    Connection.objects.filter(pk=shop.pk).update(last_reconcile_error="Centra said: boom")
    BackInStockSettings.objects.create(connection=shop, min_stock=7)
    html = admin_client.get(change_url(shop)).content.decode()

    assert "back in stock" in html.lower()  # the plug-in's inline
    assert 'name="back_in_stock-0-min_stock"' in html and 'value="7"' in html
    assert "Centra said: boom" in html
    assert "paused reason" in html.lower()


def test_the_merchant_switches_the_cart_tag_removal_to_every_shopper(admin_client, shop):
    # given the connection page: the setting sits right after "Remove cart tag", off, and says what it costs
    page = admin_client.get(change_url(shop))
    html = page.content.decode()
    assert html.index('name="remove_cart_tag"') < html.index('name="remove_cart_tag_always"')
    assert "Remove cart tag from every shopper" in html
    assert "shoppers this bridge never tagged" in html and "Costs one Rule call per order." in html
    assert page.context["adminform"].form["remove_cart_tag_always"].value() is False

    # when the merchant ticks it and saves
    data = form_data(page)
    data["remove_cart_tag_always"] = "on"
    response = admin_client.post(change_url(shop), data)

    # then it is stored, and the ordinary removal stays on
    assert response.status_code == 302, response.content.decode()[:3000]
    shop.refresh_from_db()
    assert (shop.remove_cart_tag, shop.remove_cart_tag_always) == (True, True)


# --------------------------------------------------------------------------------------------- flows inline


def test_flows_are_edited_inline(admin_client, shop):
    page = admin_client.get(change_url(shop))
    data = form_data(page)
    data[inline_key(shop, "OrderShipped", "tags", data)] = "OrderShipped, Shipped"
    data[inline_key(shop, "OrderShipped", "automation", data)] = "force"
    data[inline_key(shop, "OrderShipped", "excluded_fields", data)] = ["Order.Trackinglink", "Order.Tele"]
    data.pop(inline_key(shop, "Newsletter", "enabled", data), None)

    response = admin_client.post(change_url(shop), data)

    assert response.status_code == 302, response.content.decode()[:3000]
    shipped = shop.flows.get(event="OrderShipped")
    assert shipped.tags == ["OrderShipped", "Shipped"]
    assert shipped.automation == "force"
    assert set(shipped.excluded_fields) == {"Order.Trackinglink", "Order.Tele"}
    assert shop.flows.get(event="Newsletter").enabled is False


def test_flow_excluded_fields_offer_only_the_events_catalog_fields(admin_client, shop):
    page = admin_client.get(change_url(shop))
    data = form_data(page)
    # Order.Trackingno belongs to OrderShipped, not to Newsletter.
    data[inline_key(shop, "Newsletter", "excluded_fields", data)] = ["Order.Trackingno"]

    response = admin_client.post(change_url(shop), data)

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert shop.flows.get(event="Newsletter").excluded_fields == []


@pytest.mark.parametrize(
    ("tags", "error"), [(" , ", "at least one Rule tag"), ("Shipped, shipped", "Duplicate tags: shipped")]
)
def test_flow_tags_must_be_present_and_unique(admin_client, shop, tags, error):
    page = admin_client.get(change_url(shop))
    data = form_data(page)
    data[inline_key(shop, "OrderShipped", "tags", data)] = tags

    response = admin_client.post(change_url(shop), data)

    assert response.status_code == 200
    assert error in response.content.decode()
    assert shop.flows.get(event="OrderShipped").tags == ["OrderShipped"]


# --------------------------------------------------------------------------------------------- actions


def run_action(admin_client, model, action: str, ids: list[int]):
    return admin_client.post(
        changelist_url(model),
        {"action": action, "_selected_action": [str(i) for i in ids], "index": 0},
        follow=True,
    )


def test_send_test_call_sends_each_enabled_flows_sample_to_the_test_email(admin_client, shop, fake_rule):
    # given two flows turned off
    shop.flows.filter(event__in=["OrderCreated", "Newsletter"]).update(enabled=False)
    expected = {f.event: f.tags for f in enabled_flows(shop)}

    response = run_action(admin_client, Connection, "send_test_call", [shop.pk])

    # then the fake Rule received one POST /subscribers per enabled flow, to the test email, with the flow's tags
    posts = [r for r in fake_rule.requests if r["method"] == "POST" and r["path"].endswith("/subscribers")]
    assert len(posts) == len(expected)
    for post in posts:
        assert post["json"]["subscribers"]["email"] == shop.test_email
    assert sorted(tuple(p["json"]["tags"]) for p in posts) == sorted(tuple(t) for t in expected.values())
    # one summary message: how many of the enabled flows were sent, and where
    [summary] = [m for m in messages_of(response) if "Test call" in m]
    assert summary == f"{shop.name}: Test call: {len(expected)} of {len(expected)} flows sent to {shop.test_email}."
    # each logged as a delivery with trigger test, with its attempt
    tests = Delivery.objects.filter(connection=shop, trigger=Delivery.Trigger.TEST)
    assert sorted(tests.values_list("event", flat=True)) == sorted(expected)
    assert set(tests.values_list("status", flat=True)) == {Delivery.Status.SUCCEEDED}
    assert DeliveryAttempt.objects.filter(delivery__in=tests, status_code=200).count() == len(expected)


def test_send_test_call_reports_rules_error_answer(admin_client, shop, fake_rule):
    shop.flows.exclude(event="OrderCompleted").update(enabled=False)
    fake_rule.fail(422, body={"error": "ValidationError", "message": "fields.Order.Total is invalid"})

    response = run_action(admin_client, Connection, "send_test_call", [shop.pk])

    [line] = [m for m in messages_of(response) if "Test call" in m]
    assert "0 of 1 flows sent" in line
    assert "Rule rejected the request (422: " in line and "fields.Order.Total is invalid" in line
    assert line.endswith(": OrderCompleted.")


def test_send_test_call_without_test_email_is_a_clear_error(admin_client, shop, fake_rule):
    Connection.objects.filter(pk=shop.pk).update(test_email="")

    response = run_action(admin_client, Connection, "send_test_call", [shop.pk])

    assert any("has no test email" in m for m in messages_of(response))
    assert fake_rule.requests == []
    assert not Delivery.objects.exists()


def test_verify_rule_key_ok_and_rejected(admin_client, shop, fake_rule):
    bad = ConnectionFactory(rule_api_url=fake_rule.url, rule_api_key="wrong-key-1234567890")

    response = run_action(admin_client, Connection, "verify_rule_api_key", [shop.pk, bad.pk])

    msgs = messages_of(response)
    assert f"{shop.name}: Rule accepted the API key." in msgs
    [rejected] = [m for m in msgs if m.startswith(f"{bad.name}:")]
    assert "rejected" in rejected and "401" in rejected
    assert "wrong-key-1234567890" not in "".join(msgs)


def test_verify_centra_token(admin_client, centra_connection):
    ok = run_action(admin_client, Connection, "verify_centra_api_token", [centra_connection.pk])
    assert any(m.startswith(f"{centra_connection.name}: Centra API token works") for m in messages_of(ok))

    conn = Connection.objects.get(pk=centra_connection.pk)
    conn.centra_api_token = "not-the-token-000"
    conn.save()
    bad = run_action(admin_client, Connection, "verify_centra_api_token", [conn.pk])
    [message] = [m for m in messages_of(bad) if m.startswith(conn.name)]
    assert "Centra API token works" not in message
    assert "not-the-token-000" not in message


def test_pause_and_resume(admin_client, shop):
    run_action(admin_client, Connection, "pause", [shop.pk])
    shop.refresh_from_db()
    assert shop.status == Connection.Status.PAUSED
    assert shop.paused_reason == "paused by admin"
    assert "paused by admin" in admin_client.get(change_url(shop)).content.decode()

    run_action(admin_client, Connection, "resume", [shop.pk])
    shop.refresh_from_db()
    assert shop.status == Connection.Status.ACTIVE
    assert shop.paused_reason == ""


def sent_delivery(conn: Connection, event: str = "OrderCompleted") -> Delivery:
    """A delivery of the event's sample, sent once to the fake Rule."""
    delivery = emit.emit_event(conn, event, sample(event), key=f"{event}:test-{event}")
    delivery_module.send_now(delivery)
    delivery.refresh_from_db()
    return delivery


def test_resend_makes_a_new_attempt_and_keeps_the_old(
    admin_client, shop, fake_rule, task_queue, django_capture_on_commit_callbacks
):
    delivery = sent_delivery(shop)
    [first] = delivery.attempts.all()
    fake_rule.clear()

    # The action asks first, saying what Rule will do; nothing is reopened yet.
    question = run_action(admin_client, Delivery, "resend", [delivery.pk]).content.decode()
    assert "What Rule will do" in question and "automation reset" in question and "email (or SMS) again" in question
    assert task_queue.pending() == []

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            changelist_url(Delivery),
            {"action": "resend", "_selected_action": [str(delivery.pk)], "confirm": "yes"},
            follow=True,
        )
    assert task_queue.pending() == [("integration.tasks.deliver_group", (delivery.connection_id, delivery.batch_key))]
    task_queue.run_all()

    assert "1 deliveries resent: a new attempt each is on its way." in messages_of(response)
    delivery.refresh_from_db()
    assert delivery.trigger == Delivery.Trigger.EVENT  # the original trigger is kept...
    assert delivery.resend_count == 1  # ...and the resend counted, and written in the history
    assert LogEntry.objects.get(object_id=str(delivery.pk)).get_change_message().startswith("Resent")
    assert delivery.status == Delivery.Status.SUCCEEDED
    attempts = list(delivery.attempts.order_by("number"))
    assert [a.number for a in attempts] == [1, 2]
    assert attempts[0].pk == first.pk and attempts[0].status_code == 200
    assert len([r for r in fake_rule.requests if r["method"] == "POST"]) == 1


def test_every_admin_action_is_registered(rf):
    """The dj-stripe lesson: an action method that is defined but not registered is dead code."""
    request = rf.get("/admin/")
    request.user = User(is_superuser=True, is_staff=True, username="root")
    checked = 0
    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label != "integration":
            continue
        registered = set(model_admin.get_actions(request))
        # An action is a method taking (request, queryset); display methods take one object.
        defined = {
            name
            for klass in type(model_admin).__mro__
            if klass.__module__.startswith("integration")
            for name, value in vars(klass).items()
            if inspect.isfunction(value)
            and list(inspect.signature(value).parameters) == ["self", "request", "queryset"]
        }
        assert defined <= registered, f"{model.__name__}: {defined - registered} not registered"
        checked += len(defined)
    assert checked >= 6


# --------------------------------------------------------------------------------------------- logs


def test_logs_are_read_only_and_only_superusers_delete(admin_client, client, shop):
    delivery = DeliveryFactory(connection=shop)
    inbound = InboundEventFactory(connection=shop)
    assert admin_client.get(reverse("admin:integration_delivery_add")).status_code == 403
    assert admin_client.get(reverse("admin:integration_inboundevent_add")).status_code == 403
    before = delivery.email
    admin_client.post(change_url(delivery), {"email": "x@example.com"})
    delivery.refresh_from_db()
    assert delivery.email == before

    # a staff user with every integration permission still cannot delete a log row
    staff = User.objects.create_user("ops", password="pw-12345678", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="integration"))
    client.force_login(staff)
    assert client.get(change_url(delivery)).status_code == 200
    assert (
        client.post(reverse("admin:integration_delivery_delete", args=[delivery.pk]), {"post": "yes"}).status_code
        == 403
    )
    assert Delivery.objects.filter(pk=delivery.pk).exists()

    response = admin_client.post(reverse("admin:integration_inboundevent_delete", args=[inbound.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not InboundEvent.objects.filter(pk=inbound.pk).exists()


def result_ids(response) -> set[int]:
    return {obj.pk for obj in response.context["cl"].result_list}


def test_delivery_filters_and_search_return_the_right_rows(admin_client, shop):
    other = ConnectionFactory()
    a = DeliveryFactory(connection=shop, email="anna@example.com", order_number="10452", status="failed")
    b = DeliveryFactory(
        connection=shop, email="bo@example.com", order_number="10453", event="OrderShipped", trigger="test"
    )
    c = DeliveryFactory(connection=other, email="anna@example.com", order_number="20001", status="succeeded")
    url = changelist_url(Delivery)

    assert result_ids(admin_client.get(url)) == {a.pk, b.pk, c.pk}
    assert result_ids(admin_client.get(url, {"connection__id__exact": shop.pk})) == {a.pk, b.pk}
    assert result_ids(admin_client.get(url, {"status__exact": "failed"})) == {a.pk}
    assert result_ids(admin_client.get(url, {"trigger__exact": "test"})) == {b.pk}
    assert result_ids(admin_client.get(url, {"event": "OrderShipped"})) == {b.pk}
    assert result_ids(admin_client.get(url, {"q": "anna@example.com"})) == {a.pk, c.pk}
    assert result_ids(admin_client.get(url, {"q": "1045"})) == {a.pk, b.pk}
    assert result_ids(admin_client.get(url, {"q": "10453"})) == {b.pk}
    assert result_ids(admin_client.get(url, {"q": "0452"})) == set()  # a prefix, not a substring


def test_inbound_filters_and_search_return_the_right_rows(admin_client, shop):
    a = InboundEventFactory(connection=shop, email="anna@example.com", object_ref="10452", status="processed")
    b = InboundEventFactory(connection=shop, source="webhook", event_type="order", object_ref="10453")
    url = changelist_url(InboundEvent)

    assert result_ids(admin_client.get(url, {"status__exact": "processed"})) == {a.pk}
    assert result_ids(admin_client.get(url, {"source__exact": "webhook"})) == {b.pk}
    assert result_ids(admin_client.get(url, {"event_type": "order"})) == {b.pk}
    assert result_ids(admin_client.get(url, {"q": "Anna@Example.com"})) == {a.pk}
    assert result_ids(admin_client.get(url, {"q": "1045"})) == {a.pk, b.pk}


@pytest.mark.parametrize("model", [Delivery, InboundEvent])
def test_log_lists_never_count_the_whole_table(admin_client, shop, model):
    for _ in range(3):
        (DeliveryFactory if model is Delivery else InboundEventFactory)(connection=shop)

    with CaptureQueriesContext(db_connection) as queries:
        response = admin_client.get(changelist_url(model))

    assert response.status_code == 200
    table = model._meta.db_table
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper() and table in q["sql"]]
    assert counts, "the list should still count (a bounded number of) rows"
    assert all("LIMIT" in sql.upper() for sql in counts), counts
    # and the connection is joined, not fetched per row
    per_row = [
        q
        for q in queries.captured_queries
        if 'FROM "integration_connection"' in q["sql"] and "WHERE" in q["sql"] and '"id" =' in q["sql"]
    ]
    assert len(per_row) <= 1


def test_capped_paginator_stops_counting_at_the_cap(shop):
    from integration.admin.paginator import CappedCountPaginator

    for _ in range(6):
        DeliveryFactory(connection=shop)

    class SmallCap(CappedCountPaginator):
        CAP = 4

    with CaptureQueriesContext(db_connection) as queries:
        count = SmallCap(Delivery.objects.order_by("-created_at"), 2).count
    if db_connection.vendor == "postgresql":
        # unfiltered: the planner's estimate (at least the capped count)
        assert count >= 5
    else:
        assert count == 5
    assert all("LIMIT" in q["sql"].upper() for q in queries.captured_queries if "COUNT(" in q["sql"].upper())
    assert SmallCap(Delivery.objects.filter(status="failed"), 2).count == 0


def test_delivery_page_shows_request_and_attempts_readably(admin_client, shop, fake_rule):
    fake_rule.fail(500, body={"error": "UnexpectedError", "message": "temporarily down"})
    delivery = sent_delivery(shop)

    html = admin_client.get(change_url(delivery)).content.decode()

    assert "<pre" in html
    assert "&quot;update_on_duplicate&quot;: true" in html  # indented JSON, escaped in HTML
    assert "temporarily down" in html
    assert "500" in html
    assert shop.rule_api_key not in html


def test_inbound_event_page_shows_payload_and_links_to_preview(admin_client, shop):
    inbound = InboundEventFactory(connection=shop, event_type="OrderCompleted", payload=sample("OrderCompleted"))

    html = admin_client.get(change_url(inbound)).content.decode()

    assert "&quot;order&quot;: {" in html
    assert f"inbound_event={inbound.pk}" in html
    assert reverse("admin:integration_preview") in html


# --------------------------------------------------------------------------------------------- preview


def preview(admin_client, **params):
    return admin_client.get(reverse("admin:integration_preview"), params)


def test_preview_of_the_sample_shows_the_exact_body_and_sends_nothing(admin_client, shop, fake_rule):
    shop.flows.filter(event="OrderShipped").update(tags=["OrderShipped", "Shipped"])
    expected = emit.render(shop, "OrderShipped", sample("OrderShipped")).body

    response = preview(admin_client, connection=shop.pk, event="OrderShipped")

    assert response.status_code == 200
    html = response.content.decode()
    body = re.search(r'<pre id="preview-body"[^>]*>(.*?)</pre>', html, re.S).group(1)
    assert (
        json.loads(
            body.replace("&quot;", '"')
            .replace("&#x27;", "'")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
        )
        == expected
    )
    assert expected["tags"] == ["OrderShipped", "Shipped"]
    assert fake_rule.requests == []
    assert not Delivery.objects.exists()


def test_preview_writes_nothing_even_for_a_flow_not_stored_yet(admin_client, shop):
    # Given a connection whose OrderShipped flow was never stored (it has the declared defaults)
    shop.flows.filter(event="OrderShipped").delete()

    # When the merchant previews it (a GET)
    with CaptureQueriesContext(db_connection) as queries:
        response = preview(admin_client, connection=shop.pk, event="OrderShipped")

    # Then the page shows the default tag, and no statement wrote anything (the session is read, never saved)
    assert response.status_code == 200 and "OrderShipped" in response.content.decode()
    writes = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]
    assert writes == []
    assert not shop.flows.filter(event="OrderShipped").exists()


def test_preview_of_a_stored_json_event(admin_client, shop, fake_rule):
    payload = json.loads(json.dumps(sample("OrderCompleted")))
    payload["order"]["number"] = 77001
    inbound = InboundEventFactory(connection=shop, event_type="OrderCompleted", payload=payload)

    html = preview(admin_client, connection=shop.pk, event="OrderCompleted", inbound_event=inbound.pk).content.decode()

    assert f"inbound event {inbound.pk}" in html
    assert "77001" in html
    assert fake_rule.requests == []
    assert not Delivery.objects.exists()


def test_preview_of_a_native_webhook_says_it_needs_a_json_event(admin_client, shop):
    inbound = InboundEventFactory(
        connection=shop, source="webhook", event_type="order", object_ref="10452", payload={"order": "10452"}
    )

    html = preview(admin_client, connection=shop.pk, event="OrderCompleted", inbound_event=inbound.pk).content.decode()

    assert "Preview needs a JSON event or the built-in sample" in html
    assert 'id="preview-body"' not in html


def test_preview_needs_permission_to_read_connections_and_events(client, shop):
    staff = User.objects.create_user("viewer", password="pw-12345678", is_staff=True)
    client.force_login(staff)

    assert preview(client, connection=shop.pk, event="OrderShipped").status_code == 403

    staff.user_permissions.set(Permission.objects.filter(codename__in=["view_connection", "view_inboundevent"]))
    assert preview(client, connection=shop.pk, event="OrderShipped").status_code == 200


def test_the_connection_page_opens_the_preview_picker(admin_client, shop):
    html = admin_client.get(change_url(shop)).content.decode()
    link = f"{reverse('admin:integration_preview')}?connection={shop.pk}"
    assert f'href="{link}"' in html

    picker = admin_client.get(link).content.decode()
    assert "This field is required" not in picker
    assert f'<option value="{shop.pk}" selected>' in picker
    assert 'id="preview-body"' not in picker


def test_flow_rows_link_to_their_preview(admin_client, shop):
    html = admin_client.get(change_url(shop)).content.decode()

    assert f"{reverse('admin:integration_preview')}?connection={shop.pk}&amp;event=OrderShipped" in html


def test_a_connection_is_added_with_its_secrets_and_flows(admin_client):
    url = reverse("admin:integration_connection_add")
    page = admin_client.get(url)
    assert "Shown once the connection is saved." in page.content.decode()
    data = form_data(page)
    data.update(
        name="new-shop",
        new_rule_api_key="rule-key-added-31415",
        new_signing_secrets="whsec-a, whsec-b",
        test_email="me@example.com",
    )

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    conn = Connection.objects.get(name="new-shop")
    assert conn.rule_api_key == "rule-key-added-31415"
    assert conn.signing_secret_list == ["whsec-a", "whsec-b"]
    assert conn.flows.count() == len(catalog.EVENTS)
