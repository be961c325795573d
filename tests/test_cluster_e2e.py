"""One end-to-end run with a real `manage.py qcluster` worker on the ORM broker: a signed OrderCompleted posted
to the events URL reaches the fake Rule with the right tag and fields, without anything run by hand."""

import json
import subprocess
import uuid
from pathlib import Path

import pytest
import requests
from django_q.conf import Conf

from integration.inbound.signature import HEADER, sign
from integration.mapping.samples import sample
from integration.models import Delivery, InboundEvent
from integration.queue import shared_broker
from tests.factories import ConnectionFactory
from tests.processes import manage, wait_for

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec-cluster-e2e"


@pytest.mark.cluster
def test_a_signed_order_completed_reaches_rule_through_a_real_worker(
    transactional_db, live_server, fake_rule, monkeypatch, request
):
    # given a connection pointing at the fake Rule, and a worker process on the test database
    # (set to remove the cart tag from every shopper, as after a move from another plug-in that set cart tags)
    connection = ConnectionFactory(
        rule_api_url=fake_rule.url,
        rule_api_key=fake_rule.api_key,
        signing_secrets=SECRET,
        remove_cart_tag_always=True,
    )
    cluster_name = f"e2e-{uuid.uuid4().hex[:10]}"
    # This process (the live server's view) must enqueue on the worker's queue, named and signed with its name.
    monkeypatch.setattr(Conf, "CLUSTER_NAME", cluster_name)
    monkeypatch.setattr(Conf, "PREFIX", cluster_name)
    # The inbound view keeps one broker per process (bound to the queue name it first saw): start afresh.
    shared_broker.cache_clear()
    request.addfinalizer(shared_broker.cache_clear)
    worker = manage("qcluster", Q_CLUSTER_NAME=cluster_name, Q_WORKERS="1")
    try:
        # when the shop posts a signed OrderCompleted for order 5001
        payload = sample("OrderCompleted")
        payload["order"]["number"] = 5001
        payload["order"]["customer"]["email"] = "e2e.shopper@example.com"
        payload["order"]["shippingAddress"]["email"] = "e2e.shopper@example.com"
        payload["order"]["billingAddress"]["email"] = "e2e.shopper@example.com"
        raw = json.dumps(
            {"id": "e2e-1", "type": "OrderCompleted", "occurredAt": "2026-11-29T11:00:00Z", **payload}
        ).encode()
        answer = requests.post(
            connection.events_url(base=live_server.url),
            data=raw,
            timeout=10,
            headers={"Content-Type": "application/json", HEADER: sign(SECRET, raw)},
        )
        assert answer.status_code == 200, answer.text

        # then, within seconds, the worker has processed it and Rule has the subscriber with the tag and fields
        posted = wait_for(lambda: [r for r in fake_rule.requests if r["path"] == "/api/v2/subscribers"])
        removal = wait_for(lambda: [r for r in fake_rule.requests if r["method"] == "DELETE"])
        succeeded = wait_for(lambda: Delivery.objects.filter(status="succeeded").count() == 2)
    finally:
        worker.terminate()
        try:
            output, _ = worker.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            output, _ = worker.communicate()

    assert posted, f"Rule received nothing; worker said:\n{output[-3000:]}"
    [request] = posted
    sent = request["json"]
    assert sent["tags"] == ["OrderCompleted"]
    assert sent["update_on_duplicate"] is True
    assert sent["subscribers"]["email"] == "e2e.shopper@example.com"
    fields = {f["key"]: f["value"] for f in sent["subscribers"]["fields"]}
    assert fields["Order.Number"] == "5001"
    assert fake_rule.subscriber("e2e.shopper@example.com")["tags"] == ["OrderCompleted"]
    # the cart tag removal followed it (this shopper held no cart tag, so Rule's 404 counts as done)
    assert removal and removal[0]["path"] == "/api/v2/subscribers/e2e.shopper%40example.com/tags/OrderCreated"
    assert succeeded, list(Delivery.objects.values_list("event", "status", "last_error"))
    assert InboundEvent.objects.get().status == InboundEvent.Status.PROCESSED
    order = Delivery.objects.get(event="OrderCompleted")
    assert (order.order_number, order.attempts.get().status_code) == ("5001", 200)
