"""The console's connection and delivery pages, server side: secrets, buttons, test call summary, resend."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from integration.delivery.testcall import enabled_flows
from integration.models import Connection, Delivery
from tests.factories import ConnectionFactory, DeliveryFactory
from tests.test_admin import changelist_url, messages_of, post_change

pytestmark = pytest.mark.django_db


def do(client, conn: Connection, action: str, **params):
    url = reverse("admin:integration_connection_do", args=[conn.pk, action])
    return client.post(url, params and None, QUERY_STRING="&".join(f"{k}={v}" for k, v in params.items()), follow=True)


def staff(*perms: str) -> User:
    user = User.objects.create_user("clerk", password="pw-clerk-123456", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    return user


# --------------------------------------------------------------------------------------------- signing secret


def test_generate_shows_the_new_secret_once_and_keeps_the_old_ones_valid(admin_client, connection):
    old = connection.signing_secret_list

    response = do(admin_client, connection, "generate_secret")

    connection.refresh_from_db()
    new, *rest = connection.signing_secret_list
    assert rest == old  # rotation: the old secret stays valid until removed
    assert new.startswith("whsec_") and len(new) >= 40
    page = response.content.decode()
    assert new in page and "shown only once" in page
    assert "no-store" in response["Cache-Control"]
    # later visits never show it again
    assert (
        new
        not in admin_client.get(reverse("admin:integration_connection_change", args=[connection.pk])).content.decode()
    )
    [entry] = LogEntry.objects.filter(object_id=str(connection.pk))
    assert "Generated a signing secret" in entry.get_change_message() and new not in entry.get_change_message()


def test_two_generated_secrets_differ(admin_client, connection):
    do(admin_client, connection, "generate_secret")
    do(admin_client, connection, "generate_secret")
    connection.refresh_from_db()
    first, second = connection.signing_secret_list[:2]
    assert first != second


def test_the_buttons_only_answer_post(admin_client, connection):
    url = reverse("admin:integration_connection_do", args=[connection.pk, "generate_secret"])
    assert admin_client.get(url).status_code == 405
    connection.refresh_from_db()
    assert connection.signing_secret_list == ["whsec-test-1"]


def test_reveal_needs_its_own_permission_and_is_recorded(client, connection):
    user = staff("integration.view_connection", "integration.change_connection")
    client.force_login(user)
    url = reverse("admin:integration_connection_do", args=[connection.pk, "reveal_secrets"])

    assert client.post(url).status_code == 403
    page = client.get(reverse("admin:integration_connection_change", args=[connection.pk])).content.decode()
    assert ">Reveal<" not in page and "whsec-test-1" not in page

    user.user_permissions.add(Permission.objects.get(codename="reveal_signing_secret"))
    response = client.post(url)
    assert response.status_code == 200
    assert "whsec-test-1" in response.content.decode()
    [entry] = LogEntry.objects.filter(object_id=str(connection.pk), user=user)
    assert entry.get_change_message() == "Revealed the signing secrets"


def test_a_viewer_cannot_generate_a_secret(client, connection):
    client.force_login(staff("integration.view_connection"))
    url = reverse("admin:integration_connection_do", args=[connection.pk, "generate_secret"])
    assert client.post(url).status_code == 403
    connection.refresh_from_db()
    assert connection.signing_secret_list == ["whsec-test-1"]


def test_a_connection_without_secret_says_so_loudly(admin_client):
    conn = ConnectionFactory(signing_secrets="")
    page = admin_client.get(reverse("admin:integration_connection_change", args=[conn.pk])).content.decode()
    assert "No signing secret" in page and 'id="no-secret-warning"' in page
    assert "Generate a signing secret" in page


def test_connection_show_reveal_prints_the_signing_secrets_only(connection):
    out = StringIO()
    call_command("connection", "show", connection.name, "--reveal", stdout=out)
    shown = json.loads(out.getvalue())
    assert shown["signing_secrets"] == ["whsec-test-1"]
    assert connection.rule_api_key not in out.getvalue()  # the Rule key stays masked

    out = StringIO()
    call_command("connection", "show", connection.name, stdout=out)
    assert "whsec-test-1" not in out.getvalue()


# --------------------------------------------------------------------------------------------- test call


def test_a_test_call_with_a_refused_key_is_one_summary_and_stops_after_the_pause(
    admin_client, rule_connection, fake_rule
):
    fake_rule.api_key = "rule-has-another-key"
    flows = enabled_flows(rule_connection)

    response = do(admin_client, rule_connection, "test_call")

    [summary] = messages_of(response)
    first, *rest = [f.event for f in flows]
    assert summary == (
        f"Test call: 0 of {len(flows)} flows sent to {rule_connection.test_email}. "
        f"Rule refused the API key (401), so the connection is paused: {first}. "
        f"Not sent, the connection was paused by an earlier answer: {', '.join(rest)}."
    )
    assert len(fake_rule.requests) == 1  # one refused call, not one per flow
    rule_connection.refresh_from_db()
    assert rule_connection.is_paused


def test_a_test_call_on_a_paused_connection_is_not_sent(admin_client, rule_connection, fake_rule):
    Connection.objects.filter(pk=rule_connection.pk).update(status="paused", paused_reason="paused by admin")

    response = do(admin_client, rule_connection, "test_call")

    assert messages_of(response) == ["Test call not sent: the connection is paused (paused by admin). Resume it first."]
    assert fake_rule.requests == []
    assert not Delivery.objects.exists()


def test_verify_rule_key_ticks_the_checklist_and_a_refused_key_unticks_it(admin_client, rule_connection):
    response = do(admin_client, rule_connection, "verify_rule_key")
    assert messages_of(response) == ["Rule accepted the API key."]
    assert 'data-step="rule_key"' in response.content.decode()
    rule_connection.refresh_from_db()
    assert rule_connection.rule_key_verified_at is not None
    assert '<li class="done" data-step="rule_key">' in response.content.decode()

    # Rule refuses the key later: the step is open again until the key is verified anew.
    Connection.objects.filter(pk=rule_connection.pk).update(
        status="paused", paused_reason="Rule refused the API key: 401 NotAuthorized"
    )
    page = admin_client.get(reverse("admin:integration_connection_change", args=[rule_connection.pk]))
    assert '<li class="todo" data-step="rule_key">' in page.content.decode()


def test_a_new_rule_key_must_be_verified_again(admin_client, rule_connection):
    do(admin_client, rule_connection, "verify_rule_key")
    response, _ = post_change(admin_client, rule_connection, new_rule_api_key="rule-key-typed-anew-0042", _continue="1")
    assert response.status_code == 302
    rule_connection.refresh_from_db()
    assert rule_connection.rule_api_key == "rule-key-typed-anew-0042"
    assert rule_connection.rule_key_verified_at is None


def test_pause_and_resume_buttons_are_recorded_in_the_history(admin_client, rule_connection):
    do(admin_client, rule_connection, "pause")
    rule_connection.refresh_from_db()
    assert rule_connection.is_paused
    do(admin_client, rule_connection, "resume")
    rule_connection.refresh_from_db()
    assert not rule_connection.is_paused
    messages = [e.get_change_message() for e in LogEntry.objects.order_by("pk")]
    assert messages == ["Paused", "Resumed"]


# --------------------------------------------------------------------------------------------- delivery log


def test_waiting_deliveries_say_why_they_wait(admin_client):
    paused = ConnectionFactory(status="paused", paused_reason="Rule refused the API key: 401 NotAuthorized")
    held = ConnectionFactory(hold_until=timezone.now() + timedelta(minutes=5))
    DeliveryFactory(connection=paused, status="pending", next_attempt_at=timezone.now() - timedelta(hours=1))
    DeliveryFactory(connection=held, status="retrying", next_attempt_at=timezone.now() - timedelta(hours=1))

    page = admin_client.get(changelist_url(Delivery)).content.decode()

    assert (
        "Waits: the connection is paused (Rule refused the API key: 401 NotAuthorized); it goes when resumed." in page
    )
    assert "Waits: Rule asked to slow down (429); it goes after" in page


def test_resend_failed_since_counts_then_resends_only_after_confirming(admin_client, connection, task_queue):
    now = timezone.now()
    recent = DeliveryFactory.create_batch(
        3, connection=connection, status="failed", created_at=now - timedelta(hours=1)
    )
    DeliveryFactory(connection=connection, status="failed", created_at=now - timedelta(days=3))
    DeliveryFactory(connection=connection, status="succeeded", created_at=now - timedelta(hours=1))
    url = reverse("admin:integration_delivery_resend_failed")
    since = timezone.localtime(now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S")

    page = admin_client.get(url, {"since": since, "connection": connection.pk}).content.decode()
    assert "3 failed deliveries" in page and "Yes, resend 3" in page
    assert Delivery.objects.filter(status="failed").count() == 4  # counting changes nothing

    response = admin_client.post(url, {"since": since, "connection": connection.pk, "confirm": "yes"}, follow=True)
    assert "3 failed deliveries resent." in messages_of(response)
    assert set(Delivery.objects.filter(pk__in=[d.pk for d in recent]).values_list("status", flat=True)) == {"pending"}
    assert Delivery.objects.filter(status="failed").count() == 1
    assert set(Delivery.objects.filter(pk__in=[d.pk for d in recent]).values_list("trigger", flat=True)) == {"event"}


def test_resend_one_asks_first_and_a_viewer_cannot(admin_client, client, connection):
    delivery = DeliveryFactory(connection=connection, status="failed")
    url = reverse("admin:integration_delivery_resend", args=[delivery.pk])

    question = admin_client.get(url).content.decode()
    assert "What Rule will do" in question and "the customer gets the email (or SMS) again" in question
    delivery.refresh_from_db()
    assert delivery.status == "failed"

    client.force_login(staff("integration.view_delivery"))
    assert client.post(url).status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.resend_count == 0
