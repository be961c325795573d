"""Alerts: email a connection's alert addresses once per incident (paused, or failing past the threshold).

An incident opens when `connection_health()` says PAUSED or FAILING (health.ALERT_STATES) and ends when neither
holds any more; `Connection.alert_open_since` marks an open one. The mark is taken with a conditional UPDATE
before the email goes out, so two workers never both send it; when sending fails the mark is given back and the
next check tries again. Checked every minute (the "bridge: alerts" schedule) and right after a pause.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mail
from django.urls import reverse
from django.utils import timezone

from integration.models import Connection
from integration.ops import health

log = logging.getLogger(__name__)

OPENED = "opened"  # an incident started and the addresses were told
CLOSED = "closed"  # the connection is out of alert states again
NOT_SENT = "not_sent"  # the email could not be sent; the next check tries again
TASK = "integration.tasks.check_alerts"


def check_all(now: datetime | None = None) -> dict[str, int]:
    """Check every connection; counts of what happened."""
    now = now or timezone.now()
    connections = list(Connection.objects.all())
    facts = health.load_facts(connections, now)
    outcomes: dict[str, int] = {}
    for conn in connections:
        outcome = check_connection(conn, health.connection_health(conn, facts[conn.pk], now), now)
        if outcome:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def check_connection(conn: Connection, state: health.Health | None = None, now: datetime | None = None) -> str:
    """Open (and email) or close this connection's incident as its health says; OPENED, CLOSED, NOT_SENT or ""."""
    now = now or timezone.now()
    state = state or health.connection_health(conn, now=now)
    if not state.alerting:
        closed = Connection.objects.filter(pk=conn.pk, alert_open_since__isnull=False).update(alert_open_since=None)
        conn.alert_open_since = None
        return CLOSED if closed else ""
    if not Connection.objects.filter(pk=conn.pk, alert_open_since__isnull=True).update(alert_open_since=now):
        return ""  # already told about this incident
    conn.alert_open_since = now
    try:
        send_alert(conn, state)
    except Exception as exc:  # SMTP down or refused: give the mark back so the next check tries again
        Connection.objects.filter(pk=conn.pk, alert_open_since=now).update(alert_open_since=None)
        conn.alert_open_since = None
        log.warning("alert for %s not sent: %s", conn.name, exc.__class__.__name__)
        return NOT_SENT
    return OPENED


def send_alert(conn: Connection, state: health.Health) -> int:
    """One email to the connection's alert addresses (none configured: nothing is sent); messages sent."""
    recipients = conn.alert_email_list
    if not recipients:
        log.info("connection %s is %s; no alert addresses configured", conn.name, state.state)
        return 0
    page = settings.PUBLIC_BASE_URL.rstrip("/") + reverse("admin:integration_connection_change", args=[conn.pk])
    lines = [
        f"The connection {conn.name} is {state.label.lower()}.",
        "",
        state.reason,
    ]
    if state.since:
        lines.append(f"Since: {timezone.localtime(state.since):%Y-%m-%d %H:%M:%S %Z}")
    if state.action_label:
        lines.append(f"What to do: {state.action_label}.")
    lines += [
        "",
        f"Open the connection: {page}",
        "",
        "You get one email per incident; the next one comes only after the connection was healthy again.",
    ]
    return send_mail(
        subject=f"[Centra to Rule] {conn.name}: {state.label}",
        message="\n".join(lines),
        from_email=None,  # DEFAULT_FROM_EMAIL
        recipient_list=recipients,
    )


def check_soon(connection_id: int) -> None:
    """Enqueue a check of one connection (after a pause): the worker sends the email, not the caller."""
    from django_q.tasks import async_task

    try:
        async_task(TASK, connection_id, task_name=f"check-alerts-{connection_id}")
    except Exception as exc:  # the every-minute check catches up
        log.warning("could not enqueue the alert check of connection %s: %s", connection_id, exc.__class__.__name__)
