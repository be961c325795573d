"""The merchant's pages in the Django admin (registered on import by Django's admin autodiscovery)."""

from integration.admin import history, pages, rejected  # noqa: F401
