"""Rule's budget, respected: paced calls, Rule's counters read, and a circuit breaker that holds a connection while
Rule fails. Deliveries go through the engine to the fake Rule over real HTTP; the fake enforces a budget per key
(429 with a Stockholm Retry-After) and can answer 503 for a while. Time is moved by writing the moments the
budget waits for (the next slot, the next probe), never by sleeping through them."""

from datetime import timedelta

import pytest
from django.utils import timezone

from integration.delivery import engine
from integration.models import Connection, Delivery
from integration.rule import budget
from integration.rule.budget import RuleBudget

S = Delivery.Status


def body(email: str) -> dict:
    return {
        "update_on_duplicate": True,
        "automation": "reset",
        "tags": ["OrderShipped"],
        "subscribers": {"email": email},
    }


def make_deliveries(connection, count: int) -> list[Delivery]:
    return [
        engine.create_delivery(
            connection=connection,
            event="OrderShipped",
            body=body(f"shopper{n}@example.com"),
            email=f"shopper{n}@example.com",
            idempotency_key=f"OrderShipped:{n}",
        )
        for n in range(count)
    ]


def deliver_due(connection) -> list[str]:
    """What a worker does with every due delivery of the connection (the sweeper's list), in id order."""
    ids = list(Delivery.objects.filter(connection=connection).due().order_by("pk").values_list("pk", flat=True))
    return [engine.deliver(pk) for pk in ids]


def posts(fake_rule, status: int | None = None) -> list[dict]:
    return [r for r in fake_rule.requests if r["method"] == "POST" and (status is None or r["status"] == status)]


def next_slot_now(connection) -> None:
    """The clock reaches the next pacing slot."""
    RuleBudget.objects.filter(connection=connection).update(next_slot_at=timezone.now())
    Delivery.objects.filter(connection=connection).waiting().update(next_attempt_at=timezone.now())


def next_check_now(connection) -> None:
    """The clock reaches the breaker's next check: the connection's hold ends and everything waiting is due."""
    RuleBudget.objects.filter(connection=connection).update(next_probe_at=timezone.now())
    Connection.objects.filter(pk=connection.pk).update(hold_until=None)
    Delivery.objects.filter(connection=connection).waiting().update(next_attempt_at=timezone.now())


# ---------------------------------------------------------------- pacing


def test_calls_are_spaced_at_the_ceiling_and_short_waits_are_slept(rule_connection, fake_rule):
    budget.budget_for(rule_connection)
    RuleBudget.objects.filter(connection=rule_connection).update(calls_per_minute=150)  # one call every 0.4 s
    make_deliveries(rule_connection, 4)

    assert deliver_due(rule_connection) == ["succeeded"] * 4

    times = [r["at"] for r in posts(fake_rule)]
    assert len(times) == 4
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert times[-1] - times[0] >= 1.0 and min(gaps) >= 0.25  # 0.4 s apart, less a loaded machine's jitter


def test_pacing_provokes_no_429_from_a_rule_set_to_the_same_ceiling(rule_connection, fake_rule, settings):
    # given Rule allows 5 calls a minute and the connection's ceiling says the same
    fake_rule.set_budget(5)
    budget.budget_for(rule_connection)
    RuleBudget.objects.filter(connection=rule_connection).update(calls_per_minute=5)  # one call every 12 s
    deliveries = make_deliveries(rule_connection, 8)

    # when a worker goes through all of them
    outcomes = deliver_due(rule_connection)

    # then one goes now and the others wait for their slot, uncounted and without an attempt
    assert outcomes == ["succeeded"] + ["paced"] * 7
    assert len(posts(fake_rule)) == 1 and posts(fake_rule, 429) == []
    slot = RuleBudget.objects.get(connection=rule_connection).next_slot_at
    for d in deliveries[1:]:
        d.refresh_from_db()
        assert (d.status, d.attempt_count, d.attempts.count()) == (S.PENDING, 0, 0)
        assert d.next_attempt_at == slot

    # and at each slot one more goes: never a 429
    for _ in range(4):
        next_slot_now(rule_connection)
        assert deliver_due(rule_connection).count("succeeded") == 1
    assert len(posts(fake_rule)) == 5 and posts(fake_rule, 429) == []


