"""Helpers of the security tests: drive the admin like a browser."""

from __future__ import annotations

from django.contrib.messages import get_messages
from django.urls import reverse

from tests.test_admin import form_data


def change_url(obj) -> str:
    return reverse(f"admin:integration_{obj._meta.model_name}_change", args=[obj.pk])


def admin_post_change(client, conn, **changes):
    """Load the connection's page, apply `changes` to the form as rendered, post it."""
    data = form_data(client.get(change_url(conn)))
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return client.post(change_url(conn), data), data


def admin_run_action(client, action: str, *objects):
    """Run a changelist action on `objects` (all of one model)."""
    model = objects[0]._meta
    url = reverse(f"admin:{model.app_label}_{model.model_name}_changelist")
    return client.post(url, {"action": action, "_selected_action": [o.pk for o in objects]}, follow=True)


def messages_of(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]
