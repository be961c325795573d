"""Connections, flows, inbound events and deliveries: the database is the source of truth."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F
from django.db.models.functions import Lower
from django.urls import reverse
from django.utils import timezone

from integration import catalog, upstream
from integration.encryption import EncryptedTextField


def new_token() -> str:
    return secrets.token_urlsafe(32)


CART_LINK_EXAMPLE = "https://shop.example/abandoned-cart/{selection}"


def cart_link_problem(send_cart_link: bool, template: str) -> str:
    """Why these cart link settings cannot give Order.CartUrl, or "" when they can (or the link is off)."""
    template = (template or "").strip()
    if template and "{selection}" not in template:
        return "The cart link template needs {selection} where the cart's id goes, e.g. " + CART_LINK_EXAMPLE + "."
    if send_cart_link and not template:
        return (
            "'Send cart link' is on but there is no cart link template, so OrderCreated could not carry "
            f"Order.CartUrl: enter a template like {CART_LINK_EXAMPLE}, or turn 'send cart link' off."
        )
    return ""


class ConnectionQuerySet(models.QuerySet):
    def sendable(self, now: datetime | None = None) -> ConnectionQuerySet:
        """Connections that may send to Rule now: active (not paused) and not held by a 429."""
        now = now or timezone.now()
        return self.filter(models.Q(hold_until__isnull=True) | models.Q(hold_until__lte=now), status="active")


class ConnectionManager(models.Manager.from_queryset(ConnectionQuerySet)):
    def create_with_flows(self, **fields) -> Connection:
        """A new connection and every catalog event's flow with its defaults, in one transaction."""
        with transaction.atomic():
            connection = self.create(**fields)
            Flow.create_defaults(connection)
        return connection


