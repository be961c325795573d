"""The test settings: the service's settings with the sandbox (fake Rule, fake Centra) installed."""

import os

os.environ.setdefault("SANDBOX", "1")

from config.settings import *  # noqa: F403
