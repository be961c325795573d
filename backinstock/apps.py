from django.apps import AppConfig


class BackInStockConfig(AppConfig):
    name = "backinstock"
    verbose_name = "Back in stock"
    default_auto_field = "django.db.models.BigAutoField"