class Connection(models.Model):
    """One Centra store feeding one Rule account, with its settings."""

    class Status(models.TextChoices):
        ACTIVE = "active", "active"
        PAUSED = "paused", "paused"

    name = models.SlugField(max_length=100, unique=True)
    token = models.CharField(max_length=64, unique=True, default=new_token, editable=False)
    # After a rotation the old URL token keeps working until previous_token_expires_at (integration/inbound/tokens.py).
    previous_token = models.CharField(max_length=64, blank=True, default="", db_index=True, editable=False)
    previous_token_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # One secret per line; several allow rotation without downtime. Encrypted at rest.
    signing_secrets = EncryptedTextField(blank=True, default="")
    rule_api_key = EncryptedTextField(blank=True, default="")
    rule_api_url = models.URLField(max_length=300, blank=True, default="", help_text="Empty: the RULE_API_URL setting.")
    centra_api_url = models.URLField(
        max_length=300, blank=True, default="", help_text="https://<tenant>.centra.com/graphql"
    )
    centra_api_token = EncryptedTextField(blank=True, default="")
    # The origin (scheme://host:port) each secret was entered for: the clients send it nowhere else, and a URL
    # changed without entering the secret again clears the secret (integration/upstream.py).
    rule_api_key_origin = models.CharField(max_length=300, blank=True, default="", editable=False)
    centra_api_token_origin = models.CharField(max_length=300, blank=True, default="", editable=False)

    # Mapping settings
    manual_confirmation = models.BooleanField(
        default=False,
        help_text="Centra's 'manually confirm orders': OrderPlaced on PENDING, OrderCompleted on confirm.",
    )
    send_cart_link = models.BooleanField(
        default=False,
        help_text="Send Order.CartUrl with OrderCreated. Needs a cart link template: refused without one.",
    )
    cart_link_template = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="The abandoned cart's link, {selection} standing for the cart's id, "
        "e.g. https://shop.example/abandoned-cart/{selection}",
    )
    remove_cart_tag = models.BooleanField(
        default=True,
        help_text="Remove the OrderCreated tags once OrderPlaced/OrderCompleted is delivered, from shoppers this "
        "bridge sent a cart (OrderCreated) for.",
    )
    remove_cart_tag_always = models.BooleanField(
        default=False,
        help_text="Also remove the cart tag from shoppers this bridge never tagged (e.g. tags set by your earlier "
        "Centra plugin). Costs one Rule call per order.",
    )
    tracking_link_templates = models.JSONField(
        default=dict,
        blank=True,
        help_text='Carrier name to template with {tracking}; key "default" is the fallback.',
    )
    shop_url = models.URLField(max_length=300, blank=True, default="")
    cancellation_message = models.TextField(blank=True, default="")
    time_zone = models.CharField(max_length=64, default="Europe/Stockholm")
    default_language = models.CharField(max_length=8, blank=True, default="")
    test_email = models.EmailField(blank=True, default="")

    # Operations
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    paused_reason = models.TextField(blank=True, default="")
    paused_at = models.DateTimeField(null=True, blank=True)
    hold_until = models.DateTimeField(null=True, blank=True, help_text="Rule said 429: nothing is sent before this.")
    reconcile_interval_minutes = models.PositiveIntegerField(default=10)
    reconcile_cursor = models.DateTimeField(null=True, blank=True)
    last_reconcile_at = models.DateTimeField(null=True, blank=True)
    last_reconcile_error = models.TextField(blank=True, default="")
    centra_last_error = models.TextField(blank=True, default="")
    rule_key_verified_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When Rule last accepted the key (Verify Rule API key).",
    )

    # Alerts (integration.ops.alerts)
    alert_emails = models.TextField(
        "alert email addresses",
        blank=True,
        default="",
        help_text="One per line (or comma-separated): told once when the connection is paused or keeps failing.",
    )
    alert_open_since = models.DateTimeField(
        null=True, blank=True, help_text="The current incident's start (alerted once); empty while healthy."
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConnectionManager()

    class Meta:
        ordering = ["name"]
        permissions = [("reveal_signing_secret", "Can reveal a connection's signing secrets")]

    def __str__(self) -> str:
        return self.name

    # (secret field, its origin field, the URL it is sent to)
    SECRET_BINDINGS = (
        ("rule_api_key", "rule_api_key_origin", "rule_base_url"),
        ("centra_api_token", "centra_api_token_origin", "centra_api_url"),
    )
    _BINDING_FIELDS = frozenset({"rule_api_key", "rule_api_url", "centra_api_token", "centra_api_url"})

    def save(self, *args, **kwargs) -> None:
        update_fields = kwargs.get("update_fields")
        if update_fields is None or self._BINDING_FIELDS.intersection(update_fields):
            changed = self.bind_secrets()
            if update_fields is not None and changed:
                kwargs["update_fields"] = {*update_fields, *changed}
        super().save(*args, **kwargs)
        self._remember_secrets()
        self._entered_secrets = set()

    def clean(self) -> None:
        """Settings that would make a field silently go missing are refused with what to do instead; Rule and
        Centra URLs must be places a secret may go (https, public address: integration/upstream.py)."""
        super().clean()
        errors = {}
        problem = cart_link_problem(self.send_cart_link, self.cart_link_template)
        if problem:
            errors["cart_link_template"] = problem
        for field_name in ("rule_api_url", "centra_api_url"):
            url = getattr(self, field_name)
            if url:
                try:
                    upstream.check_url(url)
                except upstream.UpstreamRefused as exc:
                    errors[field_name] = str(exc)
        if errors:
            raise ValidationError(errors)

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._remember_secrets()
        return instance

    def _remember_secrets(self) -> None:
        """The secrets as stored, to tell a secret entered now from one kept while its URL changed."""
        self._stored_secrets = {f: self.__dict__[f] for f, _, _ in self.SECRET_BINDINGS if f in self.__dict__}

    def bind_secrets(self) -> list[str]:
        """Bind each secret entered now to the origin of its URL; clear a kept secret whose URL moved to another
        origin (it was entered for the old one). Returns the fields changed."""
        changed = []
        stored = getattr(self, "_stored_secrets", {})
        deferred = self.get_deferred_fields()
        for secret_field, origin_field, url_attr in self.SECRET_BINDINGS:
            current = upstream.origin(getattr(self, url_attr))
            bound = getattr(self, origin_field)
            if secret_field in deferred:  # not loaded, so not entered now: only a moved URL matters
                entered, has_secret = False, bool(bound)
            else:
                value = getattr(self, secret_field)
                entered = secret_field in getattr(self, "_entered_secrets", ()) or value != stored.get(secret_field)
                has_secret = bool(value)
            if not has_secret:
                new_origin, clear = "", False
            elif entered:
                new_origin, clear = current, False
            else:
                new_origin, clear = bound, bool(bound) and bound != current
            if clear:
                setattr(self, secret_field, "")
                new_origin = ""
                changed.append(secret_field)
            if new_origin != bound:
                setattr(self, origin_field, new_origin)
                changed.append(origin_field)
        return changed

    def enter_secret(self, secret_field: str, value: str) -> None:
        """Set a secret as typed in now (even if it equals the stored one): it is bound to the current URL."""
        setattr(self, secret_field, value)
        self._entered_secrets = {*getattr(self, "_entered_secrets", ()), secret_field}

    def secret_sent_to(self, secret_field: str) -> str:
        """The origin a secret would go to now (to compare with the one it is bound to)."""
        url_attr = next(url for f, _, url in self.SECRET_BINDINGS if f == secret_field)
        return upstream.origin(getattr(self, url_attr))

    def enabled_events(self) -> frozenset[str]:
        """The catalog events whose flow is on (a flow not stored yet has its declared default)."""
        # Read with the connection by the inbound endpoints (tokens.inbound_connection): no query of its own then.
        stored = self.__dict__.get("stored_flow_states")
        if stored is None:
            stored = dict(self.flows.values_list("event", "enabled"))
        return frozenset(name for name, spec in catalog.EVENTS.items() if stored.get(name, spec.default_enabled))

    @property
    def signing_secret_list(self) -> list[str]:
        return [s.strip() for s in (self.signing_secrets or "").replace(",", "\n").splitlines() if s.strip()]

    @property
    def rule_base_url(self) -> str:
        return (self.rule_api_url or settings.RULE_API_URL).rstrip("/")

    @property
    def alert_email_list(self) -> list[str]:
        return [e.strip() for e in (self.alert_emails or "").replace(",", "\n").splitlines() if e.strip()]

    @property
    def is_paused(self) -> bool:
        return self.status == self.Status.PAUSED

    def hold(self, until: datetime) -> None:
        """Nothing of this connection goes to Rule before `until` (Rule's 429, the breaker's wait); never shortens
        a longer hold."""
        Connection.objects.filter(pk=self.pk).filter(
            models.Q(hold_until__isnull=True) | models.Q(hold_until__lt=until)
        ).update(hold_until=until)
        self.hold_until = max(until, self.hold_until or until)

    def events_url(self, base: str | None = None) -> str:
        return (base or settings.PUBLIC_BASE_URL).rstrip("/") + reverse("centra-events", args=[self.token])

    def webhook_url(self, base: str | None = None) -> str:
        return (base or settings.PUBLIC_BASE_URL).rstrip("/") + reverse("centra-webhook", args=[self.token])


class Flow(models.Model):
    """One catalog event of one connection: on/off, Rule tags, automation mode, fields left out."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="flows")
    # Callable choices: the catalog is read when validating, so a new event needs no schema migration (a data
    # migration creates its flows on existing connections: integration.flows.create_flows_operation).
    event = models.CharField(max_length=40, choices=catalog.event_choices)
    enabled = models.BooleanField(default=True)
    tags = models.JSONField(default=list, blank=True)
    automation = models.CharField(max_length=10, choices=catalog.AUTOMATION_CHOICES, default=catalog.DEFAULT_AUTOMATION)
    excluded_fields = models.JSONField(default=list, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "event"], name="uniq_flow_event")]
        ordering = ["connection", "id"]

    def __str__(self) -> str:
        return f"{self.connection.name}: {self.event}"

    @classmethod
    def default(cls, connection: Connection, event: str) -> Flow:
        """The flow an event has until one is stored: the catalog's defaults (not saved)."""
        spec = catalog.EVENTS[event]
        return cls(
            connection=connection,
            event=event,
            enabled=spec.default_enabled,
            tags=list(spec.default_tags),
            automation=catalog.DEFAULT_AUTOMATION,
        )

    @classmethod
    def for_event(cls, connection: Connection, event: str) -> Flow:
        """The connection's flow for an event, or its defaults when none is stored yet. Reads only."""
        return connection.flows.filter(event=event).first() or cls.default(connection, event)

    @classmethod
    def create_defaults(cls, connection: Connection) -> list[Flow]:
        """Store a flow per catalog event with the catalog's defaults (safe to repeat): the explicit step when a
        connection is created (admin, `connection` command)."""
        existing = set(cls.objects.filter(connection=connection).values_list("event", flat=True))
        missing = [cls.default(connection, event) for event in catalog.EVENTS if event not in existing]
        return cls.objects.bulk_create(missing)


class InboundEventQuerySet(models.QuerySet):
    def due(self, now: datetime | None = None, settled: timedelta | None = None) -> InboundEventQuerySet:
        """Waiting for processing now: received, not claimed by a worker, past any retry time. With `settled`
        (the sweeper), those received in the last moments are left alone: their first task is on its way. (A
        worker's claim does not look at `received_at`: another host's clock may be a little ahead.)"""
        now = now or timezone.now()
        due = self.filter(
            models.Q(next_attempt_at__isnull=True) | models.Q(next_attempt_at__lte=now),
            models.Q(lease_until__isnull=True) | models.Q(lease_until__lt=now),
            status=InboundEvent.Status.RECEIVED,
        )
        return due.filter(received_at__lte=now - settled) if settled is not None else due

    def retrying(self, now: datetime | None = None) -> InboundEventQuerySet:
        """Received, and waiting for a retry time after a passing fault (Centra down, Centra's 429)."""
        return self.filter(status=InboundEvent.Status.RECEIVED, next_attempt_at__gt=now or timezone.now())


class InboundEvent(models.Model):
    """One event as received (raw payload kept beside what was made of it)."""

    class Source(models.TextChoices):
        WEBHOOK = "webhook", "Centra webhook"
        EVENTS = "events", "JSON event"
        RECONCILE = "reconcile", "reconciliation"

    class Status(models.TextChoices):
        RECEIVED = "received", "received"
        PROCESSED = "processed", "processed"
        IGNORED = "ignored", "ignored"
        FAILED = "failed", "failed"

    # No index of its own: uniq_inbound_dedupe and inbound_conn_received lead with the connection.
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="inbound_events", db_index=False)
    source = models.CharField(max_length=10, choices=Source.choices)
    dedupe_key = models.CharField(max_length=255)
    event_type = models.CharField(max_length=60)  # indexed: inbound_type_received
    object_ref = models.CharField(
        max_length=120,
        blank=True,
        default="",
        help_text="Order number, shipment/return/customer id, or item.",
    )  # indexed: inbound_object_ref
    email = models.CharField(max_length=254, blank=True, default="")  # indexed: inbound_email
    payload = models.JSONField(default=dict)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # Indexed with received_at: inbound_status_received.
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    error = models.TextField(blank=True, default="")
    duplicate_count = models.PositiveIntegerField(default=0)
    process_attempts = models.PositiveIntegerField(default=0, help_text="Attempts held against the retry budget.")
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="After a passing fault (Centra down, 429): not processed again before this."
    )
    lease_until = models.DateTimeField(null=True, blank=True, help_text="A worker is processing it until then.")

    objects = InboundEventQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "dedupe_key"], name="uniq_inbound_dedupe"),
        ]
        # Each index is paid on the insert and on the outcome (a status change is never a HOT update): one per
        # query the admin, the console and the workers make (see Delivery).
        indexes = [
            # What waits for processing (due(), /healthz) and the admin's filter for what needs a look; the
            # processed ones (most of the log) are found through received_at.
            models.Index(
                fields=["status", "received_at"],
                condition=models.Q(status__in=["received", "ignored", "failed"]),
                name="inbound_status_open_received",
            ),
            # The console's "last event received" and "usual traffic" per connection (integration.ops.health).
            models.Index(fields=["connection", "-received_at"], name="inbound_conn_received"),
            # Whether a connection has events waiting (the delivery engine asks after every task of a backlog).
            models.Index(fields=["connection"], condition=models.Q(status="received"), name="inbound_waiting"),
            # The admin's type filter, newest first.
            models.Index(fields=["event_type", "-received_at"], name="inbound_type_received"),
            # The admin's search: an email exactly, the start of an object reference (LIKE 'x%' on PostgreSQL).
            models.Index(fields=["email"], name="inbound_email"),
            models.Index(fields=["object_ref"], name="inbound_object_ref", opclasses=["varchar_pattern_ops"]),
        ]
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.object_ref}".strip()


