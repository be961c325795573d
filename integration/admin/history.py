"""The "Import history" page per connection (start date, what to import, the estimate, then a progress bar with
pause, resume and cancel), and the imports kept as records (read-only)."""

from __future__ import annotations

from datetime import datetime, time
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from integration.centra.client import CentraError
from integration.history import runner
from integration.history.models import KIND_LABELS, KINDS, HistoryBatch, HistoryImport
from integration.models import Connection


class HistoryImportForm(forms.Form):
    since = forms.DateField(
        label="Import orders placed from",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Midnight in the connection's time zone. Orders placed from now on are sent by the live flows.",
    )
    kinds = forms.MultipleChoiceField(
        label="What to import",
        choices=[(k, KIND_LABELS[k]) for k in KINDS],
        initial=["orders", "customers"],
        widget=forms.CheckboxSelectMultiple,
        help_text="Newsletter subscribers only if you want them in Rule's newsletter segments.",
    )

    def since_datetime(self, connection: Connection) -> datetime:
        day = self.cleaned_data["since"]
        return datetime.combine(day, time.min, tzinfo=ZoneInfo(connection.time_zone or "UTC"))

    def clean_since(self):
        day = self.cleaned_data["since"]
        if day > timezone.now().date():
            raise forms.ValidationError("The start date is in the future: there is no history to import yet.")
        return day


class HistoryBatchInline(admin.TabularInline):
    model = HistoryBatch
    fields = ("number", "event", "size", "status", "attempts", "status_code", "started_at", "duration_ms", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(HistoryImport)
class HistoryImportAdmin(admin.ModelAdmin):
    """Every import kept as a record: what it read, sent, skipped and why, and each Rule call."""

    list_display = ("__str__", "status", "kinds", "fetched", "sent", "skipped", "failed", "calls", "created_at")
    list_filter = ("status",)
    list_select_related = ("connection",)
    inlines = [HistoryBatchInline]
    readonly_fields = (
        "connection",
        "kinds",
        "since",
        "until",
        "status",
        "started_by",
        "phase",
        "next_page",
        "fetched_all",
        "estimated_orders",
        "estimated_customers",
        "estimated_calls",
        "fetched",
        "sent",
        "skipped",
        "failed",
        "calls",
        "skip_reasons",
        "last_error",
        "created_at",
        "started_at",
        "finished_at",
        "import_page",
    )
    exclude = ("lease_until", "next_step_at")

    def has_add_permission(self, request) -> bool:
        return False  # started from the connection's "Import history" page

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="page")
    def import_page(self, run: HistoryImport) -> str:
        url = reverse("admin:integration_history_import", args=[run.connection_id])
        return format_html('<a href="{}">Import history page of {}</a>', url, run.connection.name)

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("connection/<int:connection_id>/", view(self.import_view), name="integration_history_import"),
            path("<int:run_id>/progress/", view(self.progress_view), name="integration_history_progress"),
            *super().get_urls(),
        ]

    def _connection(self, request: HttpRequest, connection_id: int, change: bool = False) -> Connection:
        perm = "integration.change_connection" if change else "integration.view_connection"
        if not request.user.has_perm(perm):
            raise PermissionDenied
        return get_object_or_404(Connection, pk=connection_id)

    def import_view(self, request: HttpRequest, connection_id: int) -> HttpResponse:
        connection = self._connection(request, connection_id, change=request.method == "POST")
        current = runner.open_import(connection)
        form = HistoryImportForm(request.POST or None)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import history: {connection.name}",
            "opts": Connection._meta,
            "connection": connection,
            "form": form,
            "current": current,
            "records": connection.history_imports.all()[:10],
        }
        if request.method == "POST":
            action = request.POST.get("action", "")
            if action in ("pause", "resume", "cancel") and current is not None:
                with transaction.atomic():
                    done = getattr(runner, action)(current)
                word = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[action]
                if done:
                    self.message_user(request, f"Import {current.pk} {word}.", messages.SUCCESS)
                else:
                    self.message_user(request, f"Import {current.pk} could not be {word} now.", messages.WARNING)
                return redirect(request.path)
            if action in ("estimate", "start") and form.is_valid():
                since, kinds = form.since_datetime(connection), form.cleaned_data["kinds"]
                if action == "start":
                    try:  # no transaction here: start() asks Centra for the estimate, then records in its own
                        run = runner.start(connection, since, kinds, started_by=request.user.get_username())
                    except runner.CannotStart as exc:
                        self.message_user(request, str(exc), messages.ERROR)
                    else:
                        self.message_user(request, f"Import {run.pk} started.", messages.SUCCESS)
                        return redirect(request.path)
                else:
                    try:
                        context["estimate"] = runner.estimate(connection, since, kinds)
                    except CentraError as exc:
                        context["error"] = f"Centra: {exc}"
        if current is not None:
            context["progress"] = runner.progress(current)
        return TemplateResponse(request, "admin/integration/history_import.html", context)

    def progress_view(self, request: HttpRequest, run_id: int) -> JsonResponse:
        run = get_object_or_404(HistoryImport, pk=run_id)
        self._connection(request, run.connection_id)
        return JsonResponse(runner.progress(run))
