"""A dry run of a history import: read and map everything as the import would, send nothing, store nothing.

It gives the counts (per event to send, per reason skipped, failed), the Rule calls the import would make, and
the exact first request of each event (the same body an import batch sends)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from integration.centra.client import CentraClient
from integration.history import source
from integration.history.models import KINDS, HistoryItem
from integration.history.plan import SKIP_IMPORTED, SKIP_LIVE
from integration.history.runner import BATCH_SIZE, enabled_events, flows_of
from integration.mapping import FlowConfig, MappingContext, build_import_request
from integration.models import Connection, Delivery


@dataclass
class DryRun:
    since: datetime
    until: datetime
    kinds: list[str]
    read: int = 0
    to_send: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    first_batch: dict[str, list[dict]] = field(default_factory=dict)
    flows: dict[str, FlowConfig] = field(default_factory=dict)

    @property
    def calls(self) -> int:
        return sum(math.ceil(n / BATCH_SIZE) for n in self.to_send.values())

    def sample_requests(self, subscribers: int = 2) -> dict[str, dict]:
        """Per event, the first request exactly as the import sends it, cut to `subscribers` entries."""
        return {
            event: build_import_request(entries[:subscribers], self.flows[event])
            for event, entries in self.first_batch.items()
        }


def dry_run(
    connection: Connection,
    since: datetime,
    kinds: list[str],
    on_page: Callable[[DryRun], None] | None = None,
) -> DryRun:
    """Read every page the import would read and count what it would do; `on_page` after each page."""
    until = timezone.now()
    report = DryRun(since=since, until=until, kinds=[k for k in KINDS if k in kinds])
    enabled = enabled_events(connection)
    ctx = MappingContext.from_connection(connection)
    report.flows = {event: FlowConfig.from_flow(flow) for event, flow in flows_of(connection).items()}
    client = CentraClient.for_connection(connection)
    for kind in report.kinds:
        page_number = 1
        while True:
            page = source.read_page(
                client,
                kind,
                page_number,
                since,
                until,
                manual_confirmation=connection.manual_confirmation,
                enabled=enabled,
            )
            _count_page(connection, report, [source.map_planned(p, ctx, report.flows) for p in page.objects])
            report.read += page.read
            if on_page is not None:
                on_page(report)
            if page.last:
                break
            page_number += 1
    return report


def _count_page(connection: Connection, report: DryRun, mapped: list[source.Mapped]) -> None:
    keys = [k for m in mapped for _, k in m.planned.keys]
    live = set(
        Delivery.objects.filter(connection=connection, idempotency_key__in=keys).values_list(
            "idempotency_key", flat=True
        )
    )
    imported = set(
        HistoryItem.objects.filter(connection=connection, key__in=keys, status=HistoryItem.Status.SENT).values_list(
            "key", flat=True
        )
    )
    for m in mapped:
        planned = m.planned
        keys_of = {k for _, k in planned.keys}
        reason = planned.reason
        if planned.event is not None and keys_of & live:
            reason = SKIP_LIVE
        elif planned.event is not None and planned.keys and planned.keys[0][1] in imported:
            reason = SKIP_IMPORTED
        if m.error:
            report.failed[m.error] = report.failed.get(m.error, 0) + 1
        elif planned.event is None or reason in (SKIP_LIVE, SKIP_IMPORTED):
            report.skipped[reason] = report.skipped.get(reason, 0) + 1
        else:
            report.to_send[planned.event] = report.to_send.get(planned.event, 0) + 1
            first = report.first_batch.setdefault(planned.event, [])
            if len(first) < BATCH_SIZE:
                first.append(m.subscriber)