class DeliveryQuerySet(models.QuerySet):
    """The delivery states every part reads the same way: the worker's claim, the sweeper, /healthz, the admin."""

    def open(self) -> DeliveryQuerySet:
        """Not finished: pending, sending or retrying."""
        return self.filter(status__in=Delivery.OPEN_STATUSES)

    def waiting(self) -> DeliveryQuerySet:
        """Waiting for an attempt (pending or retrying), due or not; not being sent right now."""
        return self.filter(status__in=Delivery.WAITING_STATUSES)

    @staticmethod
    def due_q(now: datetime) -> models.Q:
        waiting = models.Q(status__in=Delivery.WAITING_STATUSES) & (
            models.Q(next_attempt_at__lte=now) | models.Q(next_attempt_at__isnull=True)
        )
        return waiting | models.Q(status=Delivery.Status.SENDING, lease_until__lt=now)

    def due(self, now: datetime | None = None) -> DeliveryQuerySet:
        """To be attempted now: waiting and its time has come (a row without a time is due at once), or left in
        `sending` by a worker whose lease ran out."""
        return self.filter(self.due_q(now or timezone.now()))

    def unclaimed(self, now: datetime | None = None) -> DeliveryQuerySet:
        """Open and not in a worker's hands (an operator's "send now" ignores the schedule, never a live lease)."""
        now = now or timezone.now()
        stale = models.Q(status=Delivery.Status.SENDING, lease_until__lt=now)
        return self.filter(models.Q(status__in=Delivery.WAITING_STATUSES) | stale)

    def sendable(self, now: datetime | None = None) -> DeliveryQuerySet:
        """Of connections that may send now (not paused, not held by a 429)."""
        return self.filter(connection_id__in=Connection.objects.sendable(now).values("pk"))

    def backlog(self, now: datetime | None = None) -> DeliveryQuerySet:
        """What the sweeper sends: due, of a connection that may send. /healthz counts exactly this."""
        now = now or timezone.now()
        return self.due(now).sendable(now)


