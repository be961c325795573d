from django.apps import AppConfig


class IntegrationConfig(AppConfig):
    name = "integration"
    verbose_name = "Centra to Rule"
    default_auto_field = "django.db.models.BigAutoField"
