"""The admin's home page: each connection's health, activity and deliveries per hour (integration.ops.health)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from integration.admin.chart import day_chart, week_chart
from integration.models import Connection, RejectedCall
from integration.ops import health


@dataclass
class HomeRow:
    overview: health.Overview
    url: str
    action_url: str
    failed_url: str
    rejected_url: str
    day_chart: SafeString
    week_chart: SafeString


def home_context(request: HttpRequest) -> dict:
    """What bridge_index.html shows above the sections; nothing for a user who may not see connections."""
    if not request.user.has_perm("integration.view_connection"):
        return {}
    now = timezone.now()
    rows = [_row(item) for item in health.overview(now)]
    return {
        "health_rows": rows,
        "unknown_calls_24h": health.unknown_token_count(now - timedelta(hours=24)),
        "rejected_keep": RejectedCall.KEEP,
        "time_zone_name": timezone.get_current_timezone_name(),
        "show_health": True,
    }


def _row(item: health.Overview) -> HomeRow:
    conn: Connection = item.connection
    url = reverse("admin:integration_connection_change", args=[conn.pk])
    deliveries = reverse("admin:integration_delivery_changelist")
    failed_url = f"{deliveries}?{urlencode({'connection__id__exact': conn.pk, 'status__exact': 'failed'})}"
    action_url = failed_url if item.health.action == health.VIEW_FAILED else url
    return HomeRow(
        overview=item,
        url=url,
        action_url=action_url,
        failed_url=failed_url,
        rejected_url=f"{url}#rejected-calls",
        day_chart=day_chart(item.day),
        week_chart=week_chart(item.week),
    )