class Delivery(models.Model):
    """One request to Rule, keyed so that each logical event reaches Rule once."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        SENDING = "sending", "sending"
        RETRYING = "retrying", "retrying"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    class Trigger(models.TextChoices):
        EVENT = "event", "event"
        TEST = "test", "test"
        RESEND = "resend", "resend"
        RECONCILE = "reconcile", "reconcile"

    OPEN_STATUSES = (Status.PENDING, Status.SENDING, Status.RETRYING)
    WAITING_STATUSES = (Status.PENDING, Status.RETRYING)

    # No index of its own: delivery_conn_created and uniq_delivery_idempotency lead with the connection.
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    # No index of its own: delivery_event_created leads with the event.
    event = models.CharField(max_length=40, help_text="Catalog event, or RemoveCartTag for the cart tag removal.")
    inbound_event = models.ForeignKey(
        InboundEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    idempotency_key = models.CharField(max_length=255)
    email = models.CharField(max_length=254, blank=True, default="")  # indexed: delivery_email
    order_number = models.CharField(max_length=64, blank=True, default="")  # indexed: delivery_order_number
    method = models.CharField(max_length=8, default="POST")
    path = models.CharField(max_length=500, default="/subscribers")
    request_body = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    trigger = models.CharField(max_length=10, choices=Trigger.choices, default=Trigger.EVENT)
    attempt_count = models.PositiveIntegerField(default=0, help_text="Attempts held against the retry budget.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    notes = models.TextField(
        blank=True,
        default="",
        help_text="What was changed to fit Rule's limits (one per line); also on the first attempt.",
    )
    resend_count = models.PositiveIntegerField(default=0, help_text="Times it was resent by hand (trigger kept).")
    resent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    batch_key = models.CharField(
        max_length=48,
        blank=True,
        default="",
        editable=False,
        help_text="Deliveries of one connection with the same key may go to Rule in one call; empty: always alone.",
    )
    claim_token = models.CharField(max_length=32, blank=True, default="", editable=False)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "idempotency_key"], name="uniq_delivery_idempotency"),
        ]
        # Every index is paid on each insert and on each of a delivery's status changes (claim, outcome): a
        # status change is never a HOT update, so each one writes a new entry in every index. Hence one index
        # per query the admin and the workers make, and partial ones where the query names the rows it wants.
        indexes = [
            # The sweeper and /healthz: what is due. Only open rows can be due.
            models.Index(
                fields=["status", "next_attempt_at"],
                condition=models.Q(status__in=["pending", "retrying", "sending"]),
                name="delivery_due_open",
            ),
            # A group's claim reads only its open rows: the delivered ones of the same envelope (every OrderShipped
            # of a connection shares a batch key) stay out of the index, however long the log grows.
            models.Index(
                fields=["connection", "batch_key", "next_attempt_at"],
                condition=models.Q(status__in=["pending", "retrying", "sending"]),
                name="delivery_batch_open",
            ),
            models.Index(fields=["-created_at"], name="delivery_created"),
            models.Index(fields=["connection", "-created_at"], name="delivery_conn_created"),
            models.Index(fields=["event", "-created_at"], name="delivery_event_created"),
            # The admin's search: an email exactly, the start of an order number (a LIKE 'x%' on PostgreSQL).
            models.Index(fields=["email"], name="delivery_email"),
            models.Index(fields=["order_number"], name="delivery_order_number", opclasses=["varchar_pattern_ops"]),
            # Who got a cart (OrderCreated), looked up before a cart tag removal (delivery engine).
            models.Index(
                F("connection"), Lower("email"), condition=models.Q(event="OrderCreated"), name="delivery_cart_shopper"
            ),
            # The connection page's test calls (and the admin's trigger filter for all but the usual `event`).
            models.Index(
                fields=["trigger", "-created_at"],
                condition=models.Q(trigger__in=["test", "resend", "reconcile"]),
                name="delivery_trigger_rare",
            ),
            # The admin's status filter for what needs a look (the delivered ones: delivery_created, filtered).
            models.Index(
                fields=["status", "-created_at"],
                condition=models.Q(status__in=["pending", "sending", "retrying", "failed", "cancelled"]),
                name="delivery_status_open_created",
            ),
        ]
        ordering = ["-created_at"]
        verbose_name_plural = "deliveries"

    def __str__(self) -> str:
        return f"{self.event} to {self.email or '?'} ({self.status})"


class DeliveryAttempt(models.Model):
    """One HTTP call to Rule; the row is written before the call."""

    RESPONSE_LIMIT = 8 * 1024

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    outcome = models.CharField(
        max_length=20,
        blank=True,
        default="",
        help_text="succeeded, retry, rate_limited, paused, failed, or in progress (empty)",
    )
    counted = models.BooleanField(default=True, help_text="False for a 429: not held against the retry budget.")
    note = models.TextField(blank=True, default="")
    call_id = models.CharField(
        max_length=32, blank=True, default="", help_text="The Rule call this attempt was part of (shared by a batch)."
    )
    call_size = models.PositiveIntegerField(default=1, help_text="Deliveries sent in that one call.")

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="uniq_attempt_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} ({self.status_code or self.error or 'in progress'})"


class DeliveryHour(models.Model):
    """Attempt outcomes per connection and clock hour (UTC), counted as deliveries finish or wait to retry.

    Kept by integration.ops.delivery_stats.record(); the console's chart and health read it instead of scanning
    the delivery log."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="delivery_hours")
    hour = models.DateTimeField()
    succeeded = models.PositiveIntegerField(default=0)
    retrying = models.PositiveIntegerField(default=0, help_text="Attempts that failed and will be tried again.")
    failed = models.PositiveIntegerField(default=0, help_text="Deliveries that failed for good.")
    last_succeeded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "hour"], name="uniq_delivery_hour")]
        ordering = ["connection", "hour"]

    def __str__(self) -> str:
        return f"{self.connection_id} {self.hour:%Y-%m-%d %H}:00"


