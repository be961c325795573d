"""Small pieces of HTML the console pages share: status badges, HTTP codes, times in the configured zone."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone
from django.utils.html import format_html

# Delivery and inbound statuses by how a merchant should feel about them.
STATUS_TONES = {
    "succeeded": "ok",
    "processed": "ok",
    "failed": "bad",
    "retrying": "warn",
    "pending": "idle",
    "sending": "idle",
    "received": "idle",
    "cancelled": "idle",
    "ignored": "idle",
}


def status_badge(status: str, text: str = "") -> str:
    return format_html('<span class="badge tone-{}">{}</span>', STATUS_TONES.get(status, "idle"), text or status)


def http_code(code: int | None, ok: bool | None = None) -> str:
    """Rule's status code, coloured; `ok` overrides the colour when the code's meaning depends on the request
    (a 404 on removing a tag the subscriber does not hold is a success)."""
    if code is None:
        return "-"
    tone = "ok" if 200 <= code < 300 else ("warn" if code in (408, 429) or code >= 500 else "bad")
    if ok:
        tone = "ok"
    return format_html('<span class="http-code tone-{}" style="color: var(--tone)">{}</span>', tone, code)


def local_time(value: datetime | None) -> str:
    """2026-12-02 06:14:03 CET: the configured zone (TIME_ZONE), with seconds and the zone's name."""
    if value is None:
        return "-"
    return timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S %Z")
