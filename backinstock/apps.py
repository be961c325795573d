from importlib import import_module

from django.apps import AppConfig


class BackInStockConfig(AppConfig):
    """Back in stock, a plug-in of the core: it declares its events and registers its handlers here."""

    name = "backinstock"
    verbose_name = "Back in stock"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .events import declare_events

        declare_events()
        import_module("backinstock.handlers")  # registers the processing handlers of its inbound types
