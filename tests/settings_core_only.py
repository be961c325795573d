"""The test settings without the back-in-stock plug-in: the core runs on its own (tests/backinstock/test_plugin.py)."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "backinstock"]  # noqa: F405
