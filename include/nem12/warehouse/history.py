"""Version history: what the meter tables held for a day or a read at any time, the
one place that knows the SQL of ``meter_day_version`` and of history from
``read_version``.

NEM12: the merge keeps every day version it replaces with when (``replaced_at``)
and by which file (``replaced_by``); the current version is the ``meter_day``
row. A version was held from its ``merged_at`` until its ``replaced_at``.

NEM13: ``read_version`` keeps every version of every read the merge took in,
with its ``merged_at``. A read is current when no newer version (UpdateDateTime,
header DateTime, file, member, line) of its stream overlaps its period, and once
a newer overlapping version exists it stays so (versions are never removed), so
a version was held from its ``merged_at`` until the first ``merged_at`` of a newer
version overlapping it: its ``replaced_at``, derived, not stored. A late older
version was never held: its ``replaced_at`` is its own ``merged_at``, its
``replaced_by`` the newest version that was there when it came.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from itertools import pairwise
from typing import Any

import psycopg

from nem12.format import spec
from nem12.warehouse.merge import READ_RANK, READ_RANK_TERMS
from nem12.warehouse.schema import READ_SHOWN, SCHEMA

#: NEM time: UTC+10 all year (``spec.NEM_TIME_ZONE``).
NEM_TZ = timezone(timedelta(hours=10))

_COLUMNS = (
    "nmi, nmi_suffix, interval_date, interval_length, uom, quality_method, total, "
    "interval_values, file_id, merged_at, reason_code, reason_description, interval_quality, "
    "update_datetime, header_datetime"
)


@dataclass(frozen=True)
class Interval:
    """One interval of a day version: its start (NEM time), value and quality."""

    start: datetime
    value: Decimal | None
    quality_method: str
    reason_code: str | None


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
    reason_code: str | None
    reason_description: str | None
    #: A V day's 400 ranges where its intervals differ from the day's own quality.
    interval_quality: list[dict[str, Any]] | None
    update_datetime: datetime | None
    header_datetime: datetime | None
    replaced_at: datetime | None  # None: the current version
    replaced_by: int | None

    def intervals(self) -> list[Interval]:
        """The day's intervals in order, each with its own quality (a V day's 400 range,
        else the day's)."""
        midnight = datetime.combine(self.interval_date, time(), NEM_TZ)
        ranges = self.interval_quality or []
        out = []
        for number, value in enumerate(self.interval_values, 1):
            own = next(
                (r for r in ranges if r["first_interval"] <= number <= r["last_interval"]), None
            )
            out.append(
                Interval(
                    midnight + timedelta(minutes=(number - 1) * self.interval_length),
                    value,
                    own["quality_method"] if own else self.quality_method,
                    own.get("reason_code") if own else self.reason_code,
                )
            )
        return out

    def as_json(self) -> dict[str, Any]:
        """Decimals as strings (exact), dates and times as ISO text."""
        row = asdict(self)
        row["total"] = decimal_text(self.total)
        row["interval_values"] = [decimal_text(v) for v in self.interval_values]
        for name in (
            "interval_date",
            "merged_at",
            "replaced_at",
            "update_datetime",
            "header_datetime",
        ):
            value = getattr(self, name)
            row[name] = value.isoformat() if value is not None else None
        return row


