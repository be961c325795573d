"""Handing work to the django-q worker, and the one rule for it: a broker that fails never loses anything.

Every task names a row that is already committed (a delivery, inbound events, a restock), so when the broker
cannot take the task the failure is only logged and the row waits for the next sweep (or poll) to enqueue it.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

log = logging.getLogger(__name__)


@functools.cache
def shared_broker():
    """One broker per process: django-q2 otherwise opens a new Redis connection for every task (0.7 ms vs 0.2 ms
    per event in tests/bench). Used on the request path (the web process), never before a fork."""
    from django_q.brokers import get_broker

    return get_broker()


def enqueue(func: str, *args: Any, what: str, **options: Any) -> bool:
    """async_task(func, *args, **options); False (and a warning naming `what`) when the broker refused it."""
    from django_q.tasks import async_task

    try:
        async_task(func, *args, **options)
    except Exception as exc:  # the row is committed: the sweeper (or the stock poll) enqueues it again
        log.warning("could not enqueue %s: %s", what, exc.__class__.__name__)
        return False
    return True
