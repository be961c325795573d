"""`manage.py reencrypt_secrets`: after putting a new key first in FIELD_ENCRYPTION_KEY, re-encrypt every stored
secret with it, so the old key can be removed (README: Rotating keys and secrets)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from integration.encryption import reencrypt_all
from integration.management.commands.connection import print_json


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret (Rule API keys, Centra tokens, signing secrets, the erasure key) with the "
        "newest FIELD_ENCRYPTION_KEY (the first one). Prints counts; fails if a value no configured key decrypts."
    )

    def handle(self, *args, **options) -> None:
        result = reencrypt_all()
        print_json(self, result)
        if result["undecryptable"]:
            raise CommandError(
                "Some stored values cannot be decrypted with any configured FIELD_ENCRYPTION_KEY (left unchanged): "
                + ", ".join(result["undecryptable"])
                + ". Add the key they were written with (after the newest) and run this again."
            )
