"""Alerts: the connection's alert addresses get one email per incident (paused, or failing past the threshold)."""

from __future__ import annotations

import socket

import pytest
from django.core import mail
from django.test import override_settings

from integration import tasks
from integration.delivery import engine as delivery
from integration.ops import alerts, delivery_stats
from tests.factories import ConnectionFactory, InboundEventFactory

pytestmark = pytest.mark.django_db

BODY = {
    "update_on_duplicate": True,
    "automation": "reset",
    "tags": ["OrderShipped"],
    "subscribers": {"email": "anna@example.com", "fields": [{"key": "Order.Number", "value": "10452"}]},
}


def deliver_one(connection, key: str) -> str:
    created = delivery.create_delivery(
        connection=connection, event="OrderShipped", body=BODY, email="anna@example.com", idempotency_key=key
    )
    return delivery.deliver(created.pk)


@pytest.fixture
def alerted(rule_connection):
    rule_connection.alert_emails = "ops@shop.example, crm@shop.example"
    rule_connection.save()
    InboundEventFactory(connection=rule_connection)
    return rule_connection


def test_rule_refusing_the_key_emails_the_alert_addresses_once(
    alerted, fake_rule, task_queue, django_capture_on_commit_callbacks
):
    fake_rule.fail(401, times=2)
    with django_capture_on_commit_callbacks(execute=True):
        assert deliver_one(alerted, "a") == "paused"
    assert ("integration.tasks.check_alerts", (alerted.pk,)) in task_queue.pending()
    task_queue.run_all()

    [message] = mail.outbox
    assert message.to == ["ops@shop.example", "crm@shop.example"]
    assert message.subject == f"[Centra to Rule] {alerted.name}: Paused"
    assert "Rule refused the API key" in message.body
    assert "Verify the Rule API key, then Resume" in message.body
    assert f"/admin/integration/connection/{alerted.pk}/change/" in message.body
    assert fake_rule.api_key not in message.body

    # Still paused a minute later, and paused again by a test call: no second email.
    assert tasks.check_alerts() == {}
    with django_capture_on_commit_callbacks(execute=True):
        delivery.pause_connection(alerted, "Rule refused the API key: 401")
    task_queue.run_all()
    assert len(mail.outbox) == 1

    # Healthy again ends the incident; the next pause is a new one.
    delivery.resume_connection(alerted)
    assert tasks.check_alerts() == {"closed": 1}
    alerted.refresh_from_db()
    assert alerted.alert_open_since is None
    delivery.pause_connection(alerted, "paused by admin")
    assert tasks.check_alerts() == {"opened": 1}
    assert len(mail.outbox) == 2 and "paused by admin" in mail.outbox[1].body


@override_settings(ALERT_FAILURES_PER_HOUR=3)
def test_failures_past_the_threshold_alert_once(alerted, fake_rule):
    fake_rule.fail(503, times=2)
    deliver_one(alerted, "a")
    deliver_one(alerted, "b")
    assert tasks.check_alerts() == {} and not mail.outbox
    fake_rule.fail(400, times=1, body={"error": "BadRequest", "message": "email is invalid"})
    deliver_one(alerted, "c")
    assert tasks.check_alerts() == {"opened": 1}
    [message] = mail.outbox
    assert message.subject.endswith(": Failing")
    assert "3 failed or retried attempts" in message.body
    delivery_stats.record(alerted.pk, "failed")
    assert tasks.check_alerts() == {}
    assert len(mail.outbox) == 1


def test_without_addresses_the_incident_is_tracked_and_nothing_sent():
    conn = ConnectionFactory()
    InboundEventFactory(connection=conn)
    delivery.pause_connection(conn, "paused by admin")
    assert alerts.check_connection(conn) == "opened"
    assert not mail.outbox
    conn.refresh_from_db()
    assert conn.alert_open_since is not None


def test_a_mail_server_that_cannot_be_reached_is_tried_again(settings):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_port
    settings.EMAIL_USE_TLS, settings.EMAIL_TIMEOUT = False, 2
    conn = ConnectionFactory(alert_emails="ops@shop.example")
    InboundEventFactory(connection=conn)
    delivery.pause_connection(conn, "paused by admin")

    assert alerts.check_connection(conn) == "not_sent"
    conn.refresh_from_db()
    assert conn.alert_open_since is None  # the next check tries again

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert alerts.check_connection(conn) == "opened"
    assert len(mail.outbox) == 1


def test_alert_addresses_are_checked_on_the_connection_page(admin_client):
    from django.urls import reverse

    conn = ConnectionFactory()
    page = admin_client.get(reverse("admin:integration_connection_change", args=[conn.pk]))
    assert 'name="alert_emails"' in page.content.decode()
    form = page.context["adminform"].form
    assert form.fields["alert_emails"].label.lower() == "alert email addresses"
    bound = type(form)(data={"alert_emails": "ops@shop.example\nnot-an-address"}, instance=conn)
    bound.is_valid()
    assert bound.errors["alert_emails"] == ["Not an email address: not-an-address."]
