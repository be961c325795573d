"""Create the every-minute sweeper Schedule once (not on every start; migrating again creates no second one)."""

from django.db import migrations

from integration.ops.schedules import ensure_sweep_schedule, remove_sweep_schedule


def create(apps, schema_editor):
    ensure_sweep_schedule(apps.get_model("django_q", "Schedule"))


def remove(apps, schema_editor):
    remove_sweep_schedule(apps.get_model("django_q", "Schedule"))


class Migration(migrations.Migration):
    dependencies = [
        ("integration", "0002_delivery_notes"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
