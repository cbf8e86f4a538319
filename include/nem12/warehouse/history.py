"""Version history: what the meter table held for a day at any time, the one place
that knows the SQL of ``meter_day_version``.

The merge keeps every day version it replaces with when (``replaced_at``) and by
which file (``replaced_by``); the current version is the ``meter_day`` row. A
version was held from its ``merged_at`` until its ``replaced_at``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg

from nem12.warehouse.schema import SCHEMA

_COLUMNS = (
    "nmi, nmi_suffix, interval_date, interval_length, uom, quality_method, total, "
    "interval_values, file_id, merged_at"
)


@dataclass(frozen=True)
class DayVersion:
    """One version of one day of a data stream, and when the table held it."""

    nmi: str
    nmi_suffix: str
    interval_date: date
    interval_length: int
    uom: str
    quality_method: str
    total: Decimal
    interval_values: list[Decimal]
    file_id: int
    merged_at: datetime
    replaced_at: datetime | None  # None: the current version
    replaced_by: int | None

    def as_json(self) -> dict[str, Any]:
        """Decimals as strings (exact), dates and times as ISO text."""
        row = asdict(self)
        row["total"] = _text(self.total)
        row["interval_values"] = [_text(v) for v in self.interval_values]
        for name in ("interval_date", "merged_at", "replaced_at"):
            value = getattr(self, name)
            row[name] = value.isoformat() if value is not None else None
        return row


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def day_versions(
    conn: psycopg.Connection,
    nmi: str,
    date_from: date,
    date_to: date,
    as_of: datetime | None = None,
    suffixes: tuple[str, ...] = (),
) -> list[DayVersion]:
    """The versions of an NMI's days ``[date_from, date_to)``: all of them, or with
    ``as_of`` the one the table held then for each day (none before its first merge)."""
    held = (
        ""
        if as_of is None
        else " AND merged_at <= %(as_of)s AND coalesce(replaced_at > %(as_of)s, true)"
    )
    rows = conn.execute(
        f"""
        SELECT * FROM (
            SELECT {_COLUMNS}, NULL::timestamptz AS replaced_at, NULL::bigint AS replaced_by
            FROM {SCHEMA}.meter_day
            WHERE nmi = %(nmi)s AND interval_date >= %(date_from)s AND interval_date < %(date_to)s
            UNION ALL
            SELECT {_COLUMNS}, replaced_at, replaced_by
            FROM {SCHEMA}.meter_day_version
            WHERE nmi = %(nmi)s AND interval_date >= %(date_from)s AND interval_date < %(date_to)s
        ) v
        WHERE (cardinality(%(suffixes)s::text[]) = 0 OR nmi_suffix = ANY(%(suffixes)s)){held}
        ORDER BY nmi_suffix, interval_date, merged_at, file_id
        """,
        {
            "nmi": nmi,
            "date_from": date_from,
            "date_to": date_to,
            "as_of": as_of,
            "suffixes": list(suffixes),
        },
    ).fetchall()
    return [DayVersion(*row) for row in rows]
