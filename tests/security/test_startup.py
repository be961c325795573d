"""Start-up refuses the repository's constants as keys when DEBUG is off, and `check --deploy` is clean with the
documented production settings (docs/production.env). Each case starts a real process with a bare environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent.parent
PRODUCTION_ENV = ROOT / "docs" / "production.env"


def bare_env(**values: str) -> dict:
    """Only what a service would be given: no test settings, no .env file from the checkout."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", ENV_FILE=os.devnull, PYTHONPATH=str(ROOT))
    env.update(values)
    return env


def manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({}, "SECRET_KEY"),
        ({"FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode()}, "SECRET_KEY"),
        ({"SECRET_KEY": "a-real-secret-key-" + "x" * 40}, "FIELD_ENCRYPTION_KEY"),
    ],
)
def test_with_debug_off_the_service_refuses_to_start_without_its_keys(given, missing):
    result = manage("check", env=bare_env(DEBUG="false", **given))

    assert result.returncode != 0
    assert f"ImproperlyConfigured: {missing} is not set" in result.stderr


def test_with_both_keys_it_starts_and_with_debug_on_it_needs_none():
    keys = {"SECRET_KEY": "a-real-secret-key-" + "x" * 40, "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    assert manage("check", env=bare_env(DEBUG="false", **keys)).returncode == 0
    assert manage("check", env=bare_env(DEBUG="true")).returncode == 0


def production_values() -> dict:
    """docs/production.env with its <placeholders> filled the way an operator would."""
    values = {}
    for line in PRODUCTION_ENV.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, _, value = line.partition("=")
        values[key.strip()] = value.strip()
    values["SECRET_KEY"] = "prod-" + os.urandom(40).hex()
    values["FIELD_ENCRYPTION_KEY"] = Fernet.generate_key().decode()
    return {k: re.sub(r"<[^>]*>", "filled-in", v) for k, v in values.items()}


def test_check_deploy_is_clean_with_the_documented_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=bare_env(**production_values()))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_complains_without_them():
    env = bare_env(DEBUG="false", SECRET_KEY="prod-" + os.urandom(40).hex(), FIELD_ENCRYPTION_KEY="k" * 40)
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode != 0
    for check in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert check in result.stdout + result.stderr
