"""Take the screenshots in docs/console/ from a live server with the fake Rule, as a merchant would see the pages.

.venv/bin/python scripts/screenshots.py            # writes docs/console/*.png (1400x900, 256 colours)

Everything is local and throw-away: a fresh SQLite database in a temporary folder, the service on a free port,
the fake Rule on another, Debian's Chromium (CHROMIUM_PATH to use another). Nothing is sent anywhere else.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import tempfile
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "console"
VIEWPORT = {"width": 1400, "height": 900}
USER, PASSWORD = "merchant", "screenshots-password-1"
ORDERS = [
    ("10452", "anna@example.com"),
    ("10453", "bo@example.com"),
    ("10454", "cecilia@example.com"),
    ("10455", "david@example.com"),
]


def setup_django(database: Path) -> None:
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["SANDBOX"] = "1"
    os.environ["DEBUG"] = "0"
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ.setdefault("TIME_ZONE", "Europe/Stockholm")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # Playwright's sync API keeps an event loop in this thread, and this script also runs the worker's tasks here:
    # Django's check against ORM calls from async code does not apply (nothing here is a coroutine).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def serve() -> str:
    """The service (admin, inbound endpoints, static files) on a free port in a daemon thread; its base URL."""
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            """The screenshots are the output."""

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=True)
    server.set_app(StaticFilesHandler(get_wsgi_application()))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}"


def run_tasks() -> None:
    """What the worker would do: run the queued tasks until none is left."""
    from django.utils.module_loading import import_string
    from django_q.models import OrmQ

    for _ in range(20):
        rows = list(OrmQ.objects.order_by("id"))
        if not rows:
            return
        for row in rows:
            task = row.task
            row.delete()
            import_string(task["func"])(*task["args"], **task.get("kwargs", {}))


def post_order(base_url: str, connection, number: str, email: str) -> None:
    """A storefront's signed OrderCompleted event, over HTTP."""
    import requests

    from integration import catalog
    from integration.inbound.signature import HEADER, sign

    order = copy.deepcopy(catalog.EVENTS["OrderCompleted"].sample["order"])
    order["number"] = int(number)
    order["customer"] = {**order["customer"], "email": email, "firstName": email.split("@")[0].title()}
    order["shippingAddress"] = {**order.get("shippingAddress", {}), "email": email}
    order["billingAddress"] = {**order.get("billingAddress", {}), "email": email}
    event = {
        "id": f"shot-{uuid.uuid4().hex[:10]}",
        "type": "OrderCompleted",
        "occurredAt": datetime.now(UTC).isoformat(),
        "order": order,
    }
    body = json.dumps(event).encode()
    secret = connection.signing_secret_list[0]
    answer = requests.post(
        connection.events_url(base_url),
        data=body,
        headers={"Content-Type": "application/json", HEADER: sign(secret, body)},
        timeout=15,
    )
    answer.raise_for_status()


def save(page, name: str) -> Path:
    """A viewport screenshot, reduced to 256 colours (a few tens of KB instead of a few hundred)."""
    from PIL import Image

    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.png"
    page.screenshot(path=str(path))
    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    reduced.save(path, optimize=True)
    print(f"{path.relative_to(ROOT)}: {path.stat().st_size // 1024} KB")
    return path


def take(base_url: str, fake_rule) -> None:
    from django.contrib.auth.models import User
    from playwright.sync_api import sync_playwright

    from integration.delivery.testcall import run_test_call
    from integration.inbound.signature import generate_secret
    from integration.models import Connection, Delivery
    from integration.ops.setup import verify_rule_key

    User.objects.create_superuser(USER, "merchant@example.com", PASSWORD)
    shop = Connection.objects.create_with_flows(
        name="acme-store",
        rule_api_url=fake_rule.url,
        rule_api_key=fake_rule.api_key,
        signing_secrets=generate_secret(),
        test_email="crm@acme.example",
    )
    # A set-up, working connection: key verified, test call sent, orders delivered.
    verify_rule_key(shop)
    run_test_call(shop)
    for number, email in ORDERS[:3]:
        post_order(base_url, shop, number, email)
    run_tasks()

    chromium = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.goto(f"{base_url}/admin/login/?next=/admin/")
        page.get_by_label("Username").fill(USER)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{base_url}/admin/")

        save(page, "home")
        change = f"{base_url}/admin/integration/connection/{shop.pk}/change/"
        page.goto(change)
        save(page, "connection-healthy")
        page.locator(".inline-group h2").first.evaluate("e => e.scrollIntoView({block: 'start'})")
        save(page, "connection-flows")

        # Rule refuses one order's fields: a failed delivery, red in the log.
        fake_rule.fail(400, body={"error": "BadRequest", "message": "Value of Order.Total is not a valid text"})
        post_order(base_url, shop, *ORDERS[3])
        run_tasks()
        failed = Delivery.objects.get(order_number=ORDERS[3][0], event="OrderCompleted")
        page.goto(f"{base_url}/admin/integration/delivery/")
        save(page, "deliveries")
        page.goto(f"{base_url}/admin/integration/delivery/{failed.pk}/change/")
        save(page, "delivery-failed")
        page.goto(f"{base_url}/admin/integration/delivery/{failed.pk}/resend/")
        save(page, "delivery-resend")

        # The merchant's Rule key is replaced in Rule: the next delivery pauses the connection.
        fake_rule.api_key = "a-key-the-merchant-has-not-entered"
        post_order(base_url, shop, "10456", "erik@example.com")
        run_tasks()
        page.goto(change)
        save(page, "connection-paused")
        page.goto(f"{base_url}/admin/")
        save(page, "home-paused")
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="console-shots-") as folder:
        setup_django(Path(folder) / "shots.sqlite3")
        from integration.sandbox.fake_rule import FakeRule

        fake_rule = FakeRule(api_key="rule-demo-key-7d1f0c9a").start()
        try:
            take(serve(), fake_rule)
        finally:
            fake_rule.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
