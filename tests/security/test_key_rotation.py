"""Rotating FIELD_ENCRYPTION_KEY: new key first, `reencrypt_secrets`, then the old key can go (README)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection as db_connection

from integration.models import Connection
from integration.tombstones import email_hash
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

OLD, NEW, LOST = (Fernet.generate_key().decode() for _ in range(3))


def raw_column(conn: Connection, column: str) -> str:
    with db_connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM integration_connection WHERE id = %s", [conn.pk])
        return cursor.fetchone()[0]


def reencrypt() -> dict:
    out = StringIO()
    call_command("reencrypt_secrets", stdout=out)
    return json.loads(out.getvalue())


def test_after_reencrypting_the_old_key_can_be_removed(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    conn = ConnectionFactory(rule_api_key="rule-key-rotate-1234567", centra_api_token="centra-token-abcdefgh")
    hashed_before = email_hash("anna@example.com")  # makes the erasure key, stored encrypted too
    before = raw_column(conn, "rule_api_key")

    # given the new key put first, the old one kept after it
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    result = reencrypt()

    # then every stored secret was re-encrypted, and the new key alone reads them
    assert result["undecryptable"] == [] and result["reencrypted"] >= 4  # key, token, signing secrets, erasure key
    assert raw_column(conn, "rule_api_key") != before
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    conn = Connection.objects.get(pk=conn.pk)
    assert (conn.rule_api_key, conn.centra_api_token) == ("rule-key-rotate-1234567", "centra-token-abcdefgh")
    assert conn.signing_secret_list == ["whsec-test-1"]
    assert email_hash("anna@example.com") == hashed_before  # the erasure key reads back: tombstones keep matching


def test_a_value_no_key_decrypts_is_named_and_left_alone(settings):
    settings.FIELD_ENCRYPTION_KEYS = [LOST]
    conn = ConnectionFactory(rule_api_key="rule-key-lost-1234567")
    lost = raw_column(conn, "rule_api_key")

    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    with pytest.raises(CommandError, match=rf"integration.Connection.rule_api_key #{conn.pk}"):
        reencrypt()
    assert raw_column(conn, "rule_api_key") == lost
