"""`manage.py fakecentra`: a local fake Centra Integration API (GraphQL) for demos, tests and benchmarks; also
signs and sends a webhook the way Centra's webhook plugin does (`--send-webhook URL --secret S --events JSON`)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from django.core.management.base import BaseCommand, CommandError

from integration.sandbox.fake_centra import FakeCentra, send_webhook


class Command(BaseCommand):
    help = "Serve a fake Centra GraphQL API over stored documents, or send one signed Centra webhook."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8035)
        parser.add_argument("--token", default="fake-centra-token", help="The Bearer token the fake accepts.")
        parser.add_argument("--data", help="Load DIR/{orders,shipments,returns,customers,product_sizes}/*.json.")
        parser.add_argument(
            "--history", type=int, metavar="N", help="Serve a generated history of N orders (with --seed, --years)."
        )
        parser.add_argument("--seed", type=int, default=1, help="The generated history's seed (same seed, same data).")
        parser.add_argument("--years", type=float, default=5, help="The generated history spans this many years.")
        parser.add_argument("--send-webhook", metavar="URL", help="Send one signed webhook to URL and exit.")
        parser.add_argument("--secret", help="The endpoint secret to sign the webhook with.")
        parser.add_argument("--events", help='The events as JSON: [{"type": "order", "action": "update", ...}].')

    def handle(self, *args, **options) -> None:
        if options["send_webhook"]:
            self.send(options["send_webhook"], options["secret"], options["events"])
            return
        fake = FakeCentra(token=options["token"], host=options["host"], port=options["port"], on_query=self.print_query)
        if options["data"]:
            self.stdout.write(f"loaded {fake.load_dir(options['data'])} documents from {options['data']}")
        if options["history"]:
            end = datetime.now(UTC)
            start = end - timedelta(days=365 * options["years"])
            history = fake.generate_history(options["history"], seed=options["seed"], start=start, end=end)
            self.stdout.write(
                f"serving a generated history: {history.count} orders since {start:%Y-%m-%d}, "
                f"{history.customer_count} customers, {history.newsletter_count} newsletter subscriptions "
                f"(seed {options['seed']})"
            )
        self.stdout.write(f"fake Centra at {fake.url} (controls: POST /_fake/control)")
        self.stdout.flush()
        try:
            fake.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("stopped")

    def send(self, url: str, secret: str | None, events_json: str | None) -> None:
        """Sign and send one webhook call; print Centra-style what the receiver answered."""
        if not secret or not events_json:
            raise CommandError("--send-webhook needs --secret and --events.")
        try:
            events = json.loads(events_json)
        except ValueError as exc:
            raise CommandError(f"--events is not JSON: {exc}") from None
        if isinstance(events, dict):
            events = events.get("events", [events])
        response = send_webhook(url, secret, events)
        self.stdout.write(f"{response.status_code} {response.text[:2000]}")
        if response.status_code >= 300:
            raise CommandError(f"the receiver answered {response.status_code}")

    def print_query(self, status: int, query: dict) -> None:
        """One line per GraphQL request: status, operation name, variables (the token is never printed)."""
        match = re.search(r"\b(query|mutation)\s+(\w+)", query["query"])
        name = match.group(2) if match else "anonymous"
        self.stdout.write(f"{status} {name} {json.dumps(query['variables'], ensure_ascii=False)}")
        self.stdout.flush()
