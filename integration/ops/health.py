"""What /healthz reports: the database, the task broker, and how many deliveries are due."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Q
from django.utils import timezone

from integration.models import Delivery

log = logging.getLogger(__name__)


def check_database() -> str:
    """ "ok", or why the default database cannot answer."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return "ok"
    except DatabaseError as exc:
        return f"down: {exc.__class__.__name__}"


def check_broker() -> str:
    """ "ok", or why the django-q2 broker cannot answer (the ORM broker is the database; Redis gets a PING)."""
    redis_url = settings.Q_CLUSTER.get("redis")
    if not redis_url:
        return check_database()
    import redis

    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2).ping()
        return "ok"
    except redis.RedisError as exc:
        # The class name only: a Redis URL can carry a password.
        return f"down: {exc.__class__.__name__}"


def due_backlog() -> int:
    """Deliveries waiting to be sent now (pending, or retrying and due)."""
    due = Q(next_attempt_at__lte=timezone.now()) | Q(next_attempt_at__isnull=True)
    return Delivery.objects.filter(due, status__in=[Delivery.Status.PENDING, Delivery.Status.RETRYING]).count()


def health_report() -> tuple[bool, dict]:
    """(healthy, report) for /healthz."""
    report: dict = {"database": check_database(), "broker": check_broker()}
    if report["database"] == "ok":
        try:
            report["due_backlog"] = due_backlog()
        except DatabaseError as exc:
            report["database"] = f"down: {exc.__class__.__name__}"
    healthy = report["database"] == "ok" and report["broker"] == "ok"
    if not healthy:
        log.warning("health check failed: %s", report)
    return healthy, report
