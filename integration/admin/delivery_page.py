"""The delivery log a merchant can read: badges, HTTP code and a one-line reason in the list; on a delivery the
outcome and attempts first; Resend (one, or every failed one since a time) behind a confirmation that says what
Rule will do."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from integration import catalog
from integration.admin.connection_page import log_history
from integration.admin.display import http_code, local_time, status_badge
from integration.models import Connection, Delivery, DeliveryAttempt

S = Delivery.Status
BULK_LIMIT = 2000  # deliveries reopened by one confirmation; the page says when more are left
COUNT_LIMIT = 100_000  # counting stops here ("more than ..."): never a full scan of a huge log
RULE_MESSAGE_LIMIT = 200
# The log's key columns need the whole width at 1400 px: no navigation sidebar on these pages.
WIDE = {"is_nav_sidebar_enabled": False}


def last_attempt(delivery: Delivery) -> DeliveryAttempt | None:
    """The newest attempt, from the list's prefetch when there is one."""
    recent = getattr(delivery, "recent_attempts", None)
    if recent is not None:
        return recent[0] if recent else None
    return delivery.attempts.order_by("-number").first()


def rule_failing(conn) -> bool:
    """Whether the connection's hold is its circuit breaker's (Rule failing), not a 429 (once per connection)."""
    if not hasattr(conn, "_rule_failing"):
        from integration.rule.budget import RuleBudget

        conn._rule_failing = RuleBudget.objects.filter(connection=conn, breaker_opened_at__isnull=False).exists()
    return conn._rule_failing


def waiting_reason(delivery: Delivery, now: datetime | None = None) -> str:
    """Why an open delivery has not gone yet ("" when it is simply due or not open)."""
    if delivery.status not in Delivery.OPEN_STATUSES:
        return ""
    conn = delivery.connection
    now = now or timezone.now()
    if conn.is_paused:
        return f"Waits: the connection is paused ({conn.paused_reason or 'by hand'}); it goes when resumed."
    if conn.hold_until and conn.hold_until > now:
        if rule_failing(conn):
            return (
                f"Waits: Rule is failing; the next check is at {local_time(conn.hold_until)}, and it goes once Rule "
                "answers."
            )
        return f"Waits: Rule asked to slow down (429); it goes after {local_time(conn.hold_until)}."
    if delivery.status == S.RETRYING and delivery.next_attempt_at and delivery.next_attempt_at > now:
        return f"Retries at {local_time(delivery.next_attempt_at)}."
    if delivery.status == S.PENDING and delivery.next_attempt_at and delivery.next_attempt_at > now:
        return (
            f"Waits its turn in the connection's pace towards Rule; it goes at {local_time(delivery.next_attempt_at)}."
        )
    if delivery.status == S.SENDING:
        return "Being sent now."
    return "Queued: goes out within seconds."


def reason_line(delivery: Delivery) -> str:
    """The one line a merchant reads in the list: what went wrong, or why it waits."""
    waiting = waiting_reason(delivery)
    if delivery.status == S.SUCCEEDED:
        return "Resent by hand; delivered." if delivery.resend_count else ""
    error = (delivery.last_error or "").strip().splitlines()[0] if delivery.last_error else ""
    if waiting and error and delivery.status == S.RETRYING:
        return f"{waiting} Last: {error}"
    return waiting or error or delivery.status


def automation_effect(body: Any) -> str:
    """What Rule does with the automations when this request arrives again (the resend confirmation)."""
    automation = body.get("automation", False) if isinstance(body, dict) else False
    if automation == "reset":
        return (
            "automation reset: Rule cancels what is pending in the automations these tags start and starts them "
            "again, so the customer gets the email (or SMS) again."
        )
    if automation == "force":
        return (
            "automation force: Rule starts the automations these tags trigger again, so the customer gets the "
            "email again."
        )
    return "no automation: Rule only updates the subscriber's fields and tags; no email is sent."


def rule_will(delivery: Delivery) -> list[str]:
    """The resend confirmation: what Rule will do, in order."""
    body = delivery.request_body if isinstance(delivery.request_body, dict) else {}
    if delivery.method == "DELETE":
        return [f"Rule removes the tag in {delivery.path} from {delivery.email or 'the subscriber'}."]
    tags = ", ".join(str(t) for t in body.get("tags") or []) or "-"
    subscribers = body.get("subscribers")
    count = len(subscribers) if isinstance(subscribers, list) else 1
    who = delivery.email or "the subscriber"
    lines = [
        f"Rule updates {who if count == 1 else f'{count} subscribers'} with the same fields as before and adds the "
        f"tags {tags}.",
        f"With {automation_effect(body)}",
    ]
    return lines


