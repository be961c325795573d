from importlib import import_module

from django.apps import AppConfig


class BackInStockConfig(AppConfig):
    """Back in stock, a plug-in of the core: it declares its events, registers its handlers and answers the
    core's erasure signal here (the core never imports this app)."""

    name = "backinstock"
    verbose_name = "Back in stock"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from integration.signals import subscriber_forgotten

        from .erasure import forget_watchers
        from .events import declare_events

        declare_events()
        import_module("backinstock.handlers")  # registers the processing handlers of its inbound types
        subscriber_forgotten.connect(forget_watchers, dispatch_uid="backinstock.forget_watchers")
