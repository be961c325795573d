"""The browser infrastructure itself: Chromium logs in to the live admin; a signed event reaches the fake Rule."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser


def test_a_merchant_logs_in_and_sees_the_connections(page, live_url, admin_user_credentials, shop, screenshot):
    page.goto(f"{live_url}/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))

    log_in(page, live_url, *admin_user_credentials)

    page.get_by_role("link", name="Connections").first.click()
    expect(page.get_by_role("link", name="shop", exact=True)).to_be_visible()
    assert screenshot(page, "connections").stat().st_size > 0


def test_a_signed_event_posted_over_http_is_delivered_to_the_fake_rule(
    admin_page, live_url, shop, post_event, run_tasks, fake_rule
):
    response = post_event(
        shop,
        "OrderCompleted",
        {"order": {"number": "10452", "status": "CONFIRMED", "customer": {"email": "anna@example.com"}}},
    )
    assert response.status_code == 200, response.text
    assert run_tasks() >= 1  # processing, which sends the lone delivery at once, in the same task

    sent = [r for r in fake_rule.requests if r["method"] == "POST"]
    assert [(r["path"], r["json"]["subscribers"]["email"]) for r in sent] == [
        ("/api/v2/subscribers", "anna@example.com")
    ]
    admin_page.goto(f"{live_url}/admin/integration/delivery/?event=OrderCompleted")
    row = admin_page.locator("#result_list tbody tr").first
    expect(row).to_contain_text("OrderCompleted")
    expect(row).to_contain_text("anna@example.com")
    expect(row).to_contain_text("succeeded")


def test_a_wrong_password_is_refused(page, live_url, admin_user_credentials):
    page.goto(f"{live_url}/admin/login/")
    page.get_by_label("Username").fill(admin_user_credentials[0])
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".errornote")).to_contain_text("enter the correct username and password")