class ResendFailedForm(forms.Form):
    since = forms.DateTimeField(
        label="Failed deliveries created since",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": 1}, format="%Y-%m-%dT%H:%M:%S"),
        input_formats=["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"],
    )
    connection = forms.ModelChoiceField(
        queryset=Connection.objects.all(), required=False, empty_label="every connection"
    )
    event = forms.ChoiceField(required=False, choices=())

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["event"].choices = [("", "every event"), *[(e, e) for e in catalog.EVENTS], ("RemoveCartTag",) * 2]

    def queryset(self):
        data = self.cleaned_data
        rows = Delivery.objects.filter(status=S.FAILED, created_at__gte=data["since"])
        if data.get("connection"):
            rows = rows.filter(connection=data["connection"])
        if data.get("event"):
            rows = rows.filter(event=data["event"])
        return rows


class DeliveryPageMixin:
    """For DeliveryAdmin: the list's columns, the page's outcome block and the two resend confirmations."""

    change_form_template = "admin/integration/delivery/change_form.html"
    change_list_template = "admin/integration/delivery/change_list.html"

    def get_queryset(self, request: HttpRequest):
        attempts = DeliveryAttempt.objects.order_by("-number").defer("response_body")
        return super().get_queryset(request).prefetch_related(Prefetch("attempts", attempts, "recent_attempts"))

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("resend-failed/", wrap(self.resend_failed_view), name="integration_delivery_resend_failed"),
            path("<path:object_id>/resend/", wrap(self.resend_view), name="integration_delivery_resend"),
            *super().get_urls(),
        ]

    # The list's columns ------------------------------------------------------------------------------------

    def when(self, obj: Delivery) -> str:
        return local_time(obj.created_at)

    when.short_description = "created"
    when.admin_order_field = "created_at"

    def status_badge(self, obj: Delivery) -> str:
        return status_badge(obj.status)

    status_badge.short_description = "status"

    def http(self, obj: Delivery) -> str:
        attempt = last_attempt(obj)
        return http_code(attempt.status_code if attempt else None, ok=obj.status == S.SUCCEEDED)

    http.short_description = "HTTP"

    def event_label(self, obj: Delivery) -> str:
        resent = format_html(' <span class="muted">resent {}x</span>', obj.resend_count) if obj.resend_count else ""
        return format_html("{}{}", obj.event, resent)

    event_label.short_description = "event"
    event_label.admin_order_field = "event"

    def reason(self, obj: Delivery) -> str:
        line = reason_line(obj)
        return format_html('<span class="reason-cell" title="{}">{}</span>', line, line) if line else ""

    # Times on the page: the configured zone, seconds and the zone's name.
    def created(self, obj: Delivery) -> str:
        return local_time(obj.created_at)

    def finished(self, obj: Delivery) -> str:
        return local_time(obj.finished_at)

    def next_attempt(self, obj: Delivery) -> str:
        return waiting_reason(obj) or local_time(obj.next_attempt_at)

    def resent(self, obj: Delivery) -> str:
        return local_time(obj.resent_at)

    def order(self, obj: Delivery) -> str:
        return obj.order_number or "-"

    order.short_description = "order"

    def get_list_display(self, request: HttpRequest):
        columns = super().get_list_display(request)
        # One shop: its name on every row only takes width (two ids read, never a COUNT).
        if len(Connection.objects.values_list("pk", flat=True)[:2]) <= 1:
            columns = tuple(c for c in columns if c != "connection")
        return columns

    def attempts_column(self, obj: Delivery) -> int:
        return len(obj.recent_attempts) if hasattr(obj, "recent_attempts") else obj.attempt_count

    attempts_column.short_description = "tries"

    # The page ----------------------------------------------------------------------------------------------

    def outcome(self, obj: Delivery) -> str:
        """The outcome and every attempt (code, time, duration, Rule's message), before anything else."""
        attempts = list(obj.attempts.order_by("number"))
        tone = {S.SUCCEEDED: "ok", S.FAILED: "bad", S.RETRYING: "warn"}.get(obj.status, "idle")
        headline = {
            S.SUCCEEDED: "Delivered: Rule accepted it.",
            S.FAILED: "Failed: Rule did not accept it, and it is not retried.",
            S.RETRYING: "Not delivered yet: it is retried.",
            S.PENDING: "Not sent yet.",
            S.SENDING: "Being sent now.",
            S.CANCELLED: "Cancelled: it will not be sent.",
        }.get(obj.status, obj.status)
        detail = waiting_reason(obj) or (obj.last_error if obj.status != S.SUCCEEDED else "")
        if obj.status == S.FAILED:
            ended = detail.rstrip() + ("" if not detail or detail.rstrip().endswith((".", "!", "?")) else ".")
            detail = f"{ended} Fix the cause (the data, the flow's settings or the key), then Resend.".strip()
        resent = (
            format_html("<p>Resent by hand {} times, last at {}.</p>", obj.resend_count, local_time(obj.resent_at))
            if obj.resend_count
            else ""
        )
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    a.number,
                    local_time(a.started_at),
                    f"{a.duration_ms} ms" if a.duration_ms is not None else "-",
                    http_code(a.status_code),
                    a.outcome or "in progress",
                    _rule_said(a),
                )
                for a in attempts
            ),
        )
        table = (
            format_html(
                '<table class="attempts"><thead><tr><th>#</th><th>started</th><th>took</th><th>HTTP</th>'
                "<th>outcome</th><th>Rule said</th></tr></thead><tbody>{}</tbody></table>",
                rows,
            )
            if attempts
            else mark_safe("<p>No attempt yet.</p>")
        )
        return format_html(
            '<div class="outcome-box tone-{}" id="delivery-outcome">{} <strong>{}</strong>{}{}'
            "<p>{} to {}, triggered by {}; created {}{}.</p></div>{}",
            tone,
            status_badge(obj.status),
            headline,
            format_html("<p>{}</p>", detail) if detail else "",
            resent,
            obj.event,
            obj.email or "-",
            obj.trigger,
            local_time(obj.created_at),
            format_html(", finished {}", local_time(obj.finished_at)) if obj.finished_at else "",
            table,
        )

    outcome.short_description = "outcome"

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        extra = {**(extra_context or {}), "can_resend": self.has_resend_permission(request), **WIDE}
        return super().change_view(request, object_id, form_url, extra)

    def changelist_view(self, request: HttpRequest, extra_context=None):
        params = {}
        if request.GET.get("connection__id__exact"):
            params["connection"] = request.GET["connection__id__exact"]
        extra = {
            **(extra_context or {}),
            "can_resend": self.has_resend_permission(request),
            **WIDE,
            "resend_failed_url": reverse("admin:integration_delivery_resend_failed") + f"?{urlencode(params)}",
        }
        return super().changelist_view(request, extra)

    # Resend one --------------------------------------------------------------------------------------------

    def resend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        from integration.delivery import engine

        if not self.has_resend_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404
        page = reverse("admin:integration_delivery_change", args=[obj.pk])
        if request.method == "POST":
            if engine.resend(obj):
                log_history(request, obj, f"Resent (attempt budget reset; trigger kept: {obj.trigger})")
                self.message_user(request, f"Delivery {obj.pk} resent: a new attempt is on its way.", messages.SUCCESS)
            else:
                self.message_user(request, f"Delivery {obj.pk} not resent: it is being sent right now.", messages.ERROR)
            return HttpResponseRedirect(page)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Resend delivery {obj.pk}?",
            "opts": self.model._meta,
            "original": obj,
            "rule_will": rule_will(obj),
            "back_url": page,
        }
        return TemplateResponse(request, "admin/integration/delivery/resend_confirm.html", context)

    # Resend every failed one since ... ---------------------------------------------------------------------

    def resend_failed_view(self, request: HttpRequest) -> HttpResponse:
        from integration.delivery import engine

        if not self.has_resend_permission(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else request.GET
        if "since" not in data:
            default = timezone.localtime(timezone.now() - timedelta(hours=24)).replace(microsecond=0, tzinfo=None)
            form = ResendFailedForm(initial={"since": default, "connection": data.get("connection")})
        else:
            form = ResendFailedForm(data)
        context = {
            **self.admin_site.each_context(request),
            "title": "Resend failed deliveries",
            "opts": self.model._meta,
            "form": form,
            "zone_name": timezone.get_current_timezone_name(),
        }
        if form.is_bound and form.is_valid():
            rows = form.queryset()
            if request.method == "POST" and request.POST.get("confirm"):
                ids = list(rows.order_by("created_at").values_list("pk", flat=True)[:BULK_LIMIT])
                resent = 0
                for obj in Delivery.objects.filter(pk__in=ids).select_related("connection"):
                    if engine.resend(obj):
                        log_history(request, obj, f"Resent with every failed one since {form.cleaned_data['since']}")
                        resent += 1
                more = " More are left: confirm again for the next ones." if len(ids) == BULK_LIMIT else ""
                self.message_user(request, f"{resent} failed deliveries resent.{more}", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:integration_delivery_changelist") + "?status__exact=pending")
            count = rows[:COUNT_LIMIT].count()
            automations = sorted(
                {
                    str(body.get("automation"))
                    for body in rows.values_list("request_body", flat=True)[:200]
                    if isinstance(body, dict)
                }
            )
            context.update(
                count=count,
                count_capped=count >= COUNT_LIMIT,
                batch=min(count, BULK_LIMIT),
                resets_email="reset" in automations or "force" in automations,
                list_url=reverse("admin:integration_delivery_changelist")
                + "?"
                + urlencode(
                    {
                        "status__exact": "failed",
                        **(
                            {"connection__id__exact": form.cleaned_data["connection"].pk}
                            if form.cleaned_data.get("connection")
                            else {}
                        ),
                        **({"event": form.cleaned_data["event"]} if form.cleaned_data.get("event") else {}),
                    }
                ),
            )
        return TemplateResponse(request, "admin/integration/delivery/resend_failed.html", context)


def _rule_said(attempt: DeliveryAttempt) -> str:
    text = " ".join((attempt.error or attempt.response_body or attempt.note or "").split())
    if attempt.call_size > 1:
        others = attempt.call_size - 1
        text = f"(sent in one call with {others} other{'s' if others != 1 else ''}) {text}"
    return text[:RULE_MESSAGE_LIMIT] + ("..." if len(text) > RULE_MESSAGE_LIMIT else "")
