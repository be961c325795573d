"""The connection page, top first: health banner with the action that fixes it, action buttons, the setup
checklist, the signing secret (generate, reveal) and the flows table's per-flow test calls."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode

from integration import catalog
from integration.encryption import mask
from integration.models import Connection, Delivery

REVEAL_PERMISSION = "integration.reveal_signing_secret"

# The health action codes of integration.ops.health and the page action each one is (a POST button), or None for
# the ones that are a link.
BANNER_BUTTONS = {
    "resume": "resume",
    "verify_rule_key": "verify_rule_key",
    "set_signing_secret": "generate_secret",
    "verify_centra_token": "verify_centra_token",
    "check_rule": "check_rule",
}


# What to do, in the merchant's words, next to the banner's button.
ACTION_HELP = {
    "verify_rule_key": "The key was changed or removed in Rule. Copy the current key from Rule (Settings > "
    "Developer) into New Rule API key below and save, press this button, then Resume: what waited is sent.",
    "resume": "Nothing is lost while paused: deliveries wait and go out when you resume.",
    "set_signing_secret": "Generate one, then paste it into Centra's webhook plugin (Endpoint secret) and the "
    "storefront.",
    "verify_centra_token": "Check the Centra API URL and token below (System > API tokens in Centra), then verify.",
    "view_failed": "Open the failed deliveries to see what Rule said; fix the cause, then resend them.",
    "check_centra_webhook": "Check that Centra's webhook plugin is active and posts to the webhook URL below.",
    "check_rule": "Rule answers errors or nothing at all (Rule's side, not a setting here). Instead of letting every "
    "delivery fail, one call checks now and then, less often the longer it lasts (at most every 5 minutes).",
}


def action_url(conn: Connection, action: str, **params: Any) -> str:
    url = reverse("admin:integration_connection_do", args=[conn.pk, action])
    return f"{url}?{urlencode(params)}" if params else url


def failed_deliveries_url(conn: Connection) -> str:
    return reverse("admin:integration_delivery_changelist") + f"?connection__id__exact={conn.pk}&status__exact=failed"


def cannot_fire(conn: Connection, event: str) -> str:
    """Why a flow is never sent for this store ("" when it can be)."""
    spec = catalog.EVENTS.get(event)
    if spec is not None and spec.manual_mode_only and not conn.manual_confirmation:
        return (
            "Never sent for this store: it confirms orders automatically (manual confirmation is off), so "
            "OrderCompleted is sent instead."
        )
    return ""


def log_history(request: HttpRequest, obj: Any, message: str) -> None:
    """A line in the object's admin history (who, when, what)."""
    LogEntry.objects.log_actions(
        user_id=request.user.pk,
        queryset=[obj],
        action_flag=CHANGE,
        change_message=message,
        single_object=True,
    )


