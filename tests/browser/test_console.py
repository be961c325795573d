"""The merchant console in a real browser: set up a connection, watch it, fix it, as a shop's CRM manager would."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from integration.models import Connection, Delivery

pytestmark = pytest.mark.browser

ORDER = {"order": {"number": "10452", "status": "CONFIRMED", "customer": {"email": "anna@example.com"}}}
RED = "rgb(198, 40, 40)"


def flow_row(page, event: str):
    """The flows table's row of one event."""
    name = page.locator(".flow-event strong", has_text=re.compile(f"^{event}$"))
    return page.locator("tr.form-row").filter(has=name)


def connection_page(page, live_url: str, conn: Connection) -> None:
    page.goto(f"{live_url}/admin/integration/connection/{conn.pk}/change/")


def test_set_up_a_connection_from_scratch(admin_page, live_url, fake_rule, screenshot):
    page = admin_page
    # Create the connection: name, test email, Rule's URL and key.
    page.goto(f"{live_url}/admin/integration/connection/add/")
    page.get_by_label("Name").fill("new-shop")
    page.get_by_label("Test email").fill("crm@shop.example")
    page.get_by_label("Rule API URL").fill(fake_rule.url)
    page.get_by_label("New Rule API key").fill(fake_rule.api_key)
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")
    conn = Connection.objects.get(name="new-shop")

    # Without a secret the page says so loudly, at the top and by the secret.
    banner = page.locator("#health-banner")
    expect(banner).to_contain_text("No signing secret")
    expect(page.locator("#no-secret-warning")).to_be_visible()
    checklist = page.locator("#setup-checklist")
    expect(checklist).to_contain_text("4 of 4 left")

    # Generate the secret: shown in full once, and Copy puts it on the clipboard.
    banner.get_by_role("button", name="Generate a signing secret").click()
    expect(page.locator(".loud")).to_contain_text("shown only once")
    conn.refresh_from_db()
    [secret] = conn.signing_secret_list
    assert secret.startswith("whsec_") and len(secret) > 40
    expect(page.locator("#secret-0")).to_have_value(secret)
    page.get_by_role("button", name="Copy").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    screenshot(page, "secret-shown-once")

    # Back on the page the secret is masked again, and the checklist ticked it off.
    page.get_by_role("link", name="Back to new-shop").click()
    assert secret not in page.content()
    expect(checklist.locator("[data-step=signing_secret]")).to_have_class("done")

    # Verify the key against the fake Rule.
    page.locator(".console-buttons").get_by_role("button", name="Verify Rule key").click()
    expect(page.locator(".messagelist")).to_contain_text("Rule accepted the API key.")
    expect(checklist.locator("[data-step=rule_key]")).to_have_class("done")

    # Send a test call: one summary, the flows' results in the table, the checklist ticked.
    enabled = conn.flows.filter(enabled=True).exclude(event="OrderPlaced").count()
    page.locator(".console-buttons").get_by_role("button", name="Send test call").click()
    expect(page.locator(".messagelist li")).to_have_count(1)
    expect(page.locator(".messagelist")).to_contain_text(
        f"Test call: {enabled} of {enabled} flows sent to crm@shop.example."
    )
    expect(checklist.locator("[data-step=test_call]")).to_have_class("done")
    order_completed = flow_row(page, "OrderCompleted")
    expect(order_completed.locator(".last-test")).to_contain_text("succeeded")
    assert len([r for r in fake_rule.requests if r["method"] == "POST"]) == enabled
    screenshot(page, "after-test-call", full_page=True)


