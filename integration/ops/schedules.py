"""The periodic jobs of the bridge, as django-q2 Schedules (created once, by a data migration)."""

from __future__ import annotations

SWEEP_NAME = "bridge: sweep"
SWEEP_FUNC = "integration.tasks.sweep"


def ensure_sweep_schedule(schedule_model) -> bool:
    """Create the every-minute sweeper Schedule unless one with its name exists; True when created.

    Takes the model as an argument so a migration can pass its historical model."""
    if schedule_model.objects.filter(name=SWEEP_NAME).exists():
        return False
    schedule_model.objects.create(
        name=SWEEP_NAME,
        func=SWEEP_FUNC,
        schedule_type="I",  # Schedule.MINUTES
        minutes=1,
        repeats=-1,
    )
    return True


def remove_sweep_schedule(schedule_model) -> None:
    """Undo ensure_sweep_schedule (migrating backwards)."""
    schedule_model.objects.filter(name=SWEEP_NAME).delete()
