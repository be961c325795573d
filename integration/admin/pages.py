"""The merchant's admin: connections with their flows and actions, read-only inbound and delivery logs, preview."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import DateFieldListFilter
from django.contrib.admin.options import ShowFacets
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe

from integration import catalog
from integration.admin.connection_page import ConnectionPageMixin, action_url, cannot_fire
from integration.admin.delivery_page import DeliveryPageMixin, rule_will
from integration.admin.display import local_time, status_badge
from integration.admin.forms import ConnectionAdminForm, FlowInlineForm, PreviewForm
from integration.admin.paginator import CappedCountPaginator
from integration.encryption import mask
from integration.models import Connection, Delivery, Flow, InboundEvent

# Centra webhook types that are stored but never turned into catalog events (shown in the type filter).
UNUSED_WEBHOOK_TYPES = ("account",)


def pretty_json(value: Any) -> str:
    """Indented JSON for people; text that is not JSON is returned as it is."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def pre(value: Any) -> str:
    if value in (None, "", {}, []):
        return "-"
    return format_html('<pre style="white-space: pre-wrap; margin: 0">{}</pre>', pretty_json(value))


def preview_url(**params: Any) -> str:
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return reverse("admin:integration_preview") + (f"?{query}" if query else "")


def copyable(url: str, label: str) -> str:
    """A read-only, selectable input with a copy button (the script lives in the change form template)."""
    return format_html(
        '<div style="margin-bottom: 4px"><strong>{}</strong><br>'
        '<input type="text" readonly value="{}" size="90" class="vTextField copy-source" '
        'onfocus="this.select()"> <button type="button" class="button copy-button">Copy</button></div>',
        label,
        url,
    )


# ---------------------------------------------------------------------------------------------------------------
# Connections and flows


class FlowInline(admin.TabularInline):
    """The flows as a compact table: one line per event, what it does, and its Preview and Send test."""

    model = Flow
    form = FlowInlineForm
    fields = ("event_when", "enabled", "tags", "automation", "excluded_fields", "flow_actions")
    readonly_fields = ("event_when", "flow_actions")
    extra = 0
    can_delete = False
    show_change_link = False
    verbose_name_plural = "flows (what is sent to Rule, per event)"
    # Set per request by ConnectionPageMixin.get_inline_instances.
    test_results: dict = {}
    connection: Connection | None = None

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Every catalog event has its flow from the start; there is nothing to add.
        return False

    @admin.display(description="event and when it fires")
    def event_when(self, flow: Flow) -> str:
        spec = catalog.EVENTS.get(flow.event)
        blocked = cannot_fire(flow.connection, flow.event) if flow.pk else ""
        return format_html(
            '<div class="flow-event"><strong>{}</strong><p class="help">{}</p>{}</div>',
            flow.event,
            spec.when if spec else "",
            format_html('<p class="help cannot-fire">{}</p>', blocked) if blocked else "",
        )

    @admin.display(description="preview and test")
    def flow_actions(self, flow: Flow) -> str:
        if not flow.pk:
            return "-"
        preview = format_html(
            '<a class="button" href="{}">Preview</a>', preview_url(connection=flow.connection_id, event=flow.event)
        )
        test = ""
        if self.connection is not None and not cannot_fire(flow.connection, flow.event):
            test = format_html(
                ' <button type="submit" class="button" formaction="{}" title="Send this flow\'s sample to the test '
                'email now (unsaved changes on this page are not kept)">Send test</button>',
                action_url(self.connection, "test_flow", event=flow.event),
            )
        last = self.test_results.get(flow.event)
        result = ""
        if last is not None:
            result = format_html(
                '<a class="last-test" href="{}">last test: {} {}</a>',
                reverse("admin:integration_delivery_change", args=[last.pk]),
                status_badge(last.status),
                local_time(last.created_at),
            )
        return format_html('<div class="flow-actions">{}{}{}</div>', preview, test, result)


# Inlines plug-ins add to the connection page (back in stock's settings): registered from their own admin module,
# so the core names none of them.
CONNECTION_INLINES: list[type[admin.options.InlineModelAdmin]] = []


