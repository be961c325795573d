"""The console's home page in Chromium: health at a glance changes as a merchant's shop sends events and Rule
answers; a refused inbound call shows on the connection page and is counted on the home page."""

from __future__ import annotations

import json

import pytest
import requests
from django.core import mail
from playwright.sync_api import expect

from integration.inbound.signature import HEADER, sign

pytestmark = pytest.mark.browser

ORDER = {"order": {"number": "10452", "status": "CONFIRMED", "customer": {"email": "anna@example.com"}}}


def shop_row(page):
    return page.locator('#connection-health .connection-row[data-connection="shop"]')


def day_chart(page):
    return shop_row(page).locator('svg.delivery-chart[data-hours="24"]')


def order(number: int) -> dict:
    return {"order": {**ORDER["order"], "number": str(number)}}


def test_signed_events_show_on_the_home_page_and_its_chart(
    admin_page, live_url, shop, post_event, run_tasks, screenshot
):
    admin_page.goto(f"{live_url}/admin/")
    expect(shop_row(admin_page).locator(".last-event")).to_have_text("never")
    expect(day_chart(admin_page)).to_have_attribute("data-succeeded", "0")

    for number in (10452, 10453, 10454):
        assert post_event(shop, "OrderShipped", {"shipment": {"id": f"s{number}", **order(number)}}).status_code == 200
    run_tasks()

    admin_page.reload()
    row = shop_row(admin_page)
    expect(row.locator(".health-badge")).to_have_text("Healthy")
    expect(row.locator(".last-event")).not_to_have_text("never")
    expect(row.locator(".last-success")).not_to_have_text("never")
    expect(day_chart(admin_page)).to_have_attribute("data-succeeded", "3")
    expect(row.locator('svg.delivery-chart[data-hours="168"]')).to_have_attribute("data-succeeded", "3")
    # The newest hour's bar says what it holds when hovered.
    expect(day_chart(admin_page).locator("g title").last).to_contain_text("3 succeeded, 0 retrying, 0 failed")
    screenshot(admin_page, "home", full_page=True)


def test_rule_refusing_the_key_turns_the_badge_red_and_emails_the_alert_addresses(
    admin_page, live_url, shop, post_event, run_tasks, fake_rule, screenshot
):
    shop.alert_emails = "ops@shop.example"
    shop.save()
    fake_rule.fail(401, times=5)
    assert post_event(shop, "OrderShipped", {"shipment": {"id": "s1", **ORDER}}).status_code == 200
    run_tasks()  # processing, the delivery (Rule says 401: paused), then the alert check

    admin_page.goto(f"{live_url}/admin/")
    row = shop_row(admin_page)
    expect(row).to_have_attribute("data-state", "paused")
    expect(row.locator(".health-badge")).to_have_text("Paused")
    expect(row).to_contain_text("Rule refused the API key")
    expect(row.locator(".health-action")).to_have_text("Verify the Rule API key, then Resume")
    expect(day_chart(admin_page)).to_have_attribute("data-retrying", "1")
    screenshot(admin_page, "home-paused", full_page=True)

    [message] = mail.outbox
    assert message.to == ["ops@shop.example"] and message.subject == "[Centra to Rule] shop: Paused"
    assert "Rule refused the API key" in message.body


def test_a_refused_call_shows_on_the_connection_page_and_is_counted_at_home(admin_page, live_url, shop, screenshot):
    body = json.dumps({"id": "e1", "type": "OrderCompleted", "occurredAt": "2026-01-01T12:00:00Z", **ORDER}).encode()
    answer = requests.post(
        shop.events_url(live_url),
        data=body,
        headers={"Content-Type": "application/json", HEADER: sign("an-old-secret", body)},
        timeout=15,
    )
    assert answer.status_code == 401

    admin_page.goto(f"{live_url}/admin/")
    expect(shop_row(admin_page).locator(".rejected-24h")).to_have_text("1")
    shop_row(admin_page).locator(".rejected-24h").click()

    call = admin_page.locator("#rejected-calls tr.rejected-call").first
    expect(call).to_be_visible()
    expect(call).to_contain_text("401")
    expect(call).to_contain_text("signature rejected")
    expect(call).to_contain_text("127.0.0.1")
    expect(call).to_contain_text('"id": "e1"')
    screenshot(admin_page, "rejected-call")
