"""Schemathesis against our own OpenAPI schema (/api/schema/): whatever it generates for the JSON events endpoint,
signed like a real sender, gets no 5xx. Bounded for CI: a fixed number of examples, derandomized."""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from config.wsgi import application
from integration.inbound.signature import sign
from tests.inbound_cases import SECRET

EXAMPLES = 150

# Valid and invalid inputs, NUL characters included. The coverage phase (thousands of systematic cases, about
# 30 s of CPU) runs only on demand (SCHEMATHESIS_COVERAGE=1), so CI stays bounded: the explicit example plus
# EXAMPLES generated ones.
CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "allow-x00": True, "deterministic": True},
        "phases": {
            "coverage": {"enabled": os.environ.get("SCHEMATHESIS_COVERAGE") == "1"},
            "stateful": {"enabled": False},
        },
    }
)
# Loaded once from the running application's own schema view (it needs no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG).include(
    operation_id="centra_events"
)


@schemathesis.hook
def before_call(context, case, kwargs):
    """Sign the exact bytes the transport is about to send, as Centra and the storefront do (before_call hooks
    are global in Schemathesis; this one only touches our inbound operations)."""
    if case.operation.definition.raw.get("operationId") not in ("centra_events", "centra_webhook"):
        return
    serialized = case.operation.schema.transport.serialize_case(case)
    if "json" in serialized:  # the transport would let werkzeug write the JSON: write it here, then sign it
        raw = json.dumps(serialized["json"]).encode()
    else:
        raw = serialized.get("data") or b""
        raw = raw.encode() if isinstance(raw, str) else raw
    kwargs["data"] = raw
    case.headers = {**(case.headers or {}), "X-Centra-Signature": sign(SECRET, raw)}


@pytest.fixture
def in_test_transaction(db):
    # The real WSGI application closes the database connection after each request; inside a test transaction
    # that connection must stay open (Django's own test client disconnects the same handlers).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_input_to_the_events_endpoint_is_a_server_error(case, connection, in_test_transaction):
    case.path_parameters = {"token": connection.token}
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
    # Every request is signed by the hook, so a 401 would mean the hook did not sign what was sent.
    assert response.status_code in (200, 400, 405, 413, 415), response.text[:500]