class ConnectionPageMixin:
    """For ConnectionAdmin: the page's own buttons (POST to <id>/do/<action>/) and the context they need."""

    change_form_template = "admin/integration/connection/change_form.html"
    PAGE_ACTIONS = (
        "test_call",
        "test_flow",
        "verify_rule_key",
        "verify_centra_token",
        "pause",
        "resume",
        "check_rule",
        "generate_secret",
        "reveal_secrets",
    )

    def get_urls(self):
        view = self.admin_site.admin_view(self.page_action_view)
        return [path("<path:object_id>/do/<str:action>/", view, name="integration_connection_do"), *super().get_urls()]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        conn = self.get_object(request, object_id)
        if conn is not None:
            extra_context = {**(extra_context or {}), **self.console_context(request, conn)}
        return super().change_view(request, object_id, form_url, extra_context)

    def console_context(self, request: HttpRequest, conn: Connection) -> dict:
        from integration.ops.health import connection_health
        from integration.ops.setup import checklist
        from integration.rule.budget import state

        health = connection_health(conn)
        steps = checklist(conn)
        can_change = self.has_change_permission(request, conn)
        return {
            "is_nav_sidebar_enabled": False,  # the flows table needs the width
            "health": health,
            "banner_button": BANNER_BUTTONS.get(health.action, "") if can_change else "",
            "banner_link": failed_deliveries_url(conn) if health.action == "view_failed" else "",
            "banner_help": ACTION_HELP.get(health.action, ""),
            "rule_budget": state(conn),
            "checklist": steps,
            "checklist_left": sum(not s.done for s in steps),
            "can_act": can_change,
            "can_reveal": request.user.has_perm(REVEAL_PERMISSION),
            "secret_count": len(conn.signing_secret_list),
            "actions": {name: action_url(conn, name) for name in self.PAGE_ACTIONS},
        }

    def get_inline_instances(self, request: HttpRequest, obj: Connection | None = None):
        inlines = super().get_inline_instances(request, obj)
        if obj is not None:
            latest = latest_test_deliveries(obj)
            for inline in inlines:
                inline.test_results = latest
                inline.connection = obj
        return inlines

    # The buttons -------------------------------------------------------------------------------------------

    def page_action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conn = self.get_object(request, object_id)
        if conn is None or action not in self.PAGE_ACTIONS:
            raise Http404
        if action == "reveal_secrets":
            if not request.user.has_perm(REVEAL_PERMISSION):
                raise PermissionDenied
        elif not self.has_change_permission(request, conn):
            raise PermissionDenied
        response = getattr(self, f"do_{action}")(request, conn)
        if response is not None:
            return response
        return HttpResponseRedirect(reverse("admin:integration_connection_change", args=[conn.pk]))

    def do_test_call(self, request: HttpRequest, conn: Connection) -> None:
        from integration.delivery.testcall import run_test_call

        report = run_test_call(conn)
        level = messages.SUCCESS if report.ok else (messages.WARNING if report.not_sent else messages.ERROR)
        self.message_user(request, report.summary(), level)

    def do_test_flow(self, request: HttpRequest, conn: Connection) -> None:
        from integration.delivery.testcall import failure_cause, send_test_call

        event = request.GET.get("event", "")
        if event not in catalog.EVENTS:
            raise Http404
        conn.refresh_from_db()
        if conn.is_paused:
            self.message_user(
                request, f"Test call not sent: the connection is paused ({conn.paused_reason}).", messages.WARNING
            )
            return
        if not conn.test_email:
            self.message_user(request, "Test call not sent: set a test email and save.", messages.WARNING)
            return
        result = send_test_call(conn, event)
        if result.ok:
            self.message_user(request, f"{event}: test call sent to {conn.test_email}.", messages.SUCCESS)
        else:
            self.message_user(request, f"{event}: {failure_cause(result)}.", messages.ERROR)

    def do_verify_rule_key(self, request: HttpRequest, conn: Connection) -> None:
        from integration.ops.setup import verify_rule_key

        ok, message = verify_rule_key(conn)
        if ok and conn.is_paused:
            message += " The connection is still paused: press Resume to send what waits."
        self.message_user(request, message, messages.SUCCESS if ok else messages.ERROR)

    def do_verify_centra_token(self, request: HttpRequest, conn: Connection) -> None:
        from integration.centra.client import verify_token

        ok, message = verify_token(conn)
        self.message_user(request, f"Centra: {message}", messages.SUCCESS if ok else messages.ERROR)

    def do_pause(self, request: HttpRequest, conn: Connection) -> None:
        from integration.delivery import engine

        engine.pause_connection(conn, f"paused by {request.user.get_username()}")
        log_history(request, conn, "Paused")
        self.message_user(request, "Paused: deliveries wait until you resume.", messages.WARNING)

    def do_resume(self, request: HttpRequest, conn: Connection) -> None:
        from integration.delivery import engine

        queued = engine.resume_connection(conn)
        log_history(request, conn, "Resumed")
        self.message_user(request, f"Resumed: {queued} waiting deliveries are being sent.", messages.SUCCESS)

    def do_check_rule(self, request: HttpRequest, conn: Connection) -> None:
        from integration.rule.budget import check_now

        if check_now(conn):
            log_history(request, conn, "Asked for a check of Rule now")
            self.message_user(request, "Checking Rule now: one delivery goes; if Rule answers, the rest follow.")
        else:
            self.message_user(request, "Rule is not held as failing: deliveries go as usual.", messages.INFO)

    def do_generate_secret(self, request: HttpRequest, conn: Connection) -> HttpResponse:
        """A new strong secret in front of the stored ones (they stay valid until removed), shown in full once."""
        from integration.inbound.signature import generate_secret

        secret = generate_secret()
        conn.signing_secrets = "\n".join([secret, *conn.signing_secret_list])
        conn.save(update_fields=["signing_secrets", "updated_at"])
        log_history(request, conn, f"Generated a signing secret ({mask(secret)})")
        return self.secret_page(request, conn, "New signing secret", [secret], generated=True)

    def do_reveal_secrets(self, request: HttpRequest, conn: Connection) -> HttpResponse:
        log_history(request, conn, "Revealed the signing secrets")
        return self.secret_page(request, conn, "Signing secrets", conn.signing_secret_list, generated=False)

    def secret_page(self, request: HttpRequest, conn: Connection, title: str, secrets: list[str], generated: bool):
        context = {
            **self.admin_site.each_context(request),
            "title": f"{conn.name}: {title.lower()}",
            "opts": self.model._meta,
            "original": conn,
            "secrets": secrets,
            "generated": generated,
            "older": len(conn.signing_secret_list) - 1,
            "webhook_url": conn.webhook_url(),
        }
        response = TemplateResponse(request, "admin/integration/connection/signing_secret.html", context)
        response["Cache-Control"] = "no-store"  # a secret never sits in a cache or the back button
        return response


def latest_test_deliveries(conn: Connection) -> dict[str, Delivery]:
    """The latest test delivery of each flow (one query on the few test rows, newest first)."""
    latest: dict[str, Delivery] = {}
    rows = Delivery.objects.filter(connection=conn, trigger=Delivery.Trigger.TEST).order_by("-created_at")[:200]
    for delivery in rows.only("pk", "event", "status", "last_error", "created_at"):
        latest.setdefault(delivery.event, delivery)
    return latest
