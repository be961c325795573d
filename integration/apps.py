from importlib import import_module
from importlib.util import find_spec

from django.apps import AppConfig

# Modules that register processing handlers (integration.processing.dispatch) when imported. The optional ones belong to
# parts that may not be installed; a missing one must not stop the service from starting.
HANDLER_MODULES = ("integration.processing.json_events",)
OPTIONAL_HANDLER_MODULES = ("integration.processing.centra_sync", "backinstock.handlers")


class IntegrationConfig(AppConfig):
    name = "integration"
    verbose_name = "Centra to Rule"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the event handlers."""
        for module in HANDLER_MODULES:
            import_module(module)
        for module in OPTIONAL_HANDLER_MODULES:
            if _installed(module):
                import_module(module)


def _installed(module: str) -> bool:
    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False
