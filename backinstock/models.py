"""Back in stock: who waits for which size, what stock we last saw, and each restock (the unit of fairness)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from integration.models import Connection


class Watcher(models.Model):
    """One shopper waiting for one size (Centra item "<display item id>-<size id>") of one connection."""

    class Status(models.TextChoices):
        WAITING = "waiting", "waiting"
        ALERTED = "alerted", "alerted"
        UNSUBSCRIBED = "unsubscribed", "unsubscribed"
        EXPIRED = "expired", "expired"
        FAILED = "failed", "failed (cannot be sent)"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="watchers")
    email = models.CharField(max_length=254)
    item = models.CharField(max_length=64, help_text='Centra display item + size id, e.g. "12366-23400".')
    sku = models.CharField(max_length=120, blank=True, default="")
    language = models.CharField(max_length=8, blank=True, default="")
    country = models.CharField(max_length=2, blank=True, default="")
    state = models.CharField(max_length=10, blank=True, default="")
    product = models.JSONField(default=dict, blank=True, help_text="name, uri, image, brand, variant, size, ...")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.WAITING)
    created_at = models.DateTimeField(default=timezone.now)
    alerted_at = models.DateTimeField(null=True, blank=True)
    # The claim: a watcher belongs to exactly one batch of one restock, set by the same UPDATE that moves it
    # out of `waiting`, in the transaction that stores the batch's Delivery.
    restock = models.ForeignKey("Restock", null=True, blank=True, on_delete=models.SET_NULL, related_name="watchers")
    batch = models.PositiveIntegerField(null=True, blank=True)
    note = models.TextField(blank=True, default="")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "email", "item"],
                condition=Q(status="waiting"),
                name="uniq_waiting_watcher",
            ),
        ]
        indexes = [
            # "The oldest waiting watchers of item X", read in keyset order.
            models.Index(fields=["connection", "item", "status", "created_at", "id"], name="watcher_item_queue"),
            models.Index(fields=["status", "created_at"], name="watcher_status_created"),
            models.Index(fields=["restock", "batch"], name="watcher_claim"),
            models.Index(fields=["email"], name="watcher_email"),
        ]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.email} waits for {self.item} ({self.status})"

    def event_payload(self) -> dict:
        """The ProductAlert* payload for the mapping: the shape a BackInStockSubscribe event carries."""
        return {
            "email": self.email,
            "languageCode": self.language,
            "shipTo": {"countryCode": self.country, "stateCode": self.state},
            "item": self.item,
            "sku": self.sku,
            "product": self.product,
        }


class ItemStock(models.Model):
    """The last free-to-allocate stock seen for one watched item."""

    class Source(models.TextChoices):
        POLL = "poll", "Centra poll"
        WEBHOOK = "webhook", "Centra webhook"
        EVENT = "event", "StockUpdate event"
        ADMIN = "admin", "admin"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="item_stock")
    item = models.CharField(max_length=64)
    sku = models.CharField(max_length=120, blank=True, default="")
    available = models.IntegerField(default=0)
    updated_at = models.DateTimeField(default=timezone.now)
    source = models.CharField(max_length=10, choices=Source.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "item"], name="uniq_item_stock")]
        ordering = ["connection", "item"]
        verbose_name_plural = "item stock"

    def __str__(self) -> str:
        return f"{self.item}: {self.available}"


class Restock(models.Model):
    """Stock came back for an item: at most `allowed` of its oldest waiting watchers are alerted, once."""

    class Status(models.TextChoices):
        OPEN = "open", "open (alerting)"
        DONE = "done", "done"
        SKIPPED = "skipped", "skipped (flow off)"

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="restocks")
    item = models.CharField(max_length=64)
    stock_seen = models.IntegerField()
    allowed = models.PositiveIntegerField(help_text="stock seen x alerts per unit")
    alerted = models.PositiveIntegerField(default=0)
    batches = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=10, choices=ItemStock.Source.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    # Keyset cursor: the last (created_at, id) claimed, so each batch reads on from there.
    cursor_created_at = models.DateTimeField(null=True, blank=True)
    cursor_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True, help_text="Last progress: a stalled open restock is resumed.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # One restock at a time per item: two checks that see the same stock share one allowance.
            models.UniqueConstraint(
                fields=["connection", "item"], condition=Q(status="open"), name="uniq_open_restock"
            ),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="restock_status_created")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.item} restock {self.pk} ({self.alerted}/{self.allowed})"


class StockPoll(models.Model):
    """When a connection's watched items were last polled from Centra, and how it went."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="stock_poll")
    last_polled_at = models.DateTimeField(null=True, blank=True)
    items_checked = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"{self.connection} polled {self.last_polled_at or 'never'}"


class BackInStockSettings(models.Model):
    """A connection's back-in-stock settings (one-to-one; a connection without a row has the defaults)."""

    connection = models.OneToOneField(
        Connection, on_delete=models.CASCADE, primary_key=True, related_name="back_in_stock"
    )
    min_stock = models.PositiveIntegerField("minimum stock to alert", default=10)
    alerts_per_unit = models.PositiveIntegerField("alerts per unit of stock", default=20)
    expiry_days = models.PositiveIntegerField("watchers expire after (days)", default=365)
    poll_minutes = models.PositiveIntegerField("poll Centra stock every (minutes)", default=15)

    class Meta:
        verbose_name = verbose_name_plural = "back in stock settings"

    def __str__(self) -> str:
        return f"{self.connection} back in stock settings"

    @classmethod
    def of(cls, connection: Connection) -> BackInStockSettings:
        """The connection's settings: its stored row, else the defaults (not saved: reading never writes).

        Cached on the connection (its `back_in_stock` relation), so repeated reads cost no query."""
        try:
            return connection.back_in_stock
        except cls.DoesNotExist:
            return cls(connection=connection)  # also fills the relation's cache
