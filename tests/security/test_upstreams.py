"""A stored secret (Rule API key, Centra token) goes only to the address it was entered for, over https, at a
public address: a staff user who can edit a connection's URLs but never see its keys cannot walk them out."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from integration.centra.client import verify_token
from integration.delivery.testcall import send_test_calls
from integration.models import Connection, Delivery
from integration.rule.client import RuleClient
from integration.sandbox.fake_rule import FakeRule
from integration.upstream import UpstreamRefused, check_url, origin
from tests.security.helpers import admin_post_change, admin_run_action, messages_of

pytestmark = pytest.mark.django_db

PRIVATE_OFF = override_settings(ALLOW_PRIVATE_UPSTREAMS=False)
PRODUCTION = override_settings(DEBUG=False, SANDBOX=False, ALLOW_PRIVATE_UPSTREAMS=False)


@pytest.fixture
def listener():
    """Somebody else's server: it accepts any key and records what it received."""
    server = FakeRule(api_key="anything-goes-0000").start()
    try:
        yield server
    finally:
        server.stop()


def authorizations(server: FakeRule) -> list[str]:
    return [str(r.get("headers", {}).get("Authorization", "")) for r in server.requests]


def test_changing_the_rule_url_in_the_admin_requires_the_key_again(admin_client, rule_connection, listener):
    # given a connection whose key was entered for the real Rule (here: the fake)
    # when a staff user points the Rule URL at their own listener without typing a key
    response, _ = admin_post_change(admin_client, rule_connection, rule_api_url=listener.url)

    # then the form refuses, naming the address the key belongs to; nothing is stored
    assert response.status_code == 200
    assert "enter the Rule API key again" in response.content.decode()
    rule_connection.refresh_from_db()
    assert rule_connection.rule_api_url != listener.url

    # and "Verify Rule API key" still talks only to the address the key was entered for
    response = admin_run_action(admin_client, "verify_rule_api_key", rule_connection)
    assert listener.requests == []
    assert any("Rule accepted the API key" in m for m in messages_of(response))


def test_a_url_moved_behind_the_forms_back_sends_the_key_nowhere(admin_client, rule_connection, listener):
    # given the URL changed without the form (a raw UPDATE: the key stays bound to the old origin)
    Connection.objects.filter(pk=rule_connection.pk).update(rule_api_url=listener.url)

    # when someone verifies the key and sends a test call
    response = admin_run_action(admin_client, "verify_rule_api_key", rule_connection)
    conn = Connection.objects.get(pk=rule_connection.pk)
    results = send_test_calls(conn)

    # then the listener never received the key, and the admin says why
    assert listener.requests == []
    [message] = [m for m in messages_of(response) if rule_connection.name in m]
    assert "entered for" in message and "enter the key again" in message
    assert results and not any(r.ok for r in results)
    assert all("entered for" in (d.last_error or d.attempts.first().error) for d in Delivery.objects.all())


def test_saving_the_url_with_the_key_binds_the_key_to_the_new_address(admin_client, rule_connection, listener):
    response, _ = admin_post_change(
        admin_client, rule_connection, rule_api_url=listener.url, new_rule_api_key="anything-goes-0000"
    )

    assert response.status_code == 302
    conn = Connection.objects.get(pk=rule_connection.pk)
    assert conn.rule_api_key_origin == origin(listener.url)
    ok, _message = RuleClient.for_connection(conn).verify_key()
    assert ok and authorizations(listener) == ["Bearer ****0000"]  # the fake records the key masked


def test_a_kept_key_is_cleared_when_code_moves_its_url(rule_connection, listener):
    # given code (not the form) that changes only the URL
    rule_connection.rule_api_url = listener.url
    rule_connection.save()

    # then the key entered for the old address is gone rather than sent to the new one
    conn = Connection.objects.get(pk=rule_connection.pk)
    assert conn.rule_api_key == "" and conn.rule_api_key_origin == ""


