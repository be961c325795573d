"""The history import's records: one HistoryImport per run (its cursor, counters and result), the HistoryItems it
found (one per catalog event it stands for, so the live path can tell what was imported), and the HistoryBatches
it sent (one Rule call each)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from integration.models import Connection


class RowJSONField(models.JSONField):
    """A JSONField inserted row by row in bulk_create: on PostgreSQL, Django's UNNEST path for bulk inserts quotes
    every value into a text array in Python, which for 1.5 KB subscriber documents cost more than mapping them
    (measured with cProfile on the history benchmark). Having a placeholder keeps the plain VALUES path."""

    def get_placeholder(self, value, compiler, connection) -> str:
        return "%s"


ORDERS, CUSTOMERS, NEWSLETTER = "orders", "customers", "newsletter"
KINDS = (ORDERS, CUSTOMERS, NEWSLETTER)
KIND_LABELS = {ORDERS: "orders", CUSTOMERS: "customer accounts", NEWSLETTER: "newsletter subscribers"}


class HistoryImport(models.Model):
    """One import of a connection's history from Centra into Rule, kept as a record when it ends."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        PAUSED = "paused", "paused"
        CANCELLED = "cancelled", "cancelled"
        FINISHED = "finished", "finished"
        FAILED = "failed", "failed"

    OPEN_STATUSES = (Status.RUNNING, Status.PAUSED)

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="history_imports")
    kinds = models.JSONField(default=list, help_text="What is imported: orders, customers, newsletter.")
    since = models.DateTimeField(help_text="Orders placed from this moment on.")
    until = models.DateTimeField(help_text="When the import started: later orders belong to the live path.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING, db_index=True)
    started_by = models.CharField(max_length=150, blank=True, default="")
    # Where the import is: the kind being fetched and the next Centra page; `fetched_all` once every kind is read.
    phase = models.CharField(max_length=12, blank=True, default="")
    next_page = models.PositiveIntegerField(default=1)
    fetched_all = models.BooleanField(default=False)
    # The estimate shown before starting.
    estimated_orders = models.PositiveIntegerField(default=0)
    estimated_customers = models.PositiveIntegerField(default=0)
    estimated_calls = models.PositiveIntegerField(default=0)
    # Progress: objects read from Centra, subscribers sent, skipped (and why, by reason), failed; Rule calls.
    fetched = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    calls = models.PositiveIntegerField(default=0)
    skip_reasons = models.JSONField(default=dict, blank=True)
    last_error = models.TextField(blank=True, default="")
    live_yields = models.PositiveSmallIntegerField(default=0, help_text="Steps in a row that let live work go first.")
    # The step task's lease (one worker at a time) and when the next step may run (budget, Rule's 429, retries).
    lease_until = models.DateTimeField(null=True, blank=True)
    next_step_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "history import"

    def __str__(self) -> str:
        return f"{self.connection.name}: history since {self.since:%Y-%m-%d} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES


class HistoryItem(models.Model):
    """One catalog event an imported object stands for, keyed like a live delivery (`OrderCompleted:order:10452`).

    The primary item of an object carries the subscriber to send; the others (an order imported as OrderShipped
    also stands for its OrderCompleted) share its `group` and follow its status, so the live path treats every
    one of them as delivered and sends only what happens after."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        CLAIMED = "claimed", "claimed"
        SENT = "sent", "sent"
        SKIPPED = "skipped", "skipped"
        FAILED = "failed", "failed"

    # Imported (or about to be): the live path sends these keys no more.
    COVERING = (Status.CLAIMED, Status.SENT)

    run = models.ForeignKey(HistoryImport, on_delete=models.CASCADE, related_name="items")
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="history_items")
    key = models.CharField(max_length=255)
    group = models.CharField(max_length=120, help_text="The object: order:10452, customer:2207, newsletter:81.")
    event = models.CharField(max_length=40)
    primary = models.BooleanField(default=True)
    seq = models.PositiveIntegerField(default=0, help_text="Order in which the object was read from Centra.")
    email = models.CharField(max_length=254, blank=True, default="")
    order_number = models.CharField(max_length=64, blank=True, default="")
    occurred_at = models.DateTimeField(null=True, blank=True)
    subscriber = RowJSONField(null=True, blank=True, help_text="The `subscribers` entry; cleared once sent.")
    tags_only = models.BooleanField(default=False, help_text="Sent without fields: a newer order was in Rule.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    batch = models.ForeignKey("HistoryBatch", null=True, blank=True, on_delete=models.SET_NULL, related_name="items")
    error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "key"], name="uniq_history_item_key")]
        indexes = [
            models.Index(fields=["run", "primary", "status", "event", "seq"], name="history_item_next"),
            models.Index(fields=["run", "group"], name="history_item_group"),
            models.Index(fields=["connection", "email"], name="history_item_email"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.status})"


class HistoryBatch(models.Model):
    """One Rule call of an import: up to 1,000 subscribers of one event, automation off."""

    class Status(models.TextChoices):
        CLAIMED = "claimed", "claimed"
        SENDING = "sending", "sending"
        SENT = "sent", "sent"
        FAILED = "failed", "failed"

    run = models.ForeignKey(HistoryImport, on_delete=models.CASCADE, related_name="batches")
    number = models.PositiveIntegerField()
    event = models.CharField(max_length=40)
    size = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CLAIMED)
    attempts = models.PositiveIntegerField(default=0)
    tags = models.JSONField(default=list, help_text="The flow's tags when the batch was claimed.")
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response = models.TextField(blank=True, default="")
    note = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True, help_text="When the last call to Rule started.")
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "number"]
        constraints = [models.UniqueConstraint(fields=["run", "number"], name="uniq_history_batch_number")]
        verbose_name_plural = "history batches"

    def __str__(self) -> str:
        return f"batch {self.number}: {self.size} x {self.event} ({self.status})"
