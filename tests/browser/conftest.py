"""Browser tests: Playwright drives Debian's Chromium against a live server, with the fake Rule running.

Fixtures: `browser` (one Chromium for the package), `live_url` (the live server's base URL), `admin_page` (a page at
1400x900, logged in as a superuser through the login form), `shop` (a connection pointing at the fake Rule, with a
signing secret and a test email), `post_event` / `run_tasks` (a storefront's signed event, then the worker's queue),
and `screenshot(page, name)` (a PNG under var/screenshots/). A failing test leaves a screenshot there too.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from integration.inbound.signature import HEADER, sign

VIEWPORT = {"width": 1400, "height": 900}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
ADMIN_PASSWORD = "a-long-test-password-17"
SHOP_SECRET = "whsec-browser-test-3b8f1d"


def chromium_path() -> str:
    """CHROMIUM_PATH, else Debian's `chromium` on PATH (`make test` installs it with apt-get when missing)."""
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(f"Chromium not found at {path}: `apt-get install chromium` (make test does) or set CHROMIUM_PATH")
    return path


@pytest.fixture(scope="package")
def browser() -> Iterator:
    """One headless Chromium for all browser tests (it takes seconds to start on a loaded machine)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; Django would refuse ORM calls from the test body
    # ("async context"). The test thread never runs coroutines of its own, so the check is switched off here
    # only, for as long as Playwright runs, and restored afterwards for the rest of the suite.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def live_url(live_server) -> str:
    return live_server.url


@pytest.fixture
def admin_user_credentials(transactional_db, django_user_model) -> tuple[str, str]:
    django_user_model.objects.create_superuser("merchant", "merchant@example.com", ADMIN_PASSWORD)
    return "merchant", ADMIN_PASSWORD


@pytest.fixture
def page(browser, request) -> Iterator:
    """A fresh browser context at 1400x900 (clipboard allowed); a screenshot is kept when the test fails."""
    context = browser.new_context(viewport=VIEWPORT, permissions=["clipboard-read", "clipboard-write"])
    context.set_default_timeout(15_000)
    new_page = context.new_page()
    try:
        yield new_page
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            take_screenshot(new_page, f"FAILED-{request.node.name}")
        context.close()


@pytest.fixture
def admin_page(page, live_url, admin_user_credentials):
    """`page`, logged in to the admin through its login form, on the admin home."""
    log_in(page, live_url, *admin_user_credentials)
    return page


def log_in(page, live_url: str, username: str, password: str) -> None:
    page.goto(f"{live_url}/admin/login/?next=/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{live_url}/admin/")


@pytest.fixture
def shop(transactional_db, fake_rule):
    """A connection named `shop` pointing at the running fake Rule with its key, a signing secret, a test email."""
    from tests.factories import ConnectionFactory

    return ConnectionFactory(
        name="shop",
        rule_api_url=fake_rule.url,
        rule_api_key=fake_rule.api_key,
        signing_secrets=SHOP_SECRET,
        test_email="crm@shop.example",
    )


@pytest.fixture
def post_event(live_url) -> Callable[..., requests.Response]:
    """post_event(connection, type, fields, secret=None): a storefront's signed JSON event over real HTTP."""

    def post(connection, event_type: str, fields: dict, secret: str | None = None) -> requests.Response:
        event = {
            "id": f"browser-{uuid.uuid4().hex[:12]}",
            "type": event_type,
            "occurredAt": datetime.now(UTC).isoformat(),
            **fields,
        }
        body = json.dumps(event).encode()
        key = secret if secret is not None else connection.signing_secret_list[0]
        return requests.post(
            connection.events_url(live_url),
            data=body,
            headers={"Content-Type": "application/json", HEADER: sign(key, body)},
            timeout=15,
        )

    return post


@pytest.fixture
def run_tasks(task_queue) -> Callable[[], int]:
    """Run what the worker would, until the queue is empty (processing enqueues deliveries); returns the count."""

    return task_queue.drain


def take_screenshot(page, name: str, full_page: bool = False) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture
def screenshot(request) -> Callable[..., Path]:
    """screenshot(page, name, full_page=False): var/screenshots/<test>-<name>.png, for looking at a page."""

    def shoot(page, name: str, full_page: bool = False) -> Path:
        return take_screenshot(page, f"{request.node.name}-{name}", full_page=full_page)

    return shoot


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so `page` knows at teardown whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
