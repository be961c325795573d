"""Secrets at rest: a model field encrypted with Fernet keys from FIELD_ENCRYPTION_KEY (rotation: newest first)."""

import base64
import binascii
import contextlib
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import models

PREFIX = "fernet:"


def _as_fernet_key(raw: str) -> bytes:
    """A Fernet key as given; any other string (a passphrase) hashed into one."""
    with contextlib.suppress(binascii.Error, ValueError):
        if len(base64.urlsafe_b64decode(raw.encode())) == 32:
            return raw.encode()
    return base64.urlsafe_b64encode(hashlib.sha256(raw.encode()).digest())


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(_as_fernet_key(k)) for k in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(value: str) -> str:
    return PREFIX + fernet().encrypt(value.encode()).decode()


def decrypt(stored: str) -> str:
    if not stored.startswith(PREFIX):
        raise ValueError("stored secret is not encrypted")
    try:
        return fernet().decrypt(stored[len(PREFIX) :].encode()).decode()
    except InvalidToken as exc:
        raise ValueError("secret cannot be decrypted with the configured FIELD_ENCRYPTION_KEY") from exc


def mask(value: str | None) -> str:
    """What the admin and logs show instead of a secret: its length hidden; the last 4 characters only of a
    long secret (enough to tell two keys apart, never enough to guess a short one)."""
    if not value:
        return ""
    if len(value) < 16:
        return "••••"
    return "••••" + value[-4:]


class EncryptedTextField(models.TextField):
    """A TextField stored encrypted; Python code sees plain text. Never filter or search on it."""

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt(value)
