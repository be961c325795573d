"""Post one signed JSON event to a connection's events URL, as a storefront would (for demos and debugging).

.venv/bin/python scripts/post_event.py demo OrderCompleted            # the built-in sample
.venv/bin/python scripts/post_event.py demo OrderShipped --file shipment-event.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("connection", help="connection name")
    parser.add_argument("type", help="event type, e.g. OrderCompleted")
    parser.add_argument("--file", help="JSON file with the event body (default: the built-in sample)")
    parser.add_argument("--base-url", default=None, help="default: PUBLIC_BASE_URL")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import requests

    from integration import catalog
    from integration.inbound.signature import HEADER, sign
    from integration.models import Connection

    connection = Connection.objects.get(name=args.connection)
    if not connection.signing_secret_list:
        parser.error("the connection has no signing secret")
    body_fields = json.loads(Path(args.file).read_text()) if args.file else catalog.EVENTS[args.type].sample
    event = {
        "id": f"demo-{uuid.uuid4().hex[:12]}",
        "type": args.type,
        "occurredAt": datetime.now(UTC).isoformat(),
        **body_fields,
    }
    body = json.dumps(event).encode()
    response = requests.post(
        connection.events_url(args.base_url),
        data=body,
        headers={"Content-Type": "application/json", HEADER: sign(connection.signing_secret_list[0], body)},
        timeout=10,
    )
    print(response.status_code, response.text)
    return 0 if response.ok else 1


if __name__ == "__main__":
    sys.exit(main())
