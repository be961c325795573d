"""`manage.py connection upsert|list|show|rotate-token`: create or change connections, give one new inbound URLs;
prints JSON, secrets masked."""

from __future__ import annotations

import argparse
import json
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import URLValidator, validate_email
from django.db import transaction

from integration.encryption import mask
from integration.inbound.tokens import rotate_token
from integration.mapping.values import known_zone
from integration.models import Connection, Flow


def flow_json(flow) -> dict:
    return {
        "event": flow.event,
        "enabled": flow.enabled,
        "tags": list(flow.tags or []),
        "automation": flow.automation,
        "excluded_fields": list(flow.excluded_fields or []),
    }


def connection_json(conn: Connection, *, with_flows: bool = False) -> dict:
    """A connection as JSON for the command line: URLs to paste into Centra, every secret masked."""
    data = {
        "name": conn.name,
        "status": conn.status,
        "paused_reason": conn.paused_reason,
        "hold_until": conn.hold_until.isoformat() if conn.hold_until else None,
        "events_url": conn.events_url(),
        "webhook_url": conn.webhook_url(),
        "previous_urls_valid_until": (
            conn.previous_token_expires_at.isoformat()
            if conn.previous_token and conn.previous_token_expires_at
            else None
        ),
        "rule_api_url": conn.rule_base_url,
        "rule_api_key": mask(conn.rule_api_key),
        "signing_secrets": [mask(s) for s in conn.signing_secret_list],
        "centra_api_url": conn.centra_api_url,
        "centra_api_token": mask(conn.centra_api_token),
        "test_email": conn.test_email,
        "manual_confirmation": conn.manual_confirmation,
        "send_cart_link": conn.send_cart_link,
        "cart_link_template": conn.cart_link_template,
        "remove_cart_tag": conn.remove_cart_tag,
        "remove_cart_tag_always": conn.remove_cart_tag_always,
        "shop_url": conn.shop_url,
        "time_zone": conn.time_zone,
        "default_language": conn.default_language,
        "tracking_link_templates": conn.tracking_link_templates,
    }
    if with_flows:
        data["flows"] = [flow_json(f) for f in conn.flows.order_by("id")]
    return data


def get_connection(name: str) -> Connection:
    """The named connection, or a CommandError naming it."""
    try:
        return Connection.objects.get(name=name)
    except Connection.DoesNotExist:
        raise CommandError(f"No connection named {name!r}.") from None


def print_json(command: BaseCommand, data: object) -> None:
    command.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _url(value: str, option: str) -> str:
    try:
        URLValidator()(value)
    except ValidationError:
        raise CommandError(f"{option}: {value!r} is not a URL.") from None
    return value


def _tracking(values: list[str]) -> dict[str, str]:
    templates = {}
    for value in values:
        carrier, sep, template = value.partition("=")
        if not sep or not carrier.strip() or "{tracking}" not in template:
            raise CommandError(f"--tracking-link {value!r}: expected CARRIER=TEMPLATE with {{tracking}} in it.")
        templates[carrier.strip()] = template.strip()
    return templates


