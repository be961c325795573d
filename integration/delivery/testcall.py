"""Test calls: every enabled flow's sample payload sent now to the connection's test email (admin and command)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from integration import catalog
from integration.models import Connection, Delivery

ANSWER_LIMIT = 300


class TestCallError(Exception):
    """The connection cannot send test calls at all (e.g. no test email)."""

    __test__ = False  # not a pytest test class, despite the name


@dataclass
class TestCallResult:
    """What happened to one flow's test call, fit for an admin message or JSON."""

    __test__ = False

    event: str
    ok: bool
    status: str
    status_code: int | None
    answer: str
    seconds: float
    delivery_id: int | None

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line: event, outcome, Rule's status and answer, and the time it took."""
        code = f"HTTP {self.status_code}" if self.status_code is not None else "no HTTP answer"
        answer = f": {self.answer}" if self.answer else ""
        return f"{self.event}: {self.status} ({code}, {self.seconds:.2f} s){answer}"


def enabled_flows(connection: Connection) -> list:
    """The connection's enabled flows in catalog order; OrderPlaced only in manual-confirmation mode,
    the only mode in which it is ever sent."""
    order = {name: index for index, name in enumerate(catalog.EVENTS)}
    flows = [
        f for f in connection.flows.all() if f.enabled and (connection.manual_confirmation or not _manual_only(f.event))
    ]
    return sorted(flows, key=lambda f: order.get(f.event, len(order)))


def _manual_only(event: str) -> bool:
    spec = catalog.EVENTS.get(event)
    return bool(spec and spec.manual_mode_only)


def send_test_calls(connection: Connection) -> list[TestCallResult]:
    """For each enabled flow: store a `test` delivery of the sample to the test email and send it now."""
    if not connection.test_email:
        raise TestCallError(f"Connection {connection.name} has no test email; set one to send test calls.")
    return [send_test_call(connection, flow.event) for flow in enabled_flows(connection)]


def send_test_call(connection: Connection, event: str) -> TestCallResult:
    """One flow's test call, synchronously; failures become a result, never an exception."""
    # Imported here: these modules pull in mapping and delivery, which import the models in turn.
    from integration.delivery import engine as delivery_module
    from integration.processing import emit

    started = time.monotonic()
    spec = catalog.EVENTS.get(event)
    payload = spec.sample if spec is not None else None
    if payload is None:
        return TestCallResult(event, False, "no sample", None, "no sample payload for this event", 0.0, None)
    try:
        delivery = emit.emit_event(
            connection, event, payload, trigger=Delivery.Trigger.TEST, email_override=connection.test_email
        )
    except Exception as exc:  # a mapping problem belongs in the message, not in a 500 page
        return TestCallResult(event, False, "not sent", None, str(exc)[:ANSWER_LIMIT], _since(started), None)
    if delivery is None:
        return TestCallResult(event, False, "not sent", None, "the flow is disabled", _since(started), None)
    try:
        attempt = delivery_module.send_now(delivery)
    except Exception as exc:  # shown to the merchant; the delivery row keeps the full story
        delivery.refresh_from_db()
        return TestCallResult(
            event,
            False,
            delivery.status,
            None,
            f"{exc.__class__.__name__}: {exc}"[:ANSWER_LIMIT],
            _since(started),
            delivery.pk,
        )
    seconds = _since(started)
    delivery.refresh_from_db()
    status_code = attempt.status_code if attempt else None
    answer = (attempt.response_body or attempt.error or "").strip() if attempt else ""
    if not answer:
        answer = delivery.last_error
    return TestCallResult(
        event=event,
        ok=delivery.status == Delivery.Status.SUCCEEDED,
        status=delivery.status,
        status_code=status_code,
        answer=" ".join(answer.split())[:ANSWER_LIMIT],
        seconds=round(seconds, 3),
        delivery_id=delivery.pk,
    )


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


@dataclass
class TestCallReport:
    """A whole test call: every enabled flow's result, and one summary a merchant can read."""

    __test__ = False

    connection: Connection
    results: list[TestCallResult]
    not_sent: str = ""  # why nothing was sent at all (paused, no test email, no enabled flow)

    @property
    def sent(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def ok(self) -> bool:
        return not self.not_sent and bool(self.results) and self.sent == len(self.results)

    def causes(self) -> dict[str, list[str]]:
        """The failures grouped by cause, each with the events it hit (in catalog order)."""
        grouped: dict[str, list[str]] = {}
        for result in self.results:
            if not result.ok:
                grouped.setdefault(failure_cause(result), []).append(result.event)
        return grouped

    def summary(self) -> str:
        """One line: sent n of m to the test email; the failures by cause."""
        if self.not_sent:
            return f"Test call not sent: {self.not_sent}"
        head = f"Test call: {self.sent} of {len(self.results)} flows sent to {self.connection.test_email}."
        parts = [f"{cause}: {', '.join(events)}." for cause, events in self.causes().items()]
        return " ".join([head, *parts])


def failure_cause(result: TestCallResult) -> str:
    """Why one flow's test call did not succeed, in words that group alike failures together."""
    code = result.status_code
    if result.status == SKIPPED:
        return "Not sent, the connection was paused by an earlier answer"
    if code in (401, 403):
        return f"Rule refused the API key ({code}), so the connection is paused"
    if code == 429:
        return "Rule asked to slow down (429); they go when the hold ends"
    if code is None and result.status == "not sent":
        return f"Could not be built ({result.answer})"
    if code is None:
        return f"Rule could not be reached ({result.answer})"
    if code >= 500:
        return f"Rule had an error ({code}); retried later"
    return f"Rule rejected the request ({code}: {result.answer})"


SKIPPED = "skipped"


def run_test_call(connection: Connection) -> TestCallReport:
    """The admin's Send test call: nothing on a paused connection; once Rule refuses the key (the connection
    pauses), the remaining flows are reported as not sent instead of being tried one by one."""
    connection.refresh_from_db()
    if connection.is_paused:
        reason = f" ({connection.paused_reason})" if connection.paused_reason else ""
        return TestCallReport(connection, [], f"the connection is paused{reason}. Resume it first.")
    if not connection.test_email:
        return TestCallReport(connection, [], "the connection has no test email; set one and save.")
    flows = enabled_flows(connection)
    if not flows:
        return TestCallReport(connection, [], "no flow is enabled.")
    results = []
    for flow in flows:
        if connection.is_paused:
            results.append(TestCallResult(flow.event, False, SKIPPED, None, "", 0.0, None))
            continue
        result = send_test_call(connection, flow.event)
        results.append(result)
        if result.status_code in (401, 403):
            connection.refresh_from_db(fields=["status", "paused_reason"])
    return TestCallReport(connection, results)
