"""Fixtures shared by the whole suite live in tests/fixtures/*; each area owns its module."""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.rule",
    "tests.fixtures.centra",
    "tests.fixtures.queue",
]
