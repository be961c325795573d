"""A graceful stop for the django-q2 worker (`manage.py qcluster`, integration/management/commands/qcluster.py).

django-q2 on SIGTERM stops its pusher, then lets every worker run the tasks already pulled into the cluster's
internal queue before the stop pills behind them: with Rule hanging (20 s read timeout per call) that is minutes,
and systemd's SIGKILL comes first. Here the qcluster process sets a flag shared with every process it forks; from
then on a task that has not started hands its ids back to the broker (another node takes them, or this one after
its restart; the sweeper is the backstop) instead of calling Rule or Centra, so the cluster exits once the calls
in flight are done, within one call's timeout.
"""

from __future__ import annotations

import multiprocessing

_stopping = None  # a multiprocessing Event, created before the cluster forks, inherited by every process


def install() -> None:
    """Create the shared flag (call in the qcluster process before the cluster starts its processes)."""
    global _stopping
    _stopping = multiprocessing.get_context("fork").Event()


def request_stop() -> None:
    if _stopping is not None:
        _stopping.set()


def stopping() -> bool:
    """True once this worker's cluster was asked to stop: start no new call."""
    return _stopping is not None and _stopping.is_set()


def hand_back(func: str, *args) -> str:
    """Put a task that must not start here back on the broker; "handed back" (should the broker refuse it, the
    rows stay due in the database and the sweeper enqueues them)."""
    from integration.queue import enqueue

    enqueue(func, *args, what=f"{func} handed back")
    return "handed back"
