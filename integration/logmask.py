"""Inbound URL tokens (`/centra/<token>/...`) masked in logs: a logging filter and the masking it uses.

Installed on the console handlers in config/settings.py (Django's runserver access log, the 404 warnings of
django.request) and used by the gunicorn logger class in config/gunicorn_logging.py. Imports nothing of Django's
models: logging is configured before the apps are loaded."""

from __future__ import annotations

import logging
import re

_IN_PATH = re.compile(r"(/centra/)([^/\s?#\"']+)")


def mask_token(token: str) -> str:
    """What logs show instead of a URL token: its first 4 characters (enough to tell connections apart)."""
    return token[:4] + "****" if len(token) > 4 else "****"


def mask_paths(text: str) -> str:
    """`text` with every `/centra/<token>` in it masked."""
    return _IN_PATH.sub(lambda m: m.group(1) + mask_token(m.group(2)), text)


class MaskInboundTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_paths(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