def test_rules_counters_slow_us_down_before_a_429(rule_connection, fake_rule, settings):
    # given Rule allows 10 calls a minute while our ceiling is far higher (the account's allowance is smaller)
    settings.RULE_PACING_MAX_SLEEP = 0.5
    fake_rule.set_budget(10)
    make_deliveries(rule_connection, 14)

    outcomes = deliver_due(rule_connection)

    # then once Rule reports 90 % of its allowance used, the next call waits for Rule's pace (6 s a call here)
    assert outcomes[:9] == ["succeeded"] * 9
    assert set(outcomes[9:]) == {"paced"}
    assert posts(fake_rule, 429) == []
    row = RuleBudget.objects.get(connection=rule_connection)
    assert (row.rule_requests_allowed, row.rule_requests_current) == (10, 9)
    assert row.next_slot_at >= timezone.now() + timedelta(seconds=5)

    # and with the allowance used up, nothing goes for a minute
    next_slot_now(rule_connection)
    assert deliver_due(rule_connection).count("succeeded") == 1
    assert RuleBudget.objects.get(connection=rule_connection).next_slot_at >= timezone.now() + timedelta(seconds=55)
    Delivery.objects.filter(connection=rule_connection).waiting().update(next_attempt_at=timezone.now())
    assert set(deliver_due(rule_connection)) == {"paced"}
    assert posts(fake_rule, 429) == []


def test_a_high_failing_share_holds_the_connection(rule_connection, fake_rule):
    # given Rule reports that a third of the calls failed (its limit is 49 %)
    fake_rule.set_budget(100)
    make_deliveries(rule_connection, 4)
    fake_rule.fail(400, times=1)

    outcomes = deliver_due(rule_connection)

    # then the first failure (100 % of one call) holds everything for 30 s instead of adding calls
    assert outcomes == ["failed", "paced", "paced", "paced"]
    row = RuleBudget.objects.get(connection=rule_connection)
    assert row.rule_error_percent_current == 100 and row.rule_error_percent_limit == 49
    assert row.next_slot_at >= timezone.now() + timedelta(seconds=25)


# ---------------------------------------------------------------- the breaker


def test_the_breaker_holds_probes_once_per_check_and_delivers_everything_once_after(rule_connection, fake_rule):
    fake_rule.outage(600)
    deliveries = make_deliveries(rule_connection, 8)

    # when Rule fails 3 calls in a row the breaker opens: the others are not sent to fail one by one
    assert budget.BREAKER_FAILURES == 3
    outcomes = deliver_due(rule_connection)
    assert outcomes[:3] == ["retry"] * 3
    assert len(posts(fake_rule)) == 3
    row = RuleBudget.objects.get(connection=rule_connection)
    assert row.is_open and row.probe_backoff == 15
    assert row.next_probe_at >= timezone.now() + timedelta(seconds=13)
    held = Delivery.objects.filter(connection=rule_connection, attempt_count=0)
    assert held.count() == 5 and all(d.attempts.count() == 0 for d in held)

    # when the check is due, every due delivery is tried by a worker, but only one call reaches Rule
    for backoff in (30, 60, 120):
        before = len(posts(fake_rule))
        next_check_now(rule_connection)
        outcomes = deliver_due(rule_connection)
        assert len(posts(fake_rule)) == before + 1
        assert outcomes.count("retry") == 1 and "succeeded" not in outcomes
        row.refresh_from_db()
        assert row.is_open and row.probe_backoff == backoff
        assert row.next_probe_at >= timezone.now() + timedelta(seconds=backoff - 2)

    # and held deliveries used none of their retries
    for d in Delivery.objects.filter(connection=rule_connection):
        assert (
            d.attempt_count
            == d.attempts.count()
            == sum(1 for r in posts(fake_rule) if r["json"]["subscribers"]["email"] == d.email)
        )

    # when Rule is back, the next check succeeds, closes the breaker and releases everything waiting: the held
    # deliveries and those whose calls failed during the outage (without waiting out their retry step)
    fake_rule.outage(0)
    next_check_now(rule_connection)
    first = deliver_due(rule_connection)
    assert first[0] == "succeeded"
    row.refresh_from_db()
    assert not row.is_open and row.failures_in_row == 0
    assert Connection.objects.get(pk=rule_connection.pk).hold_until is None
    assert not Delivery.objects.filter(connection=rule_connection).waiting().exists()  # nothing left for later

    # then each delivery reached Rule successfully exactly once
    assert Delivery.objects.filter(connection=rule_connection, status=S.SUCCEEDED).count() == 8
    ok = [r["json"]["subscribers"]["email"] for r in posts(fake_rule, 200)]
    assert sorted(ok) == sorted(d.email for d in deliveries)


