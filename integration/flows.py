"""The explicit step that stores flows for events declared after a connection was created: a data migration.

`create_flows_operation("NewEvent")` is a RunPython operation that gives every existing connection a flow for
each named event, with the catalog's defaults, and leaves flows already stored alone (safe to re-run). New
connections get all flows when they are created (Flow.create_defaults, called by the admin and the `connection`
command); until a flow is stored the event behaves with its declared defaults.
"""

from __future__ import annotations

from django.db import migrations

from integration import catalog


def create_flows_operation(*events: str) -> migrations.RunPython:
    def create_flows(apps, schema_editor) -> None:
        connection_model = apps.get_model("integration", "Connection")
        flow_model = apps.get_model("integration", "Flow")
        for event in events:
            spec = catalog.EVENTS.get(event)
            if spec is None:  # the declaring app is not installed here: nothing to create
                continue
            have = flow_model.objects.filter(event=event).values_list("connection_id", flat=True)
            flow_model.objects.bulk_create(
                flow_model(
                    connection_id=connection_id,
                    event=event,
                    enabled=spec.default_enabled,
                    tags=list(spec.default_tags),
                    automation=catalog.DEFAULT_AUTOMATION,
                )
                for connection_id in connection_model.objects.exclude(pk__in=have).values_list("pk", flat=True)
            )

    return migrations.RunPython(create_flows, migrations.RunPython.noop, elidable=True)
