"""Create the every-minute alerts Schedule once (migrating again creates no second one).

Self-contained on purpose, like 0004: the name and function match integration.ops.alerts.TASK."""

from django.db import migrations

NAME = "bridge: alerts"
FUNC = "integration.tasks.check_alerts"


def create(apps, schema_editor):
    schedule = apps.get_model("django_q", "Schedule")
    if not schedule.objects.filter(name=NAME).exists():
        schedule.objects.create(name=NAME, func=FUNC, schedule_type="I", minutes=1, repeats=-1)


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("integration", "0010_console_pages"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
