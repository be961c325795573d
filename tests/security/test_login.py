"""Admin login is throttled (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for a username from one
address, even the right password is refused until the lockout ends; the password validators are on."""

from __future__ import annotations

import pytest
from django.contrib.auth import password_validation
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.urls import reverse

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple-42"


def login(client, username: str, password: str):
    return client.post(reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"})


def test_repeated_wrong_passwords_lock_the_login(client, settings):
    User.objects.create_superuser("merchant", "m@example.com", PASSWORD)
    User.objects.create_superuser("colleague", "c@example.com", PASSWORD)

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "merchant", "guess").status_code == 200  # the form again, with its error

    # the attempt that reaches the limit, and any after it, is refused, the right password too
    assert login(client, "merchant", "guess").status_code == 429
    locked = login(client, "merchant", PASSWORD)
    assert locked.status_code == 429
    assert "too many login attempts" in locked.content.decode()
    assert "_auth_user_id" not in client.session

    # another user from the same address is not locked out
    assert login(client, "colleague", PASSWORD).status_code == 302


def test_a_successful_login_resets_the_count(client, settings):
    User.objects.create_superuser("merchant", "m@example.com", PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "merchant", "guess")
    assert login(client, "merchant", PASSWORD).status_code == 302
    client.logout()

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "merchant", "guess").status_code == 200


@pytest.mark.parametrize("password", ["short1", "password123456", "12345678901234", "merchant-merchant"])
def test_weak_passwords_are_refused(password):
    user = User(username="merchant-merchant", email="merchant@example.com")
    with pytest.raises(ValidationError):
        password_validation.validate_password(password, user)
    password_validation.validate_password(PASSWORD, user)
