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


def encrypted_fields() -> list[tuple[type[models.Model], EncryptedTextField]]:
    """Every (model, field) stored encrypted, in every installed app."""
    from django.apps import apps

    return [
        (model, field)
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField)
    ]


def reencrypt_all() -> dict:
    """Re-encrypt every stored secret with the newest FIELD_ENCRYPTION_KEY (MultiFernet.rotate), row by row, on
    the raw column (nothing decrypted leaves this function). Values no configured key can decrypt are listed,
    never changed: {"reencrypted": n, "empty": n, "undecryptable": ["app.Model.field #pk", ...]}."""
    from django.db import connection, transaction

    result: dict = {"reencrypted": 0, "empty": 0, "undecryptable": []}
    quote = connection.ops.quote_name
    for model, field in encrypted_fields():
        table, column, pk = model._meta.db_table, field.column, model._meta.pk.column
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {quote(pk)}, {quote(column)} FROM {quote(table)}")
            rows = cursor.fetchall()
        for row_pk, stored in rows:
            if not stored:
                result["empty"] += 1
                continue
            try:
                if not stored.startswith(PREFIX):
                    raise InvalidToken
                rotated = PREFIX + fernet().rotate(stored[len(PREFIX) :].encode()).decode()
            except InvalidToken:
                result["undecryptable"].append(f"{model._meta.label}.{field.name} #{row_pk}")
                continue
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {quote(table)} SET {quote(column)} = %s WHERE {quote(pk)} = %s", [rotated, row_pk]
                )
            result["reencrypted"] += 1
    return result
