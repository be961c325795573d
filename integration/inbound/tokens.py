"""The inbound URL token: find a connection by it, rotate it with a grace period, and keep it out of logs.

The token is the secret part of `/centra/<token>/events` and `/webhook`. Rotating gives a new one at once; the
old one keeps working for a grace period (so Centra's webhook settings and the storefront can be switched over
without losing a call), then answers 404 like any unknown token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection as db
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from integration.models import Connection, Flow, ForgottenSubscriber, new_token


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


# What the inbound endpoints read of a connection, in one query with what storing needs besides (the flows'
# on/off states and whether any tombstone could apply); read fresh for every request, so nothing is cached.
INBOUND_FIELDS = ("id", "name", "signing_secrets", "time_zone", "manual_confirmation")
_INBOUND_SQL: dict[str, str] = {}


def _inbound_sql(vendor: str) -> str:
    """SELECT of the connection by current or (within its grace) previous token, with two subqueries: its flows
    as "event:1,event:0" and whether a tombstone for it or for every connection exists."""
    if vendor not in _INBOUND_SQL:
        q = db.ops.quote_name
        conn_table, flow_table = q(Connection._meta.db_table), q(Flow._meta.db_table)
        stone_table = q(ForgottenSubscriber._meta.db_table)
        columns = ", ".join(f"c.{q(Connection._meta.get_field(name).column)}" for name in INBOUND_FIELDS)
        joined = "string_agg" if vendor == "postgresql" else "group_concat"
        flow_state = f"f.{q('event')} || ':' || CASE WHEN f.{q('enabled')} THEN '1' ELSE '0' END"
        _INBOUND_SQL[vendor] = (
            f"SELECT {columns}, "
            f"(SELECT {joined}({flow_state}, ',') FROM {flow_table} f WHERE f.{q('connection_id')} = c.{q('id')}) "
            "AS flow_states, "
            f"EXISTS(SELECT 1 FROM {stone_table} s WHERE s.{q('connection_id')} = c.{q('id')} "
            f"OR s.{q('connection_id')} IS NULL) AS anyone_forgotten "
            f"FROM {conn_table} c WHERE c.{q('token')} = %s OR (c.{q('previous_token')} = %s "
            f"AND c.{q('previous_token_expires_at')} > %s) ORDER BY c.{q('token')} = %s DESC"
        )
    return _INBOUND_SQL[vendor]


def inbound_connection(token: str, now: datetime | None = None) -> Connection | None:
    """connection_by_token for the inbound endpoints, loading only INBOUND_FIELDS (no other secret is decrypted on
    the request path), plus, in the same query, `stored_flow_states` ({event: enabled} of its stored flows, which
    `enabled_events()` then answers from) and `anyone_forgotten` (False: no tombstone can apply to its events)."""
    now = now or timezone.now()
    params = [token, token, db.ops.adapt_datetimefield_value(now), token]
    rows = list(Connection.objects.raw(_inbound_sql(db.vendor), params))
    if not rows:
        return None
    found = rows[0]
    states = found.__dict__.pop("flow_states") or ""
    found.stored_flow_states = {
        event: enabled == "1" for event, _, enabled in (item.rpartition(":") for item in states.split(",") if item)
    }
    found.anyone_forgotten = bool(found.anyone_forgotten)
    return found


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
