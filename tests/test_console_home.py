"""The admin's home page (health at a glance) and the site's details, through Django's test client."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from integration.delivery import engine as delivery
from integration.models import RejectedCall
from integration.ops import delivery_stats
from tests.factories import ConnectionFactory, InboundEventFactory

pytestmark = pytest.mark.django_db


def row_of(html: str, name: str) -> str:
    match = re.search(
        rf'<div class="connection-row" data-connection="{name}".*?</svg>\s*</div>\s*</div>\s*</div>', html, re.S
    )
    assert match, f"no row for {name}"
    return match.group(0)


def chart_totals(row: str) -> list[dict]:
    return [
        {"hours": int(h), "succeeded": int(s), "retrying": int(r), "failed": int(f)}
        for h, s, r, f in re.findall(
            r'data-hours="(\d+)" data-succeeded="(\d+)" data-retrying="(\d+)" data-failed="(\d+)"', row
        )
    ]


def test_the_home_page_shows_each_connections_health_and_activity(admin_client):
    healthy = ConnectionFactory(name="healthy-shop")
    InboundEventFactory(connection=healthy)
    for _ in range(3):
        delivery_stats.record(healthy.pk, "succeeded")
    delivery_stats.record(healthy.pk, "retrying", timezone.now() - timedelta(hours=30))
    paused = ConnectionFactory(name="paused-shop")
    delivery.pause_connection(paused, "Rule refused the API key: 401 Unauthorized")
    RejectedCall.objects.create(connection=healthy, endpoint="events", status_code=401, reason="signature rejected")
    RejectedCall.objects.create(connection=None, endpoint="events", status_code=404, reason="unknown endpoint")

    response = admin_client.get(reverse("admin:index"))
    html = response.content.decode()
    assert response.status_code == 200

    row = row_of(html, "healthy-shop")
    assert 'data-state="healthy"' in row and ">Healthy<" in row
    assert chart_totals(row) == [
        {"hours": 24, "succeeded": 3, "retrying": 0, "failed": 0},
        {"hours": 168, "succeeded": 3, "retrying": 1, "failed": 0},
    ]
    assert re.search(r'class="rejected-24h bad">1<', row)
    assert 'class="last-event">never' not in row and 'class="last-success">never' not in row

    row = row_of(html, "paused-shop")
    assert 'data-state="paused"' in row and "Rule refused the API key: 401 Unauthorized" in row
    assert "Verify the Rule API key, then Resume" in row
    assert 'class="last-event">never' in row

    assert "1 call to an unknown address" in html


def test_times_carry_seconds_and_the_zone(admin_client, settings):
    settings.TIME_ZONE = "Europe/Stockholm"
    conn = ConnectionFactory(name="zoned")
    InboundEventFactory(
        connection=conn, received_at=timezone.now().replace(month=1, day=15, hour=12, minute=30, second=7)
    )
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "Times in Europe/Stockholm." in html
    assert re.search(r'class="last-event">\d{4}-01-15 13:30:07 CET<', html)


def test_the_home_page_reads_the_hourly_counts_in_a_bounded_number_of_queries(admin_client):
    conns = [ConnectionFactory() for _ in range(3)]
    for conn in conns:
        delivery_stats.record(conn.pk, "succeeded")
    with CaptureQueriesContext(db_connection) as captured:
        admin_client.get(reverse("admin:index"))
    sql = [q["sql"] for q in captured.captured_queries]
    assert not [s for s in sql if 'integration_delivery"' in s and "GROUP BY" in s and "next_attempt_at" not in s]
    assert len(sql) <= 12 + 3 * len(conns)


def test_the_site_has_its_own_name_and_the_integration_first(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    assert "Django administration" not in html and "Django site admin" not in html
    assert "<title>Health at a glance | Centra to Rule</title>" in html
    assert "Centra to Rule bridge" in html
    sections = re.findall(r'<div class="app-(\w+) module', html)
    assert sections[0] == "integration"
    assert "View site" not in html


def test_task_queue_tables_are_for_superusers_only(client, admin_client):
    staff = User.objects.create_user("merchant", password="pw-merchant-1", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["integration", "django_q"]))
    client.force_login(staff)
    html = client.get(reverse("admin:index")).content.decode()
    assert "app-django_q" not in html and "app-integration" in html
    assert client.get(reverse("admin:django_q_schedule_changelist")).status_code == 403
    assert "app-django_q" in admin_client.get(reverse("admin:index")).content.decode()
    assert admin_client.get(reverse("admin:django_q_schedule_changelist")).status_code == 200


def test_a_user_without_connection_rights_sees_no_health(client):
    staff = User.objects.create_user("viewer", password="pw-viewer-1", is_staff=True)
    client.force_login(staff)
    ConnectionFactory(name="secret-shop")
    html = client.get(reverse("admin:index")).content.decode()
    assert "secret-shop" not in html and 'id="connection-health"' not in html


def test_no_debug_pages_with_debug_off(client, settings):
    settings.DEBUG = False
    response = client.get("/no/such/page")
    assert response.status_code == 404
    html = response.content.decode()
    assert "Not found" in html and "Using the URLconf" not in html and "/admin/" in html
    root = client.get("/")
    assert root.status_code == 302 and root["Location"] == reverse("admin:index")


def test_the_connection_list_shows_each_connections_health(admin_client):
    paused = ConnectionFactory(name="paused-shop")
    delivery.pause_connection(paused, "Rule refused the API key: 401 Unauthorized")
    ConnectionFactory(name="no-secret-shop", signing_secrets="")
    html = admin_client.get(reverse("admin:integration_connection_changelist")).content.decode()
    assert re.search(r'data-state="paused">Paused</span> Deliveries wait until it is resumed\. Rule refused', html)
    assert 'data-state="no_secret">No signing secret</span>' in html
