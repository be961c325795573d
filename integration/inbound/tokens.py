"""The inbound URL token: find a connection by it, rotate it with a grace period, and keep it out of logs.

The token is the secret part of `/centra/<token>/events` and `/webhook`. Rotating gives a new one at once; the
old one keeps working for a grace period (so Centra's webhook settings and the storefront can be switched over
without losing a call), then answers 404 like any unknown token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integration.models import Connection, new_token


@dataclass(frozen=True)
class RotatedToken:
    connection: Connection
    old_url_valid_until: datetime | None  # None: the old URLs stopped at once (grace 0)

    def summary(self) -> str:
        conn = self.connection
        if self.old_url_valid_until is None:
            until = "the old URLs stopped working now"
        else:
            until = f"the old URLs keep working until {self.old_url_valid_until:%Y-%m-%d %H:%M} UTC"
        return f"{conn.name}: new inbound URLs {conn.webhook_url()} and {conn.events_url()}; {until}."


def default_grace() -> timedelta:
    return timedelta(hours=settings.TOKEN_ROTATION_GRACE_HOURS)


def connection_by_token(token: str, *fields: str, now: datetime | None = None) -> Connection | None:
    """The connection whose current token this is, or whose previous token it is within the grace period."""
    now = now or timezone.now()
    queryset = Connection.objects.only(*fields) if fields else Connection.objects.all()
    current = queryset.filter(token=token).first()
    if current is not None:
        return current
    return queryset.filter(Q(previous_token=token) & Q(previous_token_expires_at__gt=now)).first()


def rotate_token(connection: Connection, grace: timedelta | None = None) -> RotatedToken:
    """Give the connection a new URL token; the old one is accepted for `grace` more (default
    TOKEN_ROTATION_GRACE_HOURS; zero ends it at once). A token still in its grace from an earlier rotation ends
    now: at most two URLs work at any time."""
    grace = default_grace() if grace is None else grace
    if grace < timedelta(0):
        raise ValueError("the grace period cannot be negative")
    with transaction.atomic():
        locked = Connection.objects.select_for_update().get(pk=connection.pk)
        old = locked.token
        expires = timezone.now() + grace if grace > timedelta(0) else None
        locked.token = new_token()
        locked.previous_token = old if expires else ""
        locked.previous_token_expires_at = expires
        locked.save(update_fields=["token", "previous_token", "previous_token_expires_at", "updated_at"])
    connection.token = locked.token
    connection.previous_token = locked.previous_token
    connection.previous_token_expires_at = locked.previous_token_expires_at
    return RotatedToken(connection, expires)