def test_flows_table_is_compact_and_says_what_cannot_fire(admin_page, live_url, shop, fake_rule):
    page = admin_page
    connection_page(page, live_url, shop)
    placed = flow_row(page, "OrderPlaced")
    # Auto-confirm store: OrderPlaced is shown off, cannot be ticked, and says why.
    expect(placed).to_contain_text("confirms orders automatically")
    expect(placed.get_by_role("checkbox").first).to_be_disabled()
    expect(placed.get_by_role("checkbox").first).not_to_be_checked()
    # Rows are one line high: the left-out fields stay folded until opened.
    row = flow_row(page, "OrderShipped")
    assert row.bounding_box()["height"] < 90
    left_out = row.locator("details.left-out")
    expect(left_out.locator("summary")).to_contain_text("none of")
    expect(left_out.get_by_role("checkbox").first).to_be_hidden()
    left_out.locator("summary").click()
    expect(left_out.get_by_role("checkbox").first).to_be_visible()

    # Send test per flow.
    row.get_by_role("button", name="Send test").click()
    expect(page.locator(".messagelist")).to_contain_text("OrderShipped: test call sent to crm@shop.example.")
    [post] = [r for r in fake_rule.requests if r["method"] == "POST"]
    assert post["json"]["tags"] == ["OrderShipped"]


def test_rule_refuses_the_key_then_the_merchant_fixes_it_from_the_banner(
    admin_page, live_url, shop, fake_rule, post_event, run_tasks, screenshot
):
    page = admin_page
    real_key = fake_rule.api_key
    fake_rule.api_key = "rule-rotated-the-key"  # Rule no longer accepts the stored key
    assert post_event(shop, "OrderCompleted", ORDER).status_code == 200
    run_tasks()
    shop.refresh_from_db()
    assert shop.is_paused

    connection_page(page, live_url, shop)
    banner = page.locator("#health-banner")
    expect(banner).to_contain_text("Paused")
    expect(banner).to_contain_text("Rule refused the API key")
    assert banner.bounding_box()["y"] < 300  # the first thing on the page
    screenshot(page, "paused")

    # A test call on a paused connection says it was not sent.
    page.locator(".console-buttons").get_by_role("button", name="Send test call").click()
    expect(page.locator(".messagelist")).to_contain_text("Test call not sent: the connection is paused")

    # The merchant fixes the key in Rule (here: the fake accepts it again), verifies, and resumes from the banner.
    fake_rule.api_key = real_key
    banner.get_by_role("button", name="Verify the Rule API key, then Resume").click()
    expect(page.locator(".messagelist")).to_contain_text("Rule accepted the API key.")
    expect(page.locator(".messagelist")).to_contain_text("press Resume")
    banner.get_by_role("button", name="Resume", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("Resumed: 1 waiting deliveries are being sent.")
    expect(banner).to_contain_text("Healthy")
    run_tasks()
    assert Delivery.objects.get(event="OrderCompleted").status == Delivery.Status.SUCCEEDED


def test_a_failed_delivery_is_red_and_is_resent_after_a_confirmation(
    admin_page, live_url, shop, fake_rule, post_event, run_tasks, screenshot
):
    page = admin_page
    fake_rule.fail(400, body={"error": "BadRequest", "message": "Field Order.Total is invalid"})
    assert post_event(shop, "OrderCompleted", ORDER).status_code == 200
    run_tasks()
    failed = Delivery.objects.get(event="OrderCompleted")
    assert failed.status == Delivery.Status.FAILED

    page.goto(f"{live_url}/admin/integration/delivery/")
    row = page.locator("#result_list tbody tr", has_text="OrderCompleted")
    badge = row.locator(".badge")
    expect(badge).to_have_text("failed")
    assert badge.evaluate("e => getComputedStyle(e).backgroundColor") == RED
    expect(row).to_contain_text("400")
    expect(row.locator(".reason-cell")).to_contain_text("Field Order.Total is invalid")
    # The key columns fit at 1400 px: nothing to scroll sideways for.
    for column in ("status_badge", "http", "event_label", "email", "order", "reason", "attempts_column"):
        box = page.locator(f"#result_list thead th.column-{column}").bounding_box()
        assert box["x"] + box["width"] <= 1400, column
    screenshot(page, "delivery-list")

    # On the delivery: the outcome and its attempts first.
    row.get_by_role("link").first.click()
    outcome = page.locator("#delivery-outcome")
    expect(outcome).to_contain_text("Failed")
    expect(outcome).to_contain_text("Field Order.Total is invalid")
    assert outcome.bounding_box()["y"] < 400
    expect(page.locator("table.attempts")).to_contain_text("400")
    screenshot(page, "failed-delivery")

    # Resend asks first and says what Rule will do.
    page.get_by_role("link", name="Resend...").click()
    expect(page.locator("#rule-will")).to_contain_text("automation reset")
    expect(page.locator("#rule-will")).to_contain_text("gets the email (or SMS) again")
    page.get_by_role("button", name="Yes, resend").click()
    expect(page.locator(".messagelist")).to_contain_text(f"Delivery {failed.pk} resent")
    run_tasks()
    page.reload()
    expect(page.locator("#delivery-outcome")).to_contain_text("Delivered")
    expect(page.locator("#delivery-outcome")).to_contain_text("Resent by hand 1 times")
    failed.refresh_from_db()
    assert failed.trigger == Delivery.Trigger.EVENT  # the original trigger is kept
    page.get_by_role("link", name="History").click()
    expect(page.locator("#change-history")).to_contain_text("Resent")


def test_resend_every_failed_delivery_since_a_time(admin_page, live_url, shop, fake_rule, post_event, run_tasks):
    page = admin_page
    fake_rule.fail(400, times=10)  # each order refused, whether the two go in one call (then split) or alone
    for number in ("1", "2"):
        order = {"order": {"number": number, "status": "CONFIRMED", "customer": {"email": f"c{number}@example.com"}}}
        assert post_event(shop, "OrderCompleted", order).status_code == 200
    run_tasks()
    assert Delivery.objects.filter(status=Delivery.Status.FAILED).count() == 2
    fake_rule.clear_failures()  # the merchant fixed what Rule refused

    page.goto(f"{live_url}/admin/integration/delivery/")
    page.get_by_role("link", name="Resend failed since...").click()
    page.get_by_role("button", name="Count them").click()
    expect(page.locator("#resend-count")).to_contain_text("2 failed deliveries")
    expect(page.locator("#resend-count")).to_contain_text("customers get those emails again")
    page.get_by_role("button", name="Yes, resend 2").click()
    expect(page.locator(".messagelist")).to_contain_text("2 failed deliveries resent.")
    run_tasks()
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SUCCEEDED}


