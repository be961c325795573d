"""`GET /healthz` and the OpenAPI schema at `/api/schema/`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.db import connection as db_connection
from django.utils import timezone

from tests.factories import DeliveryFactory, InboundEventFactory


def test_healthy_with_the_due_backlog(client, connection):
    # Given two deliveries due now, one due later and one finished
    now = timezone.now()
    DeliveryFactory(connection=connection, status="pending", next_attempt_at=None)
    DeliveryFactory(connection=connection, status="retrying", next_attempt_at=now - timedelta(seconds=5))
    DeliveryFactory(connection=connection, status="retrying", next_attempt_at=now + timedelta(hours=1))
    DeliveryFactory(connection=connection, status="succeeded")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "database": "ok",
        "broker": "ok",
        "due_backlog": 2,
        "inbound_due": 0,
        "inbound_retrying": 0,
        "paused_connections": 0,
    }


def test_inbound_events_waiting_are_counted_apart_from_the_delivery_backlog(client, connection):
    # Given one event due for processing, two waiting for a retry after Centra failed, and one processed
    now = timezone.now()
    InboundEventFactory(connection=connection, status="received")
    for _ in range(2):
        InboundEventFactory(connection=connection, status="received", next_attempt_at=now + timedelta(minutes=2))
    InboundEventFactory(connection=connection, status="processed")
    # When a monitor asks /healthz
    body = client.get("/healthz").json()
    # Then it sees both, and the service is still healthy (Centra being down is not the service being down)
    assert (body["inbound_due"], body["inbound_retrying"], body["due_backlog"]) == (1, 2, 0)
    assert body["database"] == "ok"


def test_a_paused_connection_is_reported_and_the_service_stays_up(client, connection):
    from integration.delivery.engine import pause_connection

    pause_connection(connection, "Rule refused the API key: 401")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["paused_connections"] == 1


def test_a_database_that_does_not_answer_is_503(client, db):
    def refuse(execute, sql, params, many, context):
        raise OperationalError("connection refused")

    with db_connection.execute_wrapper(refuse):
        response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"].startswith("down")
    assert body["broker"].startswith("down")  # the ORM broker is the same database


def test_an_unreachable_redis_broker_is_503(client, db, settings):
    # Given a Redis broker on a port where nothing listens
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": "redis://:hunter2@127.0.0.1:9/0"}
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "ok"
    assert response.json()["broker"].startswith("down")
    assert "hunter2" not in response.content.decode()


def test_post_is_405(client, db):
    assert client.post("/healthz").status_code == 405


@pytest.fixture
def schema(client, db) -> dict:
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_documents_both_inbound_endpoints(schema):
    paths = schema["paths"]
    events = paths["/centra/{token}/events"]["post"]
    webhook = paths["/centra/{token}/webhook"]["post"]
    assert set(events["responses"]) >= {"200", "400", "401", "404", "413", "415", "503"}
    assert "application/json" in events["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in webhook["requestBody"]["content"]
    assert any(p["name"] == "X-Centra-Signature" for p in webhook["parameters"])
    accepted = schema["components"]["schemas"]["InboundAccepted"]["properties"]
    assert set(accepted) == {"accepted", "duplicates"}
    assert "/healthz" in paths
