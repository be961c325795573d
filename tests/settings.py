"""The test settings: the service's settings with the sandbox (fake Rule, fake Centra) installed.

DEBUG stays off as in production, so the tests bring their own keys (the service refuses to start without them)
and allow the fakes on loopback as upstreams."""

import os

os.environ.setdefault("SANDBOX", "1")
os.environ.setdefault("SECRET_KEY", "tests-only-secret-key-3b7e1f0c9a5d4e2b8f6a1c0d")
os.environ.setdefault("FIELD_ENCRYPTION_KEY", "tests-only-field-encryption-key-6c2a9e4f")
os.environ.setdefault("ALLOW_PRIVATE_UPSTREAMS", "1")

from config.settings import *  # noqa: F403
