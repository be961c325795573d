"""`make run`: migrate, make sure an admin user exists, then serve the web app and a django-q2 worker together.

Runs on SQLite unless DATABASE_URL says otherwise. Ctrl-C stops both processes.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / ".env"


def ensure_env_file() -> None:
    """First run: write a .env with a random SECRET_KEY and FIELD_ENCRYPTION_KEY (kept out of git)."""
    if ENV_FILE.exists():
        return
    from cryptography.fernet import Fernet

    ENV_FILE.write_text(
        "# Written by `make run` on first start. Keep it: FIELD_ENCRYPTION_KEY decrypts the stored secrets.\n"
        f"SECRET_KEY={secrets.token_urlsafe(48)}\n"
        f"FIELD_ENCRYPTION_KEY={Fernet.generate_key().decode()}\n"
        "DEBUG=true\n"
        "# The fake Rule and fake Centra listen on loopback; never set this in production.\n"
        "ALLOW_PRIVATE_UPSTREAMS=1\n"
    )
    print(f"Wrote {ENV_FILE.name} with a new SECRET_KEY and FIELD_ENCRYPTION_KEY.")


def manage(*args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, check=True)


def ensure_admin() -> None:
    """Create the admin user once; the password comes from ADMIN_PASSWORD or is printed once."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.contrib.auth import get_user_model

    user_model = get_user_model()
    username = os.environ.get("ADMIN_USERNAME", "admin")
    if user_model.objects.filter(username=username).exists():
        print(f"Admin user {username!r} exists (set ADMIN_PASSWORD and delete it to reset).")
        return
    password = os.environ.get("ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=username, email="", password=password)
    if os.environ.get("ADMIN_PASSWORD"):
        print(f"Created admin user {username!r} with the password from ADMIN_PASSWORD.")
    else:
        print(f"Created admin user {username!r} with password: {password}  (shown once)")


def main() -> int:
    os.chdir(ROOT)
    (ROOT / "var").mkdir(exist_ok=True)
    ensure_env_file()
    # Development: the fake Rule and fake Centra listen on loopback (README: Try it locally).
    os.environ.setdefault("ALLOW_PRIVATE_UPSTREAMS", "1")
    manage("migrate", "--noinput")
    ensure_admin()
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    web = subprocess.Popen([sys.executable, "manage.py", "runserver", f"{host}:{port}", "--noreload"], cwd=ROOT)
    worker = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT)
    print(f"\nAdmin: http://{host}:{port}/admin/   (Ctrl-C stops the web app and the worker)\n")
    procs = [web, worker]
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop both below
            while all(p.poll() is None for p in procs):
                time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        deadline = time.time() + 15
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