class Command(BaseCommand):
    help = "Create or change a connection (upsert), list connections, or show one; prints JSON, secrets masked."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        upsert = sub.add_parser("upsert", help="create the connection or change the options given")
        upsert.add_argument("name")
        upsert.add_argument("--rule-api-key", help="required when creating")
        upsert.add_argument("--rule-api-url")
        upsert.add_argument(
            "--secret",
            action="append",
            default=[],
            help="signing secret (repeatable: rotation); replaces the stored ones; needed to create",
        )
        upsert.add_argument("--test-email")
        upsert.add_argument("--centra-api-url")
        upsert.add_argument("--centra-api-token")
        upsert.add_argument("--manual-confirmation", action=argparse.BooleanOptionalAction, default=None)
        upsert.add_argument(
            "--send-cart-link",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Order.CartUrl with OrderCreated; needs --cart-link-template (on by default when creating with one)",
        )
        upsert.add_argument("--cart-link-template", help="e.g. https://shop.example/abandoned-cart/{selection}")
        upsert.add_argument(
            "--remove-cart-tag",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="remove the OrderCreated tags once the order is delivered, from shoppers whose cart went through "
            "this connection (on by default)",
        )
        upsert.add_argument(
            "--remove-cart-tag-always",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="also from shoppers this connection never tagged (cart tags of an earlier plug-in): one Rule call "
            "per order",
        )
        upsert.add_argument("--shop-url")
        upsert.add_argument("--time-zone")
        upsert.add_argument("--default-language")
        upsert.add_argument(
            "--tracking-link",
            action="append",
            default=[],
            metavar="CARRIER=TEMPLATE",
            help="tracking link template per carrier (repeatable; carrier 'default' is the fallback)",
        )
        rotate = sub.add_parser(
            "rotate-token", help="new inbound URLs; the old ones keep working for the grace period, then 404"
        )
        rotate.add_argument("name")
        rotate.add_argument(
            "--grace-hours",
            type=float,
            default=None,
            help="how long the old URLs keep working (default TOKEN_ROTATION_GRACE_HOURS; 0: stop them now)",
        )
        sub.add_parser("list", help="every connection")
        show = sub.add_parser("show", help="one connection with its flows")
        show.add_argument("name")
        show.add_argument(
            "--reveal",
            action="store_true",
            help="print the signing secrets in full (for pasting into Centra); the Rule key and Centra token stay "
            "masked",
        )

    def handle(self, *args, **options) -> None:
        action = options["action"]
        if action == "list":
            print_json(self, [connection_json(c) for c in Connection.objects.order_by("name")])
        elif action == "show":
            conn = get_connection(options["name"])
            data = connection_json(conn, with_flows=True)
            if options["reveal"]:
                data["signing_secrets"] = conn.signing_secret_list
            print_json(self, data)
        elif action == "rotate-token":
            hours = options["grace_hours"]
            if hours is not None and hours < 0:
                raise CommandError("--grace-hours cannot be negative.")
            grace = None if hours is None else timedelta(hours=hours)
            rotated = rotate_token(get_connection(options["name"]), grace)
            print_json(self, connection_json(rotated.connection))
            self.stderr.write(rotated.summary())
        else:
            print_json(self, connection_json(self.upsert(options), with_flows=True))

    def upsert(self, options: dict) -> Connection:
        name = options["name"]
        conn = Connection.objects.filter(name=name).first()
        creating = conn is None
        if creating:
            missing = [
                opt for opt, key in (("--rule-api-key", "rule_api_key"), ("--secret", "secret")) if not options[key]
            ]
            if missing:
                raise CommandError(f"Creating connection {name!r} needs {' and '.join(missing)}.")
            conn = Connection(name=name)
        if options["rule_api_key"]:
            conn.enter_secret("rule_api_key", options["rule_api_key"].strip())
        if options["secret"]:
            conn.signing_secrets = "\n".join(s.strip() for s in options["secret"] if s.strip())
        if options["centra_api_token"] is not None:
            conn.enter_secret("centra_api_token", options["centra_api_token"].strip())
        for option, field in (
            ("rule_api_url", "rule_api_url"),
            ("centra_api_url", "centra_api_url"),
            ("shop_url", "shop_url"),
        ):
            if options[option] is not None:
                value = options[option].strip()
                setattr(conn, field, _url(value, "--" + option.replace("_", "-")) if value else "")
        if options["test_email"] is not None:
            if options["test_email"]:
                try:
                    validate_email(options["test_email"])
                except ValidationError:
                    raise CommandError(f"--test-email: {options['test_email']!r} is not an email.") from None
            conn.test_email = options["test_email"]
        if options["time_zone"] is not None:
            if not known_zone(options["time_zone"]):
                raise CommandError(f"--time-zone: unknown time zone {options['time_zone']!r}.")
            conn.time_zone = options["time_zone"]
        if options["manual_confirmation"] is not None:
            conn.manual_confirmation = options["manual_confirmation"]
        if options["cart_link_template"] is not None:
            conn.cart_link_template = options["cart_link_template"].strip()
        if options["send_cart_link"] is not None:
            conn.send_cart_link = options["send_cart_link"]
        elif creating and conn.cart_link_template:
            conn.send_cart_link = True
        for option in ("remove_cart_tag", "remove_cart_tag_always"):
            if options[option] is not None:
                setattr(conn, option, options[option])
        if options["default_language"] is not None:
            conn.default_language = options["default_language"].strip().lower()
        if options["tracking_link"]:
            conn.tracking_link_templates = {
                **(conn.tracking_link_templates or {}),
                **_tracking(options["tracking_link"]),
            }
        _require_secret_for_new_address(conn, options)
        try:
            conn.full_clean(exclude=["token"])
        except ValidationError as exc:
            raise CommandError(_masked_errors(exc)) from None
        with transaction.atomic():
            conn.save()
            if creating:
                Flow.create_defaults(conn)  # a new connection starts with every catalog event's flow
        return conn


def _require_secret_for_new_address(conn: Connection, options: dict) -> None:
    """A stored secret goes only to the address it was entered for: a URL option that moves it elsewhere needs
    the secret option too."""
    for secret_field, secret_option, url_option in (
        ("rule_api_key", "--rule-api-key", "--rule-api-url"),
        ("centra_api_token", "--centra-api-token", "--centra-api-url"),
    ):
        bound = getattr(conn, f"{secret_field}_origin")
        if not bound or options[secret_option[2:].replace("-", "_")] is not None:
            continue
        target = conn.secret_sent_to(secret_field)
        if target != bound:
            raise CommandError(
                f"{url_option} moves the stored {secret_field.replace('_', ' ')} from {bound} to "
                f"{target or 'no address'}: give {secret_option} again (the stored one is only sent to {bound})."
            )


def _masked_errors(exc: ValidationError) -> str:
    # Validation messages name fields, never values, so no secret can leak through them.
    return "; ".join(f"{field}: {' '.join(str(m) for m in msgs)}" for field, msgs in exc.message_dict.items())
