"""Back in stock in the admin: watchers with waiting counts per item and actions; stock and restocks read-only."""

from __future__ import annotations

from collections import defaultdict

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from backinstock import alerts, stock
from backinstock.models import BackInStockSettings, ItemStock, Restock, StockPoll, Watcher
from integration.admin.pages import register_connection_inline
from integration.centra.client import CentraError

TOP_ITEMS = 50  # the item filter lists the items with the most waiting watchers


@register_connection_inline
class BackInStockSettingsInline(admin.StackedInline):
    """The connection page's "Back in stock" section. A connection without a stored row shows the defaults; the
    row is stored when the merchant changes a value."""

    model = BackInStockSettings
    fields = ("min_stock", "alerts_per_unit", "expiry_days", "poll_minutes")
    can_delete = False
    min_num = 0
    max_num = 1
    extra = 1
    verbose_name = verbose_name_plural = "back in stock"


class ItemFilter(admin.SimpleListFilter):
    """Filter by item; each choice shows how many shoppers wait for it (the items most waited for first)."""

    title = "item (waiting)"
    parameter_name = "item"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        rows = (
            Watcher.objects.filter(status=Watcher.Status.WAITING)
            .values("item")
            .annotate(waiting=Count("id"))
            .order_by("-waiting", "item")[:TOP_ITEMS]
        )
        return [(row["item"], f"{row['item']} ({row['waiting']} waiting)") for row in rows]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        return queryset.filter(item=self.value()) if self.value() else queryset


def _items_by_connection(queryset: QuerySet) -> dict:
    """{connection: [item, ...]} of the selected watchers."""
    grouped: dict = defaultdict(set)
    for watcher in queryset.select_related("connection"):
        grouped[watcher.connection].add(watcher.item)
    return {connection: sorted(items) for connection, items in grouped.items()}


@admin.register(Watcher)
class WatcherAdmin(admin.ModelAdmin):
    list_display = (
        "email",
        "item",
        "product_name",
        "status",
        "language",
        "country",
        "created_at",
        "alerted_at",
        "connection",
    )
    list_filter = ("connection", "status", ItemFilter, "country")
    search_fields = ("email", "item", "sku")
    readonly_fields = (
        "connection",
        "email",
        "item",
        "sku",
        "language",
        "country",
        "state",
        "product",
        "status",
        "created_at",
        "alerted_at",
        "restock",
        "batch",
        "note",
    )
    actions = ("check_stock_now", "alert_now", "remove")
    list_select_related = ("connection",)
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # watchers come from the storefront's subscriptions

    @admin.display(description="product")
    def product_name(self, watcher: Watcher) -> str:
        return " ".join(filter(None, [watcher.product.get("name"), watcher.product.get("size")])) or "-"

    @admin.action(description="Check stock now (ask Centra for the selected items)")
    def check_stock_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        for connection, items in _items_by_connection(queryset).items():
            try:
                restocks = stock.check_items(connection, items, source=ItemStock.Source.ADMIN)
            except CentraError as exc:
                self.message_user(request, f"{connection}: Centra stock check failed: {exc}", messages.ERROR)
                continue
            alerted = sum(alerts.run_restock(r.pk) for r in restocks)
            self.message_user(
                request,
                f"{connection}: checked {len(items)} items, {len(restocks)} back in stock, {alerted} watchers alerted.",
            )

    @admin.action(description="Alert now (the selected items' oldest waiting watchers, capped by stock)")
    def alert_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        for connection, items in _items_by_connection(queryset).items():
            for item in items:
                restock = alerts.alert_now(connection, item)
                if restock is None:
                    self.message_user(
                        request, f"{item}: no stock known or nobody waiting; check stock first.", messages.WARNING
                    )
                else:
                    self.message_user(
                        request,
                        f"{item}: {restock.alerted} of {restock.allowed} allowed alerts sent "
                        f"(stock {restock.stock_seen}).",
                    )

    @admin.action(description="Remove (stop waiting)")
    def remove(self, request: HttpRequest, queryset: QuerySet) -> None:
        # Kept as unsubscribed rather than deleted, so what happened to a shopper stays visible.
        removed = queryset.filter(status=Watcher.Status.WAITING).update(
            status=Watcher.Status.UNSUBSCRIBED, note=f"removed in the admin by {request.user}"
        )
        self.message_user(request, f"{removed} watchers removed.")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ItemStock)
class ItemStockAdmin(ReadOnlyAdmin):
    list_display = ("item", "sku", "available", "waiting", "source", "updated_at", "connection")
    list_filter = ("connection", "source")
    search_fields = ("item", "sku")

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("connection")

    @admin.display(description="waiting")
    def waiting(self, row: ItemStock) -> int:
        return Watcher.objects.filter(
            connection_id=row.connection_id, item=row.item, status=Watcher.Status.WAITING
        ).count()


@admin.register(Restock)
class RestockAdmin(ReadOnlyAdmin):
    list_display = (
        "item",
        "stock_seen",
        "allowed",
        "alerted",
        "batches",
        "status",
        "source",
        "created_at",
        "finished_at",
        "connection",
    )
    list_filter = ("connection", "status", "source")
    search_fields = ("item",)


@admin.register(StockPoll)
class StockPollAdmin(ReadOnlyAdmin):
    list_display = ("connection", "last_polled_at", "items_checked", "last_error")
