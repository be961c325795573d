"""An admin paginator for log tables of millions of rows: it never counts the whole table."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db import connections
from django.utils.functional import cached_property


def estimated_table_rows(model) -> int | None:
    """PostgreSQL's planner estimate of a table's row count (pg_class.reltuples); None elsewhere or unknown."""
    connection = connections[model.objects.db]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    # reltuples is -1 for a table that was never vacuumed or analyzed.
    if not row or row[0] is None or row[0] < 0:
        return None
    return int(row[0])


class CappedCountPaginator(Paginator):
    """Counts at most CAP + 1 rows (COUNT over a LIMITed subquery); above that, an estimate when unfiltered.

    The merchant narrows a long list with filters and search; pages beyond the cap are not worth a full scan.
    """

    CAP = 10_000

    def _is_unfiltered(self) -> bool:
        query = getattr(self.object_list, "query", None)
        return query is not None and not query.where.children and not query.distinct

    @cached_property
    def count(self) -> int:
        """Exact up to CAP, else the table estimate (unfiltered, PostgreSQL) or CAP + 1."""
        queryset = self.object_list
        if not hasattr(queryset, "query"):
            return len(queryset)
        capped = queryset[: self.CAP + 1].count()
        if capped <= self.CAP:
            return capped
        if self._is_unfiltered():
            estimate = estimated_table_rows(queryset.model)
            if estimate is not None:
                return max(estimate, capped)
        return capped