def test_closing_the_breaker_sends_at_once_the_calls_that_failed_during_the_outage(rule_connection, fake_rule):
    fake_rule.outage(600)
    make_deliveries(rule_connection, budget.BREAKER_FAILURES + 1)
    deliver_due(rule_connection)  # the first calls fail and open the breaker; the last delivery is held
    failed = Delivery.objects.filter(connection=rule_connection, status=S.RETRYING, attempt_count=1)
    assert failed.count() == budget.BREAKER_FAILURES
    assert all(d.next_attempt_at > timezone.now() + timedelta(seconds=20) for d in failed)  # their retry step

    # Rule is back; the clock reaches the breaker's check (and the held delivery), not the failed ones' retries
    fake_rule.outage(0)
    now = timezone.now()
    RuleBudget.objects.filter(connection=rule_connection).update(next_probe_at=now)
    Connection.objects.filter(pk=rule_connection.pk).update(hold_until=now)
    Delivery.objects.filter(connection=rule_connection, attempt_count=0).update(next_attempt_at=now)
    assert deliver_due(rule_connection) == ["succeeded"]  # the probe

    # the breaker closed, and what failed while Rule was down is due now, not in 30 s to 10 min
    assert not RuleBudget.objects.get(connection=rule_connection).is_open
    assert Delivery.objects.filter(connection=rule_connection).due().count() == budget.BREAKER_FAILURES
    assert deliver_due(rule_connection) == ["succeeded"] * budget.BREAKER_FAILURES


def test_only_one_worker_wins_the_probe(rule_connection, fake_rule):
    budget.budget_for(rule_connection)
    now = timezone.now()
    RuleBudget.objects.filter(connection=rule_connection).update(
        breaker_opened_at=now, next_probe_at=now, probe_backoff=15
    )
    first, second = budget.before_call(rule_connection), budget.before_call(rule_connection)
    assert (first.kind, second.kind) == (budget.PROBE, budget.HELD)
    assert second.until == first.until  # the others wait until the probe's answer is due at the latest
    assert Connection.objects.get(pk=rule_connection.pk).hold_until == first.until


def test_an_answer_that_is_not_a_failure_closes_the_breaker(rule_connection, fake_rule):
    """A 400 is Rule answering: it proves Rule is up (the delivery itself fails on its own merits)."""
    make_deliveries(rule_connection, 2)
    budget.budget_for(rule_connection)
    now = timezone.now()
    RuleBudget.objects.filter(connection=rule_connection).update(
        breaker_opened_at=now, next_probe_at=now, probe_backoff=60, failures_in_row=7
    )
    fake_rule.fail(400)
    assert deliver_due(rule_connection)[0] == "failed"
    row = RuleBudget.objects.get(connection=rule_connection)
    assert not row.is_open and row.failures_in_row == 0


def test_failures_apart_do_not_open_the_breaker(rule_connection, fake_rule):
    for round in range(2):  # 2 failures and a success, twice: 4 failures, never 3 in a row
        fake_rule.fail(503, times=2)
        for n in range(3):
            engine.create_delivery(
                connection=rule_connection,
                event="OrderShipped",
                body=body(f"round{round}-{n}@example.com"),
                email=f"round{round}-{n}@example.com",
                idempotency_key=f"OrderShipped:{round}:{n}",
            )
        assert deliver_due(rule_connection) == ["retry"] * 2 + ["succeeded"]
    assert not RuleBudget.objects.get(connection=rule_connection).is_open
    assert len(posts(fake_rule, 503)) == 4


