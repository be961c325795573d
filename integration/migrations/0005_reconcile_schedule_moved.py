"""The reconcile job moved to integration.processing.reconcile (the folders show the flow): point the existing
Schedule row at its new path. Self-contained, like 0004."""

from django.db import migrations

NAME = "bridge: reconcile"
OLD = "integration.centra.reconcile.reconcile_due"
NEW = "integration.processing.reconcile.reconcile_due"


def forward(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME, func=OLD).update(func=NEW)


def backward(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME, func=NEW).update(func=OLD)


class Migration(migrations.Migration):
    dependencies = [("integration", "0004_reconcile_schedule")]

    operations = [migrations.RunPython(forward, backward)]
