"""RuleClient: Bearer auth, no redirects followed, verify_key, and the key never in messages."""

import socket

import pytest

from integration.rule.client import RuleClient, RuleRequestError, get_client, scrub


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_key_travels_as_a_bearer_header_only(fake_rule):
    client = RuleClient(fake_rule.url, fake_rule.api_key)

    answer = client.send("GET", "/tags", params={"limit": 1})

    assert answer.status_code == 200
    [request] = fake_rule.requests
    assert request["query"] == {"limit": "1"}
    assert fake_rule.api_key not in str(request)
    assert fake_rule.api_key not in repr(client)


def test_verify_key_accepts_a_good_key_and_explains_a_bad_one(fake_rule):
    assert RuleClient(fake_rule.url, fake_rule.api_key).verify_key() == (True, "Rule accepted the API key.")

    ok, message = RuleClient(fake_rule.url, "wrong-key-0000000").verify_key()
    assert not ok and "401 NotAuthorized" in message and "wrong-key" not in message

    ok, message = RuleClient(fake_rule.url, "").verify_key()
    assert (ok, message) == (False, "No Rule API key is set.")


def test_verify_key_reports_an_unreachable_rule():
    ok, message = RuleClient(f"http://127.0.0.1:{free_port()}/api/v2", "some-key-123456789").verify_key()
    assert not ok and message.startswith("Rule could not be reached: connection error")
    assert "some-key-123456789" not in message


def test_a_redirect_is_returned_not_followed(fake_rule):
    fake_rule.fail(301, body={"error": "Moved"})
    answer = RuleClient(fake_rule.url, fake_rule.api_key).send("POST", "/subscribers", json={})
    assert answer.status_code == 301
    assert len(fake_rule.requests) == 1


def test_a_timeout_raises_with_the_key_scrubbed(fake_rule):
    fake_rule.set_latency(800)
    client = RuleClient(fake_rule.url, fake_rule.api_key, timeout=(1, 0.2))
    with pytest.raises(RuleRequestError) as caught:
        client.send("GET", "/tags")
    assert caught.value.kind == "timeout"
    assert fake_rule.api_key not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_timeout_comes_from_settings(settings):
    settings.RULE_CONNECT_TIMEOUT, settings.RULE_READ_TIMEOUT = 2, 7
    assert RuleClient("https://rule.example/api/v2", "k").timeout == (2.0, 7.0)


def test_clients_are_cached_per_account(settings):
    a = get_client("https://rule.example/api/v2", "key-a")
    assert get_client("https://rule.example/api/v2/", "key-a") is a
    assert get_client("https://rule.example/api/v2", "key-b") is not a


def test_scrub_masks_the_key_and_its_start():
    key = "abcdefghijklmnopqrstuvwxyz"
    assert scrub(f"failed for {key} and {key[:14]}", key) == "failed for [api key] and [api key]mn"