def test_a_history_import_waits_while_the_breaker_is_open(rule_connection):
    budget.budget_for(rule_connection)
    now = timezone.now()
    RuleBudget.objects.filter(connection=rule_connection).update(
        breaker_opened_at=now, next_probe_at=now + timedelta(seconds=40), probe_backoff=30
    )
    assert budget.take(rule_connection, now) == pytest.approx(40)
    RuleBudget.objects.filter(connection=rule_connection).update(next_probe_at=now)
    assert budget.take(rule_connection, now) == 0.0  # its call is the probe
    assert budget.take(rule_connection, now) > 0


# ---------------------------------------------------------------- what the merchant sees


def open_breaker(connection, *, next_check_in: int = 60) -> None:
    budget.budget_for(connection)
    now = timezone.now()
    RuleBudget.objects.filter(connection=connection).update(
        breaker_opened_at=now - timedelta(minutes=3),
        next_probe_at=now + timedelta(seconds=next_check_in),
        probe_backoff=60,
        failures_in_row=7,
        last_failure="Rule answered 503",
    )
    Connection.objects.filter(pk=connection.pk).update(hold_until=now + timedelta(seconds=next_check_in))


def test_the_connection_page_says_rule_is_failing_and_when_it_checks_next(admin_client, rule_connection):
    from django.urls import reverse

    rule_connection.signing_secrets = "whsec_test"
    rule_connection.save()
    open_breaker(rule_connection)
    page = admin_client.get(reverse("admin:integration_connection_change", args=[rule_connection.pk]))
    text = page.content.decode()
    next_check = timezone.localtime(RuleBudget.objects.get(connection=rule_connection).next_probe_at)
    assert "Rule is failing" in text
    assert "Rule answered 503, 7 calls in a row: deliveries are held, nothing is lost." in text
    assert f"Next check at {next_check:%H:%M:%S}" in text
    assert "Check Rule now" in text
    assert "Pace towards Rule: 1,200 calls a minute, 0 used in the last minute." in text


def test_check_rule_now_sends_one_call_and_closing_releases_the_rest(
    admin_client, rule_connection, fake_rule, django_capture_on_commit_callbacks, task_queue
):
    from django.urls import reverse

    make_deliveries(rule_connection, 3)
    open_breaker(rule_connection, next_check_in=240)
    held_until = Connection.objects.get(pk=rule_connection.pk).hold_until
    Delivery.objects.filter(connection=rule_connection).update(next_attempt_at=held_until)  # as the hold left them

    url = reverse("admin:integration_connection_do", args=[rule_connection.pk, "check_rule"])
    with django_capture_on_commit_callbacks(execute=True):
        answer = admin_client.post(url, follow=True)
    assert "Checking Rule now" in answer.content.decode()
    task_queue.drain()

    assert Delivery.objects.filter(connection=rule_connection, status=S.SUCCEEDED).count() == 3
    assert not RuleBudget.objects.get(connection=rule_connection).is_open
    # the three went together once the probe's call answered (they share an envelope: one call may hold them)
    sent = [r["json"]["subscribers"] for r in posts(fake_rule)]
    assert sum(len(s) if isinstance(s, list) else 1 for s in sent) == 3


def test_the_ceiling_is_edited_on_the_connection_page(admin_client, rule_connection):
    from tests.test_admin import post_change

    answer, _ = post_change(admin_client, rule_connection, rule_calls_per_minute="90")
    assert answer.status_code == 302
    assert budget.calls_per_minute(rule_connection) == 90
    answer, _ = post_change(admin_client, rule_connection, rule_calls_per_minute="0")
    assert answer.status_code == 200 and budget.calls_per_minute(rule_connection) == 90


def test_the_delivery_list_says_why_deliveries_wait(admin_client, rule_connection, fake_rule):
    from tests.test_admin import changelist_url

    budget.budget_for(rule_connection)
    RuleBudget.objects.filter(connection=rule_connection).update(calls_per_minute=5)
    make_deliveries(rule_connection, 2)
    assert deliver_due(rule_connection) == ["succeeded", "paced"]
    page = admin_client.get(changelist_url(Delivery)).content.decode()
    assert "Waits its turn in the connection&#x27;s pace towards Rule; it goes at" in page

    open_breaker(rule_connection)
    page = admin_client.get(changelist_url(Delivery)).content.decode()
    assert "Waits: Rule is failing; the next check is at" in page
