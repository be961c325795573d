"""A connection's setup: verifying the Rule key (remembered for the checklist) and what is left to do."""

from __future__ import annotations

from dataclasses import dataclass

from django.utils import timezone

from integration.models import Connection, Delivery, InboundEvent


@dataclass(frozen=True)
class Step:
    """One line of the setup checklist: done or not, and what to do while it is not."""

    key: str
    label: str
    done: bool
    todo: str


def verify_rule_key(conn: Connection) -> tuple[bool, str]:
    """Ask Rule whether it accepts the stored key; a success is remembered (rule_key_verified_at)."""
    from integration.rule.client import RuleClient

    client = RuleClient.for_connection(conn)  # the key goes only to the address it was entered for
    try:
        ok, message = client.verify_key()
    finally:
        client.session.close()
    conn.rule_key_verified_at = timezone.now() if ok else None
    Connection.objects.filter(pk=conn.pk).update(rule_key_verified_at=conn.rule_key_verified_at)
    return ok, message


def checklist(conn: Connection) -> list[Step]:
    """What a merchant has to do before the connection works, in order; each step ticks itself off."""
    from integration.ops.health import KEY_REFUSED

    # A key Rule has refused since it was verified is not verified any more.
    refused = conn.is_paused and conn.paused_reason.startswith(KEY_REFUSED)
    test_sent = Delivery.objects.filter(
        connection=conn, trigger=Delivery.Trigger.TEST, status=Delivery.Status.SUCCEEDED
    ).exists()
    return [
        Step(
            "rule_key",
            "Rule API key verified",
            conn.rule_key_verified_at is not None and not refused,
            "Enter the API key from Rule (Settings > Developer) below, save, then press Verify Rule key.",
        ),
        Step(
            "signing_secret",
            "Signing secret set",
            bool(conn.signing_secret_list),
            "Press Generate signing secret and paste it into Centra's webhook plugin and the storefront.",
        ),
        Step(
            "first_call",
            "First call from Centra received",
            InboundEvent.objects.filter(connection=conn).exists(),
            "Paste the webhook URL and the signing secret into Centra's webhook plugin; the next order ticks this.",
        ),
        Step(
            "test_call",
            "Test call sent",
            test_sent,
            "Press Send test call: every enabled flow's sample goes to the test email, and Rule shows it.",
        ),
    ]