def decimal_text(value: Decimal | None) -> str | None:
    """An exact decimal as plain text without trailing zeros (None stays None)."""
    if value is None:
        return None
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
    ``as_of`` the one the table held then for each day (none before its first merge).
    In order of suffix, day and merge."""
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


@dataclass(frozen=True)
class IntervalRow:
    """One interval start across a day's versions: each version's interval there
    (None: that version has no interval starting then), and whether its value and
    its quality differ from the version's before it (the first version's never do;
    an interval only one of the two has differs in both)."""

    start: datetime
    cells: list[Interval | None]
    value_changed: list[bool]
    quality_changed: list[bool]

    def as_json(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "values": [None if c is None else decimal_text(c.value) for c in self.cells],
            "quality_methods": [None if c is None else c.quality_method for c in self.cells],
            "reason_codes": [None if c is None else c.reason_code for c in self.cells],
            "value_changed": self.value_changed,
            "quality_changed": self.quality_changed,
        }


def side_by_side(versions: list[DayVersion]) -> list[IntervalRow]:
    """The intervals of one day's versions (in merge order), one row per interval
    start of any of them, each cell held against the previous version's at that
    start: the value, and the quality (QualityMethod and ReasonCode)."""
    by_version = [{i.start: i for i in v.intervals()} for v in versions]
    starts = sorted({start for intervals in by_version for start in intervals})
    rows = []
    for start in starts:
        cells = [intervals.get(start) for intervals in by_version]
        pairs = list(pairwise(cells))
        rows.append(
            IntervalRow(
                start,
                cells,
                [False] + [_differ(a, b, lambda i: i.value) for a, b in pairs],
                [False]
                + [_differ(a, b, lambda i: (i.quality_method, i.reason_code)) for a, b in pairs],
            )
        )
    return rows


def _differ(
    before: Interval | None, after: Interval | None, part: Callable[[Interval], Any]
) -> bool:
    if before is None or after is None:
        return before is not after
    return part(before) != part(after)


# --- NEM13 reads ----------------------------------------------------------------------

#: What a read version shows of its 250 record (with its 550's fields left out).
READ_VERSION_COLUMNS = (
    *READ_SHOWN,
    "update_datetime",
    "header_datetime",
    "file_id",
    "member",
    "line_number",
    "merged_at",
)

#: Read versions newest first, as the merge ranks them.
_READ_RANK_DESC = ", ".join(f"{term} DESC" for term in READ_RANK_TERMS)


@dataclass(frozen=True)
class ReadVersion:
    """One version of one NEM13 read (a 250 record of a file), and when the
    ``meter_read`` table held it: from ``merged_at`` until ``replaced_at``."""

    nmi: str
    nmi_suffix: str
    register_id: str | None
    meter_serial_number: str | None
    direction_indicator: str
    previous_register_read_text: str
    previous_register_read_datetime: datetime
    current_register_read_text: str
    current_register_read_datetime: datetime
    current_quality_method: str
    quantity: Decimal
    uom: str
    update_datetime: datetime | None
    header_datetime: datetime | None
    file_id: int
    member: int
    line_number: int
    merged_at: datetime
    #: The first merge of a newer version overlapping this one, or its own merge if
    #: one was there already (None: current).
    replaced_at: datetime | None
    #: That version's file (of several in one merge, or there already, the newest).
    replaced_by: int | None

    @property
    def current(self) -> bool:
        return self.replaced_at is None

    @property
    def ever_held(self) -> bool:
        """False for a late older version: a newer one was there when it came."""
        return self.replaced_at is None or self.replaced_at > self.merged_at

    def as_json(self) -> dict[str, Any]:
        """Decimals as strings (exact), times as ISO text (read datetimes in NEM time)."""
        row = asdict(self)
        row["quantity"] = decimal_text(self.quantity)
        for name in ("previous_register_read_datetime", "current_register_read_datetime"):
            row[name] = getattr(self, name).astimezone(NEM_TZ).isoformat()
        for name in ("update_datetime", "header_datetime", "merged_at", "replaced_at"):
            value = getattr(self, name)
            row[name] = value.isoformat() if value is not None else None
        row["current"] = self.current
        row["ever_held"] = self.ever_held
        return row


def read_versions(
    conn: psycopg.Connection,
    nmi: str,
    date_from: date,
    date_to: date,
    as_of: datetime | None = None,
    suffixes: tuple[str, ...] = (),
) -> list[ReadVersion]:
    """The versions of an NMI's NEM13 reads whose period (previous to current read
    datetime) meets the NEM days ``[date_from, date_to)``: all of them, or with
    ``as_of`` those ``meter_read`` held then. In order of suffix, current read
    datetime and merge."""
    held = (
        ""
        if as_of is None
        else " WHERE v.merged_at <= %(as_of)s AND coalesce(r.merged_at > %(as_of)s, true)"
    )
    columns = ", ".join(f"v.{c}" for c in READ_VERSION_COLUMNS)
    rows = conn.execute(
        f"""
        SELECT {columns},
               CASE WHEN r.file_id IS NOT NULL THEN greatest(r.merged_at, v.merged_at) END
                   AS replaced_at,
               r.file_id AS replaced_by
        FROM (
            SELECT * FROM {SCHEMA}.read_version
            WHERE nmi = %(nmi)s
              AND (cardinality(%(suffixes)s::text[]) = 0 OR nmi_suffix = ANY(%(suffixes)s))
              AND previous_register_read_datetime
                  < (%(date_to)s::timestamp AT TIME ZONE '{spec.NEM_TIME_ZONE}')
              AND current_register_read_datetime
                  > (%(date_from)s::timestamp AT TIME ZONE '{spec.NEM_TIME_ZONE}')
        ) v
        LEFT JOIN LATERAL (
            SELECT w.merged_at, w.file_id FROM {SCHEMA}.read_version w
            WHERE w.nmi = v.nmi AND w.nmi_suffix = v.nmi_suffix
              AND w.previous_register_read_datetime < v.current_register_read_datetime
              AND w.current_register_read_datetime > v.previous_register_read_datetime
              AND ({READ_RANK.format(t="w")}) > ({READ_RANK.format(t="v")})
            ORDER BY greatest(w.merged_at, v.merged_at), {_READ_RANK_DESC.format(t="w")}
            LIMIT 1
        ) r ON true{held}
        ORDER BY v.nmi_suffix, v.current_register_read_datetime, v.merged_at, v.file_id,
                 v.member, v.line_number
        """,
        {
            "nmi": nmi,
            "date_from": date_from,
            "date_to": date_to,
            "as_of": as_of,
            "suffixes": list(suffixes),
        },
    ).fetchall()
    return [ReadVersion(*row) for row in rows]
