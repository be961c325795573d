"""Native webhooks: Centra batches of 100 events (form-encoded, signed) on POST /centra/<token>/webhook.

Against a bare view in the same gunicorn that inserts the same rows; target >= 0.7 of it. Also p50/p99
latency at half the maximum rate. Run alone: `.venv/bin/python tests/bench/bench_webhooks.py [--quick]`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import common, inbound_bench

if __name__ == "__main__":
    args = common.parse_args(__doc__)
    inbound_bench.run("webhooks", "webhook", 100, args.quick)