def test_the_connection_command_needs_the_key_again_for_a_new_url(rule_connection, listener):
    with pytest.raises(CommandError, match="give --rule-api-key again"):
        call_command("connection", "upsert", rule_connection.name, "--rule-api-url", listener.url)
    conn = Connection.objects.get(pk=rule_connection.pk)
    conn.centra_api_url, conn.centra_api_token = "https://shop.centra.com/graphql", "centra-token-1234567"
    conn.save()
    with pytest.raises(CommandError, match="give --centra-api-token again"):
        call_command("connection", "upsert", conn.name, "--centra-api-url", listener.url + "/graphql")
    assert Connection.objects.get(pk=conn.pk).centra_api_token == "centra-token-1234567"

    # with the key given again it is accepted and bound to the new address
    call_command(
        "connection", "upsert", rule_connection.name, "--rule-api-url", listener.url, "--rule-api-key", "k-123456789"
    )
    assert Connection.objects.get(pk=rule_connection.pk).rule_api_key_origin == origin(listener.url)


def test_the_centra_token_goes_only_to_its_own_host(centra_connection, listener):
    # given the Centra URL moved behind the form's back to somebody else's server
    Connection.objects.filter(pk=centra_connection.pk).update(centra_api_url=listener.url + "/graphql")

    ok, message = verify_token(Connection.objects.get(pk=centra_connection.pk))

    assert not ok and "entered for" in message
    assert listener.requests == []


# --- addresses -------------------------------------------------------------------------------------------------


@PRIVATE_OFF
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8025/api/v2",
        "http://localhost:8025/api/v2",  # a name that resolves to loopback
        "https://10.1.2.3/api/v2",
        "https://192.168.0.10/graphql",
        "https://169.254.169.254/latest/meta-data",  # link-local: cloud metadata
        "https://[::1]/api/v2",
        "https://[::ffff:127.0.0.1]/api/v2",
        "https://100.64.0.1/api/v2",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused_when_saving(url):
    with pytest.raises(UpstreamRefused, match="non-public address"):
        check_url(url)


@PRIVATE_OFF
def test_the_admin_form_names_the_refused_address(admin_client, rule_connection):
    response, _ = admin_post_change(
        admin_client,
        rule_connection,
        rule_api_url="https://169.254.169.254/api/v2",
        new_rule_api_key="rule-key-0123456789",
    )

    assert response.status_code == 200
    assert "169.254.169.254 is a private, loopback, link-local" in response.content.decode()


def test_private_addresses_are_refused_when_calling_too(rule_connection, fake_rule):
    # given a connection saved while private upstreams were allowed (e.g. before an upgrade)
    conn = Connection.objects.get(pk=rule_connection.pk)

    # when the environment no longer allows them: the address connected to is checked, nothing is sent
    with PRIVATE_OFF:
        ok, message = RuleClient.for_connection(conn).verify_key()
        results = send_test_calls(conn)

    assert not ok and "non-public address" in message
    assert fake_rule.requests == []
    assert results and not any(r.ok for r in results)
    attempt = Delivery.objects.first().attempts.get()
    assert attempt.status_code is None and "non-public address" in attempt.error and attempt.response_body == ""


def test_allow_private_upstreams_lets_the_local_fakes_be_used(rule_connection, fake_rule):
    # the tests run with ALLOW_PRIVATE_UPSTREAMS=1 (tests/settings.py), as `make run` does
    ok, _ = RuleClient.for_connection(rule_connection).verify_key()
    assert ok and len(fake_rule.requests) == 1


@PRODUCTION
def test_outside_development_only_https_is_accepted():
    with pytest.raises(UpstreamRefused, match="use https://"):
        check_url("http://app.rule.io/api/v2")
    check_url("https://app.rule.io/api/v2")  # public https is fine (a name that does not resolve here too)


@PRODUCTION
def test_outside_development_an_http_url_is_not_called(rule_connection, fake_rule):
    ok, message = RuleClient.for_connection(rule_connection).verify_key()
    assert not ok and "use https://" in message
    assert fake_rule.requests == []


def test_credentials_in_the_url_are_refused():
    with pytest.raises(UpstreamRefused, match="user and password"):
        check_url("https://user:pass@app.rule.io/api/v2")
