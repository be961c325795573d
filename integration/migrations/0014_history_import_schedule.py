"""Create the every-minute history import tick once (it resumes imports after a stopped worker, a wait or a 429).

Self-contained on purpose: a migration must not import the app's code. The name and function match
integration.history.runner.TICK_NAME / TICK_FUNC."""

from django.db import migrations

NAME = "bridge: history import"
FUNC = "integration.tasks.history_tick"


def create(apps, schema_editor):
    schedule = apps.get_model("django_q", "Schedule")
    if not schedule.objects.filter(name=NAME).exists():
        schedule.objects.create(name=NAME, func=FUNC, schedule_type="I", minutes=1, repeats=-1)


def remove(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("integration", "0013_history_import_and_rule_budget"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]

    operations = [migrations.RunPython(create, remove)]
