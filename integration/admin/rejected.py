"""Refused inbound calls: a read-only log, and the recent ones as a section of the connection page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.safestring import SafeString

from integration.models import Connection, RejectedCall

SHOWN_ON_CONNECTION_PAGE = 10


@admin.register(RejectedCall)
class RejectedCallAdmin(admin.ModelAdmin):
    """Written by the inbound views only; superusers may delete."""

    list_display = ("at", "connection", "endpoint", "status_code", "reason", "sender")
    list_filter = ("connection", "endpoint", "status_code")
    list_select_related = ("connection",)
    list_per_page = 50
    fields = ("at", "connection", "endpoint", "status_code", "reason", "sender", "body_start")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser


def rejected_calls_section(conn: Connection) -> SafeString:
    """The connection's newest refused calls as a small table (for the connection page), with a link to all."""
    if not conn.pk:
        return SafeString("Shown once the connection is saved.")
    calls = list(conn.rejected_calls.order_by("-at", "-pk")[:SHOWN_ON_CONNECTION_PAGE])
    all_url = reverse("admin:integration_rejectedcall_changelist") + "?" + urlencode({"connection__id__exact": conn.pk})
    return render_to_string(
        "admin/integration/connection/rejected_calls.html",
        {"calls": calls, "all_url": all_url, "keep": RejectedCall.KEEP},
    )
