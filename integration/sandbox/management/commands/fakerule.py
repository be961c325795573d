"""`manage.py fakerule`: a local fake Rule API for demos, tests and benchmarks; prints one line per request."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from integration.sandbox.fake_rule import FakeRule


class Command(BaseCommand):
    help = "Serve a fake Rule v2 API (validates like Rule, keeps subscribers) and print every request."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8025)
        parser.add_argument("--api-key", default="fake-rule-key", help="The Bearer key the fake accepts.")
        parser.add_argument("--latency-ms", type=int, default=0, help="Delay every API answer by this much.")
        parser.add_argument(
            "--calls-per-minute",
            type=int,
            default=None,
            help="Rule's budget: calls a key may make in any rolling minute (more: 429 with Retry-After).",
        )

    def handle(self, *args, host: str, port: int, api_key: str, latency_ms: int, **options) -> None:
        fake = FakeRule(
            api_key=api_key,
            host=host,
            port=port,
            latency_ms=latency_ms,
            on_request=self.print_request,
            calls_per_minute=options.get("calls_per_minute"),
        )
        self.stdout.write(f"fake Rule at http://{host}:{port}/api/v2 (controls: /_fake/requests, /_fake/control)")
        self.stdout.flush()
        try:
            fake.serve_forever()
        except KeyboardInterrupt:
            self.stdout.write("stopped")

    def print_request(self, entry: dict) -> None:
        """One line: status, method, path and query, the body (the key is never printed)."""
        query = "&".join(f"{k}={v}" for k, v in entry["query"].items())
        body = json.dumps(entry["json"], ensure_ascii=False) if entry["json"] is not None else ""
        line = f"{entry['status']} {entry['method']} {entry['path']}{'?' + query if query else ''} {body}"
        self.stdout.write(line[:2000].rstrip())
        self.stdout.flush()
