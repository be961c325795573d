"""Bind each stored Rule API key and Centra token to the origin of the URL it is sent to today."""

from django.conf import settings
from django.db import migrations, models

from integration.upstream import origin


def bind_existing(apps, schema_editor):
    Connection = apps.get_model("integration", "Connection")
    for conn in Connection.objects.all():
        conn.rule_api_key_origin = origin(conn.rule_api_url or settings.RULE_API_URL) if conn.rule_api_key else ""
        conn.centra_api_token_origin = origin(conn.centra_api_url) if conn.centra_api_token else ""
        conn.save(update_fields=["rule_api_key_origin", "centra_api_token_origin"])


class Migration(migrations.Migration):
    dependencies = [("integration", "0014_history_import_schedule")]

    operations = [
        migrations.AddField(
            model_name="connection",
            name="rule_api_key_origin",
            field=models.CharField(blank=True, default="", editable=False, max_length=300),
        ),
        migrations.AddField(
            model_name="connection",
            name="centra_api_token_origin",
            field=models.CharField(blank=True, default="", editable=False, max_length=300),
        ),
        migrations.RunPython(bind_existing, migrations.RunPython.noop),
    ]
