"""Usage queries: energy per NMI and suffix over a period, the one place that knows their SQL.

Figures are exact sums of the stored values, each with the count of intervals
behind it and how many of those were estimated (E) or substituted (S, F).
Days are the unit of storage: a day without 400 ranges is one quality class
and its total and counts were computed at load, so most queries read day rows
only; only V days, and grouping by interval, unnest values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import psycopg

from nem12.format import spec
from nem12.warehouse.schema import SCHEMA

GroupBy = Literal["interval", "day", "month", "quality"]
GROUPS: tuple[GroupBy, ...] = ("interval", "day", "month", "quality")
QUALITY_FLAGS = tuple(spec.QUALITY_CLASSES)


@dataclass(frozen=True)
class UsageQuery:
    """What to add up: NMIs (required), their suffixes (all if empty), NEM days
    ``[date_from, date_to)``, grouping, and the quality flags to count (all if empty)."""

    nmis: tuple[str, ...]
    date_from: date
    date_to: date
    group_by: GroupBy = "day"
    suffixes: tuple[str, ...] = ()
    qualities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.nmis:
            raise ValueError("name at least one NMI")
        if self.group_by not in GROUPS:
            raise ValueError(f"group by one of {', '.join(GROUPS)}, not {self.group_by!r}")
        if self.date_to <= self.date_from:
            raise ValueError(f"the period is empty: {self.date_from} to {self.date_to}")
        unknown = set(self.qualities) - set(QUALITY_FLAGS)
        if unknown:
            raise ValueError(
                f"quality flags are {', '.join(QUALITY_FLAGS)}, not {', '.join(sorted(unknown))}"
            )


@dataclass(frozen=True)
class UsageRow:
    """One figure: its stream, what it covers (``period``: an interval start, a date,
    a month's first day, or None when grouped by quality), and what is behind it."""

    nmi: str
    nmi_suffix: str
    uom: str
    period: datetime | date | None
    quality_class: str | None
    energy: Decimal
    intervals: int
    estimated_intervals: int
    substituted_intervals: int

    def as_json(self) -> dict[str, Any]:
        """Decimals as strings (exact), dates and times as ISO text."""
        row = asdict(self)
        row["energy"] = format(self.energy.normalize(), "f") if self.energy else "0"
        row["period"] = self.period.isoformat() if self.period is not None else None
        return row


#: The days asked for, each a quality class (V days: one row per class of its
#: intervals, from the 400 ranges), with its energy and interval counts.
_DAY_CLASSES = f"""
WITH days AS (
    SELECT d.*
    FROM {SCHEMA}.meter_day d
    WHERE d.nmi = ANY(%(nmis)s)
      AND d.interval_date >= %(date_from)s AND d.interval_date < %(date_to)s
      AND (cardinality(%(suffixes)s::text[]) = 0 OR d.nmi_suffix = ANY(%(suffixes)s))
)
SELECT nmi, nmi_suffix, uom, interval_date, left(quality_method, 1) AS quality_class,
       total AS energy, {spec.MINUTES_PER_DAY} / interval_length AS intervals
FROM days WHERE interval_quality IS NULL
UNION ALL
SELECT d.nmi, d.nmi_suffix, d.uom, d.interval_date, left(r.quality_method, 1),
       sum(r.value), count(*)
FROM days d
CROSS JOIN LATERAL {SCHEMA}.day_readings(
    d.interval_values, d.interval_length, d.quality_method, d.reason_code,
    d.reason_description, d.interval_quality) r
WHERE d.interval_quality IS NOT NULL
GROUP BY 1, 2, 3, 4, 5
"""

_INTERVALS = f"""
SELECT m.nmi, m.nmi_suffix, m.uom, m.interval_start AS period,
       left(m.quality_method, 1) AS quality_class, m.value AS energy, 1 AS intervals
FROM {SCHEMA}.meter_interval m
WHERE m.nmi = ANY(%(nmis)s)
  AND m.interval_date >= %(date_from)s AND m.interval_date < %(date_to)s
  AND (cardinality(%(suffixes)s::text[]) = 0 OR m.nmi_suffix = ANY(%(suffixes)s))
"""

_PERIOD = {
    "day": "interval_date",
    "month": "date_trunc('month', interval_date)::date",
    "quality": "NULL::date",
}


def _statement(query: UsageQuery) -> str:
    source = _INTERVALS if query.group_by == "interval" else _DAY_CLASSES
    period = "period" if query.group_by == "interval" else _PERIOD[query.group_by]
    by_class = "quality_class" if query.group_by == "quality" else "NULL::text"
    return f"""
WITH classes AS ({source})
SELECT nmi, nmi_suffix, uom, {period} AS period, {by_class} AS quality_class,
       sum(energy) AS energy, sum(intervals)::bigint AS intervals,
       coalesce(sum(intervals) FILTER (WHERE quality_class = 'E'), 0)::bigint,
       coalesce(sum(intervals) FILTER (WHERE quality_class IN ('S', 'F')), 0)::bigint
FROM classes
WHERE cardinality(%(qualities)s::text[]) = 0 OR quality_class = ANY(%(qualities)s)
GROUP BY 1, 2, 3, 4, 5
ORDER BY 1, 2, 3, 4, 5
"""


def usage(conn: psycopg.Connection, query: UsageQuery) -> list[UsageRow]:
    """The figures ``query`` asks for, ordered by NMI, suffix, unit and period."""
    params = {
        "nmis": list(query.nmis),
        "suffixes": list(query.suffixes),
        "qualities": list(query.qualities),
        "date_from": query.date_from,
        "date_to": query.date_to,
    }
    rows = conn.execute(_statement(query), params).fetchall()
    return [UsageRow(*row) for row in rows]