def register_connection_inline(inline: type[admin.options.InlineModelAdmin]) -> type[admin.options.InlineModelAdmin]:
    """Show a plug-in's inline on the connection page, after the flows (usable as a class decorator)."""
    if inline not in CONNECTION_INLINES:
        CONNECTION_INLINES.append(inline)
    return inline


@admin.register(Connection)
class ConnectionAdmin(ConnectionPageMixin, admin.ModelAdmin):
    form = ConnectionAdminForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    inlines = [FlowInline]
    list_display = ("name", "health", "rule_api_key_masked", "test_email", "updated_at")
    list_filter = ("status",)
    search_fields = ("name",)
    actions = ["send_test_call", "verify_rule_api_key", "verify_centra_api_token", "pause", "resume", "rotate_token"]
    readonly_fields = (
        "inbound_urls",
        "signing_secrets_masked",
        "rule_api_key_masked",
        "centra_api_token_masked",
        "status",
        "paused_reason",
        "hold_until",
        "rule_key_verified_at",
        "reconcile_cursor",
        "last_reconcile_at",
        "last_reconcile_error",
        "centra_last_error",
        "created_at",
        "updated_at",
        "rejected_calls",
        "alert_open_since",
    )
    fieldsets = (
        (None, {"fields": ("name", "test_email")}),
        (
            "Inbound (Centra and the storefront post here)",
            {
                "fields": ("inbound_urls", "signing_secrets_masked", "new_signing_secrets", "remove_signing_secrets"),
            },
        ),
        (
            "Rule",
            {
                "fields": (
                    "rule_api_url",
                    "rule_api_key_masked",
                    "new_rule_api_key",
                    "clear_rule_api_key",
                    "rule_calls_per_minute",
                )
            },
        ),
        (
            "Centra API",
            {
                "fields": (
                    "centra_api_url",
                    "centra_api_token_masked",
                    "new_centra_api_token",
                    "clear_centra_api_token",
                    "centra_last_error",
                ),
            },
        ),
        (
            "Mapping",
            {
                "classes": ("collapse",),
                "fields": (
                    "manual_confirmation",
                    "send_cart_link",
                    "cart_link_template",
                    "remove_cart_tag",
                    "remove_cart_tag_always",
                    "tracking_link_templates",
                    "shop_url",
                    "cancellation_message",
                    "time_zone",
                    "default_language",
                ),
            },
        ),
        (
            "Operations",
            {
                "classes": ("collapse",),
                "fields": (
                    "status",
                    "paused_reason",
                    "hold_until",
                    "rule_key_verified_at",
                    "reconcile_interval_minutes",
                    "reconcile_cursor",
                    "last_reconcile_at",
                    "last_reconcile_error",
                    "created_at",
                    "updated_at",
                ),
            },
        ),
        ("Alerts", {"fields": ("alert_emails", "alert_open_since")}),
        ("Refused inbound calls (newest first)", {"fields": ("rejected_calls",)}),
    )

    @admin.display(description="inbound URLs")
    def inbound_urls(self, conn: Connection) -> str:
        if not conn.pk:
            return "Shown once the connection is saved."
        return copyable(conn.webhook_url(), "Centra webhook plugin (webhook_url)") + copyable(
            conn.events_url(), "Storefront JSON events (events_url)"
        )

    @admin.display(description="health")
    def health(self, conn: Connection) -> str:
        """The badge and reason of the home page (integration.ops.health), so the list never looks fine when
        a connection is not."""
        from integration.ops.health import connection_health

        state = connection_health(conn)
        return format_html(
            '<span class="badge tone-{}" data-state="{}">{}</span> {}',
            state.tone,
            state.state,
            state.label,
            state.reason,
        )

    @admin.display(description="refused calls")
    def rejected_calls(self, conn: Connection) -> str:
        from integration.admin.rejected import rejected_calls_section

        return rejected_calls_section(conn)

    @admin.display(description="signing secrets")
    def signing_secrets_masked(self, conn: Connection) -> str:
        stored = conn.signing_secret_list
        if not stored:
            return mark_safe('<strong class="loud">None: every inbound call is refused.</strong>')
        return ", ".join(mask(s) for s in stored) + (" (newest first)" if len(stored) > 1 else "")

    @admin.display(description="Rule API key")
    def rule_api_key_masked(self, conn: Connection) -> str:
        return mask(conn.rule_api_key) or "-"

    @admin.display(description="Centra API token")
    def centra_api_token_masked(self, conn: Connection) -> str:
        return mask(conn.centra_api_token) or "-"

    def get_inlines(self, request: HttpRequest, obj: Connection | None) -> list:
        return [*self.inlines, *CONNECTION_INLINES]

    def save_model(self, request: HttpRequest, obj: Connection, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        form.save_budget(obj)
        if not change:
            Flow.create_defaults(obj)  # a new connection starts with every catalog event's flow

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [path("preview/", preview, name="integration_preview"), *super().get_urls()]

    # Actions ---------------------------------------------------------------------------------------------------

    @admin.action(description="Send test call (every enabled flow's sample to the test email)", permissions=["change"])
    def send_test_call(self, request: HttpRequest, queryset) -> None:
        from integration.delivery.testcall import run_test_call

        for conn in queryset:
            report = run_test_call(conn)
            level = messages.SUCCESS if report.ok else (messages.WARNING if report.not_sent else messages.ERROR)
            self.message_user(request, f"{conn.name}: {report.summary()}", level)

    @admin.action(description="Verify Rule API key", permissions=["change"])
    def verify_rule_api_key(self, request: HttpRequest, queryset) -> None:
        from integration.ops.setup import verify_rule_key

        for conn in queryset:
            ok, message = verify_rule_key(conn)
            self.message_user(request, f"{conn.name}: {message}", messages.SUCCESS if ok else messages.ERROR)

    @admin.action(description="Verify Centra API token", permissions=["change"])
    def verify_centra_api_token(self, request: HttpRequest, queryset) -> None:
        from integration.centra.client import verify_token

        for conn in queryset:
            ok, message = verify_token(conn)
            self.message_user(request, f"{conn.name}: {message}", messages.SUCCESS if ok else messages.ERROR)

    @admin.action(description="Pause (deliveries wait)", permissions=["change"])
    def pause(self, request: HttpRequest, queryset) -> None:
        from integration.delivery import engine as delivery

        for conn in queryset:
            delivery.pause_connection(conn, f"paused by {request.user.get_username()}")
            self.message_user(request, f"{conn.name}: paused; its deliveries wait until it is resumed.")

    @admin.action(description="Resume (send what waits)", permissions=["change"])
    def resume(self, request: HttpRequest, queryset) -> None:
        from integration.delivery import engine as delivery

        for conn in queryset:
            delivery.resume_connection(conn)
            self.message_user(request, f"{conn.name}: resumed.")

    @admin.action(
        description="Rotate inbound URL token (new URLs; the old ones keep working for the grace period)",
        permissions=["change"],
    )
    def rotate_token(self, request: HttpRequest, queryset) -> None:
        from integration.inbound.tokens import rotate_token

        for conn in queryset:
            self.message_user(request, rotate_token(conn).summary(), messages.SUCCESS)

    # Preview ---------------------------------------------------------------------------------------------------

    def preview_view(self, request: HttpRequest) -> HttpResponse:
        """The exact Rule request a flow would send for a stored event or the sample; nothing is sent."""
        from integration.processing import emit

        # The page shows subscriber data from stored events: the same permissions as reading those.
        if not (self.has_view_permission(request) and request.user.has_perm("integration.view_inboundevent")):
            raise PermissionDenied
        # A link that names only the connection opens the picker without complaining about the rest.
        params = request.GET
        form = PreviewForm(params) if params.get("event") else PreviewForm(initial=params.dict())
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "title": "Preview a Rule request",
            "opts": self.model._meta,
            "form": form,
        }
        if form.is_bound and form.is_valid():
            conn = form.cleaned_data["connection"]
            event = form.cleaned_data["event"]
            inbound = form.cleaned_data.get("inbound")
            context.update(connection=conn, event=event, inbound=inbound)
            flow = Flow.for_event(conn, event)
            context["flow"] = flow
            payload = self._preview_payload(inbound, event, context)
            if payload is not None:
                try:
                    request_ = emit.render(conn, event, payload, flow=flow)
                except Exception as exc:  # a mapping error is the answer the merchant needs to see
                    context["error"] = f"{exc.__class__.__name__}: {exc}"
                else:
                    context["body"] = pretty_json(request_.body)
                    notes = getattr(request_, "notes", None) or []
                    context["notes"] = [notes] if isinstance(notes, str) else list(notes)
                    context["email"] = request_.email
        return TemplateResponse(request, "admin/integration/preview.html", context)

    @staticmethod
    def _preview_payload(inbound: InboundEvent | None, event: str, context: dict) -> dict | None:
        if inbound is None:
            context["source_label"] = f"the built-in sample for {event}"
            return catalog.EVENTS[event].sample
        if inbound.source == InboundEvent.Source.WEBHOOK:
            context["error"] = (
                f"Inbound event {inbound.pk} is a native Centra webhook: it only names the object "
                f"({inbound.event_type} {inbound.object_ref}), the order itself is fetched from Centra when it is "
                "processed. Preview needs a JSON event or the built-in sample."
            )
            return None
        context["source_label"] = f"inbound event {inbound.pk} ({inbound.event_type} {inbound.object_ref})".strip()
        return inbound.payload