def test_while_rule_fails_the_page_says_deliveries_are_held_and_when_it_checks(
    admin_page, live_url, shop, fake_rule, run_tasks, screenshot
):
    from integration.delivery import engine
    from integration.rule.budget import RuleBudget

    page = admin_page
    fake_rule.outage(600)  # Rule answers 503 to everything
    for n in range(7):
        engine.create_delivery(
            connection=shop,
            event="OrderShipped",
            body={
                "update_on_duplicate": True,
                "tags": ["OrderShipped", f"Wave{n}"],  # a tag of its own: each goes alone, none shares a call
                "subscribers": {"email": f"s{n}@shop.example"},
            },
            email=f"s{n}@shop.example",
            idempotency_key=f"OrderShipped:{n}",
        )
    run_tasks()
    assert len(fake_rule.requests) == 3  # then the breaker held the connection: no call per delivery

    connection_page(page, live_url, shop)
    banner = page.locator("#health-banner")
    expect(banner).to_contain_text("Rule is failing")
    expect(banner).to_contain_text("deliveries are held, nothing is lost")
    next_check = timezone.localtime(RuleBudget.objects.get(connection=shop).next_probe_at)
    expect(banner).to_contain_text(f"Next check at {next_check:%H:%M:%S}")
    expect(banner.locator(".badge")).to_have_css("background-color", RED)
    expect(page.locator("#rule-budget")).to_contain_text("1,200 calls a minute, 3 used in the last minute")
    screenshot(page, "rule-failing")

    # Rule is back; the merchant does not wait for the next check
    fake_rule.outage(0)
    banner.get_by_role("button", name="Check Rule now").click()
    expect(page.locator(".messagelist")).to_contain_text("Checking Rule now")
    run_tasks()
    page.reload()
    expect(page.locator("#health-banner")).not_to_contain_text("Rule is failing")
    assert Delivery.objects.filter(connection=shop, attempt_count=0).count() == 0
    held = Delivery.objects.filter(connection=shop, email__in=["s5@shop.example", "s6@shop.example"])
    assert {d.status for d in held} == {Delivery.Status.SUCCEEDED}
    screenshot(page, "rule-back")
