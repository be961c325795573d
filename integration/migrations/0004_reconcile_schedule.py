"""Create the every-minute reconcile Schedule once (migrating again creates no second one).

Self-contained on purpose: a migration must not import the app's code, which changes over time. The name and
function match integration.centra.reconcile.SCHEDULE_NAME / SCHEDULE_FUNC."""

from django.db import migrations

NAME = "bridge: reconcile"
FUNC = "integration.centra.reconcile.reconcile_due"


def create(apps, schema_editor):
    schedule = apps.get_model("django_q", "Schedule")
    if not schedule.objects.filter(name=NAME).exists():
        schedule.objects.create(name=NAME, func=FUNC, schedule_type="I", minutes=1, repeats=-1)


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("integration", "0003_sweep_schedule"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
