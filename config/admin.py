"""The admin site itself: the bridge's name, a home page with every connection's health, the integration first,
the task queue's tables for superusers only.

Installed in place of `django.contrib.admin` (settings.INSTALLED_APPS); the pages of our models register on it
as usual (`integration/admin/`). It lives outside the integration app because the default site is created while
the admins are being discovered.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig
from django.http import HttpRequest
from django.template.response import TemplateResponse

# Sections in this order on the home page and in the sidebar; others follow alphabetically.
APP_ORDER = ("integration", "backinstock", "auth")
# Apps whose tables only superusers see (their rows are the broker's internals: pickled arguments, task ids).
SUPERUSER_APPS = frozenset({"django_q"})


def superuser_only(admin_class: type[admin.ModelAdmin]) -> type[admin.ModelAdmin]:
    """The same admin, visible and usable by superusers only (whatever permissions a staff user holds)."""

    def allowed(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    return type(
        f"SuperuserOnly{admin_class.__name__}",
        (admin_class,),
        {
            "has_module_permission": lambda self, request: allowed(self, request),
            "has_view_permission": allowed,
            "has_change_permission": allowed,
            "has_delete_permission": allowed,
            "has_add_permission": lambda self, request, *args: allowed(self, request),
        },
    )


class BridgeAdminSite(admin.AdminSite):
    site_header = "Centra to Rule bridge"
    site_title = "Centra to Rule"
    index_title = "Health at a glance"
    index_template = "admin/bridge_index.html"
    site_url = None  # no public site: no "View site" link

    def register(self, model_or_iterable, admin_class=None, **options) -> None:
        models = [model_or_iterable] if isinstance(model_or_iterable, type) else list(model_or_iterable)
        if any(model._meta.app_label in SUPERUSER_APPS for model in models):
            admin_class = superuser_only(admin_class or admin.ModelAdmin)
        super().register(model_or_iterable, admin_class, **options)

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        apps = super().get_app_list(request, app_label)

        def position(app: dict) -> tuple[int, str]:
            label = app["app_label"]
            return (APP_ORDER.index(label) if label in APP_ORDER else len(APP_ORDER), app["name"].lower())

        return sorted(apps, key=position)

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> TemplateResponse:
        from integration.admin.home import home_context

        context = {**(extra_context or {}), **home_context(request)}
        return super().index(request, context)


class BridgeAdminConfig(AdminConfig):
    default_site = "config.admin.BridgeAdminSite"