# ---------------------------------------------------------------------------------------------------------------
# Logs: inbound events and deliveries (read-only, fast on millions of rows)


class ChoicesListFilter(admin.SimpleListFilter):
    """A filter with choices from the catalog, read when the page is drawn: no SELECT DISTINCT over a log table."""

    def values(self) -> tuple[str, ...]:
        return ()

    def lookups(self, request, model_admin):
        return [(v, v) for v in self.values()]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(**{self.parameter_name: self.value()})
        return queryset


class DeliveryEventFilter(ChoicesListFilter):
    title = "event"
    parameter_name = "event"

    def values(self) -> tuple[str, ...]:
        return (*catalog.EVENTS, "RemoveCartTag")


class InboundTypeFilter(ChoicesListFilter):
    title = "type"
    parameter_name = "event_type"

    def values(self) -> tuple[str, ...]:
        return (*catalog.INBOUND_TYPES, *catalog.centra_kinds(), *UNUSED_WEBHOOK_TYPES, *catalog.CATALOGUE_KEYS)


class ReadOnlyLogAdmin(admin.ModelAdmin):
    """Logs are written by the service only; superusers may delete."""

    paginator = CappedCountPaginator
    show_full_result_count = False
    show_facets = ShowFacets.NEVER
    list_select_related = ("connection",)
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser

    def get_search_results(self, request, queryset, search_term):
        """An email matches exactly, anything else as a prefix of the reference: both use an index."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if "@" in term:
            return queryset.filter(email__in={term, term.lower()}), False
        return queryset.filter(**{f"{self.reference_field}__startswith": term}), False


@admin.register(Delivery)
class DeliveryAdmin(DeliveryPageMixin, ReadOnlyLogAdmin):
    reference_field = "order_number"
    list_display = (
        "id",
        "when",
        "status_badge",
        "http",
        "event_label",
        "connection",
        "email",
        "order",
        "reason",
        "attempts_column",
    )
    list_display_links = ("id", "when")
    list_filter = ("status", DeliveryEventFilter, "connection", "trigger", ("created_at", DateFieldListFilter))
    search_fields = ("email", "order_number")
    search_help_text = "An email (exact) or the start of an order number."
    actions = ["resend"]
    fieldsets = (
        (None, {"fields": ("outcome",)}),
        (
            "Details",
            {
                "fields": (
                    ("connection", "event", "trigger"),
                    ("email", "order_number"),
                    ("status", "attempt_count", "next_attempt"),
                    "last_error",
                    "notes",
                    ("created", "finished"),
                    ("resend_count", "resent"),
                    ("inbound_event", "idempotency_key"),
                ),
            },
        ),
        ("Request and responses", {"classes": ("collapse",), "fields": ("request", "responses")}),
    )
    readonly_fields = (
        "outcome",
        "connection",
        "event",
        "status",
        "trigger",
        "email",
        "order_number",
        "inbound_event",
        "idempotency_key",
        "attempt_count",
        "next_attempt",
        "last_error",
        "notes",
        "created",
        "finished",
        "resend_count",
        "resent",
        "request",
        "responses",
    )

    @admin.display(description="request to Rule")
    def request(self, obj: Delivery) -> str:
        return format_html(
            "<code>{} {}{}</code>{}", obj.method, obj.connection.rule_base_url, obj.path, pre(obj.request_body)
        )

    @admin.display(description="Rule's answers")
    def responses(self, obj: Delivery) -> str:
        attempts = obj.attempts.order_by("number")
        html = format_html_join(
            "",
            "<p><strong>Attempt {} ({})</strong></p>{}",
            ((a.number, a.status_code or a.error or "no answer", pre(a.response_body)) for a in attempts),
        )
        return html or "-"

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("integration.change_delivery")

    @admin.action(description="Resend the selected deliveries...", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset) -> HttpResponse | None:
        """Asks first (what Rule will do, how many), then reopens each with a fresh budget; history is kept."""
        from django.contrib.admin import helpers

        from integration.admin.connection_page import log_history
        from integration.delivery import engine as delivery_module

        if request.POST.get("confirm") != "yes":
            selected = list(queryset.select_related("connection")[:200])
            context = {
                **self.admin_site.each_context(request),
                "title": f"Resend {len(selected)} deliveries?",
                "opts": self.model._meta,
                "deliveries": selected,
                "rule_will": rule_will(selected[0]) if len(selected) == 1 else [],
                "effects": sorted({line for d in selected for line in rule_will(d)[1:]}),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "back_url": request.get_full_path(),
            }
            return TemplateResponse(request, "admin/integration/delivery/resend_confirm.html", context)
        resent = 0
        for obj in queryset.select_related("connection"):
            if not delivery_module.resend(obj):
                self.message_user(
                    request, f"Delivery {obj.pk}: not resent, it is being sent right now.", messages.ERROR
                )
                continue
            log_history(request, obj, f"Resent (attempt budget reset; trigger kept: {obj.trigger})")
            resent += 1
        self.message_user(request, f"{resent} deliveries resent: a new attempt each is on its way.")
        return None


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyLogAdmin):
    reference_field = "object_ref"
    list_display = (
        "id",
        "received_at",
        "connection",
        "source",
        "event_type",
        "status",
        "object_ref",
        "email",
        "duplicate_count",
    )
    list_filter = ("connection", "source", InboundTypeFilter, "status", ("received_at", DateFieldListFilter))
    search_fields = ("email", "object_ref")
    search_help_text = "An email (exact) or the start of an order number / object id."
    fields = (
        "connection",
        "source",
        "event_type",
        "object_ref",
        "email",
        "status",
        "error",
        "dedupe_key",
        "occurred_at",
        "received_at",
        "processed_at",
        "duplicate_count",
        "process_attempts",
        "preview",
        "deliveries",
        "raw_payload",
    )
    readonly_fields = fields

    @admin.display(description="payload")
    def raw_payload(self, obj: InboundEvent) -> str:
        return pre(obj.payload)

    @admin.display(description="preview")
    def preview(self, obj: InboundEvent) -> str:
        if obj.source == InboundEvent.Source.WEBHOOK:
            return "A native webhook only names the object: preview needs a JSON event or the sample."
        event = obj.event_type if obj.event_type in catalog.EVENTS else ""
        return format_html(
            '<a href="{}">Preview the Rule request for this event</a>',
            preview_url(connection=obj.connection_id, event=event, inbound_event=obj.pk),
        )

    @admin.display(description="deliveries")
    def deliveries(self, obj: InboundEvent) -> str:
        rows = obj.deliveries.order_by("created_at")[:50]
        html = format_html_join(
            ", ",
            '<a href="{}">{} {} ({})</a>',
            ((reverse("admin:integration_delivery_change", args=[d.pk]), d.pk, d.event, d.status) for d in rows),
        )
        return html or "-"
