from importlib import import_module

from django.apps import AppConfig


class IntegrationConfig(AppConfig):
    name = "integration"
    verbose_name = "Centra to Rule"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Declare the core's catalog events, then register the processing handlers (both once, on start).

        Plug-ins (e.g. backinstock) declare their own events and handlers from their own AppConfig.ready()."""
        import_module("integration.events")
        import_module("integration.delivery.engine")  # answers the hold_lifted signal (integration/signals.py)
        import_module("integration.processing.json_events")
        import_module("integration.processing.centra_sync")
