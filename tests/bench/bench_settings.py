"""The project's settings plus the bench-only baseline views (mounted by tests.bench.bench_urls)."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "tests.bench.bench_urls"
# The benchmarks measure the service, not the console: request and task logs stay out of the way.
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
