"""The inbound URL token can be rotated (core function, admin action, command) with a grace period for the old
URLs, and never reaches a log line in the clear (runserver and gunicorn access logs)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
import requests
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from integration.inbound.signature import sign
from integration.inbound.tokens import rotate_token
from integration.logmask import mask_token
from integration.models import Connection, InboundEvent
from tests.factories import ConnectionFactory
from tests.processes import database_url
from tests.security.helpers import admin_run_action, messages_of

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET = "whsec-test-1"  # the ConnectionFactory's signing secret


def post_to(client, token: str, event_id: str):
    raw = json.dumps(
        {
            "id": event_id,
            "type": "Newsletter",
            "occurredAt": "2026-11-29T12:00:00Z",
            "email": "anna@example.com",
            "language": "sv",
        }
    ).encode()
    path = reverse("centra-events", args=[token])
    return client.post(
        path, data=raw, content_type="application/json", headers={"X-Centra-Signature": sign(SECRET, raw)}
    )


@pytest.mark.django_db
def test_after_rotation_both_urls_work_for_the_grace_period_then_the_old_one_is_404(client):
    conn = ConnectionFactory()
    old = conn.token

    rotated = rotate_token(conn, timedelta(hours=6))

    assert conn.token != old and conn.events_url().endswith(f"/centra/{conn.token}/events")
    assert rotated.old_url_valid_until > timezone.now() + timedelta(hours=5)
    assert post_to(client, conn.token, "e-new").status_code == 200
    assert post_to(client, old, "e-old").status_code == 200  # Centra not switched over yet: nothing lost
    assert InboundEvent.objects.filter(connection=conn).count() == 2

    # when the grace period is over (the clock moved past it)
    Connection.objects.filter(pk=conn.pk).update(previous_token_expires_at=timezone.now() - timedelta(seconds=1))
    assert post_to(client, old, "e-late").status_code == 404
    assert post_to(client, conn.token, "e-new-2").status_code == 200


@pytest.mark.django_db
def test_a_second_rotation_ends_the_first_old_token_and_grace_zero_ends_at_once(client):
    conn = ConnectionFactory()
    first = conn.token
    rotate_token(conn, timedelta(hours=6))
    second = conn.token

    rotate_token(conn, timedelta(0))

    assert post_to(client, first, "a").status_code == 404
    assert post_to(client, second, "b").status_code == 404
    assert post_to(client, conn.token, "c").status_code == 200


@pytest.mark.django_db
def test_rotate_token_command_prints_the_new_urls_and_the_grace_end():
    conn = ConnectionFactory()
    old = conn.token
    out, err = StringIO(), StringIO()

    call_command("connection", "rotate-token", conn.name, "--grace-hours", "2", stdout=out, stderr=err)

    data = json.loads(out.getvalue())
    conn.refresh_from_db()
    assert data["events_url"] == conn.events_url() and old not in data["events_url"]
    assert data["previous_urls_valid_until"] == conn.previous_token_expires_at.isoformat()
    assert "keep working until" in err.getvalue()


@pytest.mark.django_db
def test_admin_action_rotates_with_the_default_grace(admin_client, settings):
    settings.TOKEN_ROTATION_GRACE_HOURS = 48
    conn = ConnectionFactory()
    old = conn.token

    response = admin_run_action(admin_client, "rotate_token", conn)

    conn.refresh_from_db()
    assert conn.token != old and conn.previous_token == old
    assert timedelta(hours=47) < conn.previous_token_expires_at - timezone.now() <= timedelta(hours=48)
    assert any(conn.webhook_url() in m and "keep working until" in m for m in messages_of(response))


# --- never in a log line ---------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_and_post(command: list[str], port: int, conn: Connection, **extra_env: str) -> str:
    """Start a web server process on the test database, post one signed event and one to an unknown token to
    it, stop it, and return everything it wrote."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "PYTHONUNBUFFERED": "1",
        "LOG_LEVEL": "INFO",
        **extra_env,
    }
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(base + "/healthz", timeout=10)
                break
            except requests.RequestException:  # not listening yet, or still loading the app
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("the server did not start") from None
                time.sleep(0.2)
        raw = json.dumps(
            {"id": "log-1", "type": "Newsletter", "occurredAt": "2026-11-29T12:00:00Z", "email": "anna@example.com"}
        ).encode()
        headers = {"Content-Type": "application/json", "X-Centra-Signature": sign(SECRET, raw)}
        answer = requests.post(conn.events_url(base=base), data=raw, headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        missing = requests.post(base + "/centra/unknown-token-abcdefgh/webhook", data=raw, headers=headers, timeout=10)
        assert missing.status_code in (404, 415)
        time.sleep(0.5)
    finally:
        proc.terminate()
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    return output


@pytest.mark.parametrize("server", ["runserver", "runserver-debug", "gunicorn"])
def test_access_logs_show_the_token_masked(transactional_db, server):
    conn = ConnectionFactory()
    port = free_port()
    if server.startswith("runserver"):
        command = [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]
    else:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "config/gunicorn.conf.py",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{port}",
            "config.wsgi",
        ]

    # With DEBUG on Django adds its own console logging (404 warnings): masked as well.
    output = serve_and_post(command, port, conn, **({"DEBUG": "true"} if server.endswith("debug") else {}))

    assert f"/centra/{mask_token(conn.token)}/events" in output, output[-3000:]
    assert conn.token not in output
    assert "unknown-token-abcdefgh" not in output and "/centra/unkn****/webhook" in output
