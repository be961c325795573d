"""Bare baselines for the ingest benchmarks: parse the body and insert the same rows, nothing else.

No signature check, no validation, no duplicate handling, no enqueue: the least any endpoint storing these
events must do. The service's endpoints are measured against these in the same server and database.
"""

from __future__ import annotations

import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from integration.models import Connection, InboundEvent


def _connection_id(token: str) -> int | None:
    return Connection.objects.filter(token=token).values_list("id", flat=True).first()


@csrf_exempt
@require_POST
def baseline_events(request: HttpRequest, token: str) -> JsonResponse:
    """`{"events": [...]}` JSON: one InboundEvent row per event in one transaction."""
    connection_id = _connection_id(token)
    if connection_id is None:
        return JsonResponse({"error": "unknown token"}, status=404)
    data = json.loads(request.body)
    events = data.get("events", [data])
    rows = []
    for event in events:
        body = {k: v for k, v in event.items() if k not in ("id", "type", "occurredAt")}
        rows.append(
            InboundEvent(
                connection_id=connection_id,
                source=InboundEvent.Source.EVENTS,
                dedupe_key=str(event["id"]),
                event_type=event["type"],
                object_ref=str((body.get("order") or {}).get("number", "")),
                email=event.get("email") or "",
                payload=body,
                occurred_at=parse_datetime(event["occurredAt"]),
            )
        )
    with transaction.atomic():
        InboundEvent.objects.bulk_create(rows)
    return JsonResponse({"accepted": len(rows), "duplicates": 0})


@csrf_exempt
@require_POST
def baseline_webhook(request: HttpRequest, token: str) -> JsonResponse:
    """Centra's form-encoded `payload={"events": [...]}`: one InboundEvent row per event in one transaction."""
    connection_id = _connection_id(token)
    if connection_id is None:
        return JsonResponse({"error": "unknown token"}, status=404)
    events = json.loads(request.POST["payload"])["events"]
    rows = [
        InboundEvent(
            connection_id=connection_id,
            source=InboundEvent.Source.WEBHOOK,
            dedupe_key=f"{e['type']}:{e['id']}:{e['action']}:{e['date']}",
            event_type=e["type"],
            object_ref=str(e["id"]),
            payload=e,
        )
        for e in events
    ]
    with transaction.atomic():
        InboundEvent.objects.bulk_create(rows)
    return JsonResponse({"accepted": len(rows), "duplicates": 0})