class RejectedCall(models.Model):
    """An inbound call we refused (bad signature, no secret, invalid body, ...): what the sender got and why.

    Never a secret: no headers are kept, and at most BODY_LIMIT bytes of the body. At most KEEP rows per
    connection (and KEEP for unknown tokens, connection empty); older ones are dropped."""

    BODY_LIMIT = 256
    KEEP = 200

    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.CASCADE, related_name="rejected_calls"
    )
    at = models.DateTimeField(default=timezone.now)
    endpoint = models.CharField(max_length=20)
    status_code = models.PositiveIntegerField("answer")
    reason = models.TextField()
    sender = models.CharField(max_length=100, blank=True, default="", help_text="The caller's address.")
    body_start = models.TextField("first bytes of the body", blank=True, default="")

    class Meta:
        indexes = [models.Index(fields=["connection", "-at"], name="rejected_conn_at")]
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.status_code} {self.endpoint} {self.at:%Y-%m-%d %H:%M:%S}"


class ErasureKey(models.Model):
    """The key of the tombstones' keyed hash: random, made once, stored encrypted like the other secrets (so
    neither a copy of the database alone nor a rotation of SECRET_KEY affects the tombstones)."""

    key = EncryptedTextField()

    def __str__(self) -> str:
        return "erasure key"


class ForgottenSubscriber(models.Model):
    """A tombstone left by `forget_subscriber`: a keyed hash of the normalized email, never the email itself.

    An event about this person that happened before `forgotten_at` (a replayed request, a late webhook) is
    dropped and shown as ignored, so erasure is not undone by what was already on its way."""

    email_hash = models.CharField(max_length=64, db_index=True)
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: every connection."
    )
    forgotten_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-forgotten_at"]

    def __str__(self) -> str:
        return f"forgotten subscriber {self.email_hash[:12]} ({self.forgotten_at:%Y-%m-%d})"


# The history import's records and Rule's call budget are defined beside their code; imported here so Django
# registers them with this app.
from integration.history.models import HistoryBatch, HistoryImport, HistoryItem  # noqa: E402, F401
from integration.rule.budget import RuleBudget  # noqa: E402, F401
