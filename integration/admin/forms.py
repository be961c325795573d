"""Admin forms: write-only secrets, flows with comma-separated tags and catalog fields, the preview picker."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.validators import validate_email
from django.db import models

from integration import catalog, upstream
from integration.encryption import mask
from integration.mapping.request import distinct_tags
from integration.mapping.values import known_zone
from integration.models import Connection, Flow, InboundEvent, RuleBudget
from integration.rule.budget import default_ceiling

SECRET_HELP = "Write-only: the stored value is never shown. Leave empty to keep it."


class SecretInput(forms.PasswordInput):
    """A password box that never renders any value, stored or submitted."""

    def __init__(self, attrs: dict | None = None) -> None:
        super().__init__(attrs={"autocomplete": "new-password", "size": 50, **(attrs or {})}, render_value=False)


def secret_field(label: str) -> forms.CharField:
    return forms.CharField(label=label, required=False, strip=True, widget=SecretInput(), help_text=SECRET_HELP)


def split_secrets(text: str) -> list[str]:
    """Secrets typed on one line, separated by commas or spaces."""
    return [s for s in text.replace(",", " ").split() if s]


def https_formfield(db_field, **kwargs) -> forms.Field | None:
    """Model fields to form fields, URLs assumed https when typed without a scheme."""
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return db_field.formfield(**kwargs)


class ConnectionAdminForm(forms.ModelForm):
    """The connection's settings; secrets go in through write-only boxes and never come back out."""

    new_rule_api_key = secret_field("New Rule API key")
    clear_rule_api_key = forms.BooleanField(label="Remove the stored Rule API key", required=False)
    new_centra_api_token = secret_field("New Centra API token")
    clear_centra_api_token = forms.BooleanField(label="Remove the stored Centra API token", required=False)
    new_signing_secrets = forms.CharField(
        label="Add signing secret(s) by hand",
        required=False,
        widget=SecretInput(),
        help_text="Write-only. Added in front of the stored ones (rotation: add the new one, remove the old one "
        "once Centra and the storefront use it). Several: separate with commas.",
    )
    remove_signing_secrets = forms.MultipleChoiceField(
        label="Remove signing secrets",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        choices=(),
    )
    rule_calls_per_minute = forms.IntegerField(
        label="Rule calls a minute",
        required=False,
        min_value=1,
        max_value=100_000,
        help_text="The most calls this connection makes to Rule in a minute, evenly spaced (each call carries up "
        "to 100 deliveries). Lower it if Rule answers 429 or other tools use the same Rule account.",
    )

    class Meta:
        model = Connection
        formfield_callback = https_formfield
        # The stored secrets are never form fields: they go in only through the write-only boxes above.
        fields = [
            "name",
            "test_email",
            "rule_api_url",
            "centra_api_url",
            "manual_confirmation",
            "send_cart_link",
            "cart_link_template",
            "remove_cart_tag",
            "remove_cart_tag_always",
            "tracking_link_templates",
            "shop_url",
            "cancellation_message",
            "time_zone",
            "default_language",
            "reconcile_interval_minutes",
            "alert_emails",
        ]
        labels = {
            "rule_api_url": "Rule API URL",
            "centra_api_url": "Centra API URL",
            "test_email": "Test email",
            "shop_url": "Shop URL",
            "cart_link_template": "Cart link template",
            "tracking_link_templates": "Tracking link templates",
            "time_zone": "Time zone",
            "default_language": "Default language",
            "manual_confirmation": "Manual confirmation",
            "send_cart_link": "Send cart link",
            "remove_cart_tag": "Remove cart tag",
            "remove_cart_tag_always": "Remove cart tag from every shopper",
            "cancellation_message": "Cancellation message",
            "reconcile_interval_minutes": "Reconcile every (minutes)",
            "alert_emails": "Alert email addresses",
        }
        help_texts = {"test_email": "Send test call sends every enabled flow's sample to this address."}
        widgets = {"alert_emails": forms.Textarea(attrs={"rows": 2, "cols": 60})}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        stored = self.instance.signing_secret_list if self.instance.pk else []
        # Choices carry the position, never the secret itself.
        self.fields["remove_signing_secrets"].choices = [(str(i), mask(s)) for i, s in enumerate(stored)]
        ceiling = None
        if self.instance.pk:
            ceiling = RuleBudget.objects.filter(connection=self.instance).values_list("calls_per_minute", flat=True)
            ceiling = ceiling.first()
        self.fields["rule_calls_per_minute"].initial = ceiling or default_ceiling()

    def clean_time_zone(self) -> str:
        value = self.cleaned_data["time_zone"]
        if not known_zone(value):
            raise forms.ValidationError(f"Unknown time zone {value!r}; use an IANA name like Europe/Stockholm.")
        return value

    def clean_alert_emails(self) -> str:
        addresses = Connection(alert_emails=self.cleaned_data.get("alert_emails") or "").alert_email_list
        bad = []
        for address in addresses:
            try:
                validate_email(address)
            except forms.ValidationError:
                bad.append(address)
        if bad:
            raise forms.ValidationError(f"Not an email address: {', '.join(bad)}.")
        return "\n".join(addresses)

    def clean_tracking_link_templates(self) -> dict:
        value = self.cleaned_data.get("tracking_link_templates") or {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise forms.ValidationError('Expected {"Carrier": "https://...{tracking}", "default": "..."}.')
        missing = [carrier for carrier, template in value.items() if "{tracking}" not in template]
        if missing:
            raise forms.ValidationError(f"Templates without {{tracking}}: {', '.join(missing)}.")
        return value

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("clear_rule_api_key") and cleaned.get("new_rule_api_key"):
            self.add_error("clear_rule_api_key", "Either enter a new key or remove the stored one, not both.")
        if cleaned.get("clear_centra_api_token") and cleaned.get("new_centra_api_token"):
            self.add_error("clear_centra_api_token", "Either enter a new token or remove the stored one, not both.")
        self._require_secret_for_new_address(cleaned)
        return cleaned

    SECRET_BOXES = (
        ("rule_api_key", "rule_api_url", "new_rule_api_key", "clear_rule_api_key", "Rule API key"),
        ("centra_api_token", "centra_api_url", "new_centra_api_token", "clear_centra_api_token", "Centra API token"),
    )

    def _require_secret_for_new_address(self, cleaned: dict) -> None:
        """A stored secret goes only to the address it was entered for: moving its URL elsewhere needs the
        secret typed again (or removed), so a user who can edit the URL cannot send the stored one away."""
        if not self.instance.pk:
            return
        for secret_field, url_field, new_box, clear_box, label in self.SECRET_BOXES:
            bound = getattr(self.instance, f"{secret_field}_origin")
            if not bound or url_field not in cleaned or cleaned.get(new_box) or cleaned.get(clear_box):
                continue
            url = cleaned.get(url_field) or ""
            if url_field == "rule_api_url":
                url = url or settings.RULE_API_URL
            target = upstream.origin(url)
            if target != bound:
                self.add_error(
                    new_box,
                    f"The stored {label} was entered for {bound}. To use {target or 'no address'}, enter the "
                    f"{label} again (or remove the stored one).",
                )

    def apply_secrets(self, instance: Connection) -> None:
        """Set the secrets on `instance` from the write-only fields; empty boxes keep what is stored."""
        data = self.cleaned_data
        if data.get("new_rule_api_key"):
            instance.enter_secret("rule_api_key", data["new_rule_api_key"])
            instance.rule_key_verified_at = None  # the checklist asks for Verify again
        elif data.get("clear_rule_api_key"):
            instance.rule_api_key = ""
            instance.rule_key_verified_at = None
        if data.get("new_centra_api_token"):
            instance.enter_secret("centra_api_token", data["new_centra_api_token"])
        elif data.get("clear_centra_api_token"):
            instance.centra_api_token = ""
        removed = {int(i) for i in data.get("remove_signing_secrets") or []}
        kept = [s for i, s in enumerate(instance.signing_secret_list) if i not in removed]
        added = [s for s in split_secrets(data.get("new_signing_secrets") or "") if s not in kept]
        if added or removed:
            instance.signing_secrets = "\n".join(added + kept)

    def save_budget(self, instance: Connection) -> None:
        """The connection's ceiling of Rule calls a minute (its RuleBudget row), once the connection is saved."""
        ceiling = self.cleaned_data.get("rule_calls_per_minute")
        if ceiling:
            RuleBudget.objects.update_or_create(connection=instance, defaults={"calls_per_minute": ceiling})

    def save(self, commit: bool = True) -> Connection:
        instance = super().save(commit=False)
        self.apply_secrets(instance)
        if commit:
            instance.save()
            self._save_m2m()
        return instance


def parse_tags(text: str) -> list[str]:
    """Comma-separated tags, trimmed, in the order given."""
    return [t.strip() for t in text.split(",") if t.strip()]


def validate_tags(tags: list[str]) -> list[str]:
    """Rule tags of a flow: at least one, no duplicates (mapping.request.distinct_tags: case does not count)."""
    kept, repeated = distinct_tags(tags)
    if not kept:
        raise forms.ValidationError("A flow needs at least one Rule tag.")
    if repeated:
        raise forms.ValidationError(f"Duplicate tags: {', '.join(repeated)}.")
    return kept


def excludable_fields(event: str) -> list[str]:
    """The fixed catalog keys an event sends, which a flow may leave out."""
    return [f.key for f in catalog.fields_for_event(event) if not f.dynamic]


class LeftOutFields(forms.CheckboxSelectMultiple):
    """The fields a flow leaves out, folded into one line ("none left out" / "3 of 25 left out") until opened."""

    def render(self, name, value, attrs=None, renderer=None) -> str:
        from django.utils.html import format_html

        chosen = len(value or [])
        total = len(self.choices)
        summary = f"{chosen} of {total} left out" if chosen else f"none of {total} left out"
        return format_html(
            '<details class="left-out"><summary>{}</summary>{}</details>',
            summary,
            super().render(name, value, attrs, renderer),
        )


class FlowInlineForm(forms.ModelForm):
    """One flow on the connection page: tags typed as text, excluded fields picked from the catalog."""

    tags = forms.CharField(
        required=True, widget=forms.TextInput(attrs={"size": 24}), help_text="Comma-separated Rule tags."
    )
    excluded_fields = forms.MultipleChoiceField(
        required=False,
        choices=(),
        widget=LeftOutFields(),
        label="fields left out",
    )

    class Meta:
        model = Flow
        fields = ["enabled", "tags", "automation", "excluded_fields"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        event = self.instance.event if self.instance.pk else ""
        keys = excludable_fields(event)
        # Keys stored earlier (e.g. a dynamic attribute key set on the command line) stay selectable.
        keys += [k for k in (self.instance.excluded_fields or []) if k not in keys]
        self.fields["excluded_fields"].choices = [(k, k) for k in keys]
        if self.instance.pk:
            self.initial["tags"] = ", ".join(self.instance.tags or [])
            spec = catalog.EVENTS.get(event)
            if spec is not None and spec.manual_mode_only and not self.instance.connection.manual_confirmation:
                # Cannot fire in this store's confirmation mode: shown off, and the box cannot be ticked.
                self.initial["enabled"] = False
                self.fields["enabled"].disabled = True

    def clean_tags(self) -> list[str]:
        return validate_tags(parse_tags(self.cleaned_data.get("tags") or ""))

    def clean_enabled(self) -> bool:
        # Shown off while it cannot fire, but the stored choice is kept for when the store's mode changes.
        if self.fields["enabled"].disabled:
            return self.instance.enabled
        return self.cleaned_data["enabled"]


PREVIEW_SAMPLE = "sample"


class PreviewForm(forms.Form):
    """Which flow (connection + event) and which payload (a stored inbound event or the sample) to preview."""

    connection = forms.ModelChoiceField(queryset=Connection.objects.all())
    event = forms.ChoiceField(choices=catalog.event_choices)
    inbound_event = forms.IntegerField(
        required=False,
        min_value=1,
        label="inbound event id",
        help_text="Empty: the built-in sample payload for the event.",
    )

    def clean(self) -> dict:
        cleaned = super().clean()
        inbound_id = cleaned.get("inbound_event")
        connection = cleaned.get("connection")
        if inbound_id and connection is not None:
            inbound = InboundEvent.objects.filter(pk=inbound_id).first()
            if inbound is None:
                self.add_error("inbound_event", f"No inbound event {inbound_id}.")
            elif inbound.connection_id != connection.pk:
                self.add_error("inbound_event", f"Inbound event {inbound_id} belongs to another connection.")
            else:
                cleaned["inbound"] = inbound
        return cleaned
