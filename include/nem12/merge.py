"""The one place that knows the SQL of the merge: staging -> meter_reading.

The newest version of a reading wins, by (UpdateDateTime, header DateTime,
arrival order = ledger file_id); an older version arriving late changes
nothing. A newer version with identical values still moves the stored
version forward, so that a later-arriving middle version cannot win.
Everything happens in one transaction under an advisory lock: one merge at a
time, all or nothing.

Most files bring readings nobody holds yet (a backfill, the next day's data).
Their stream spans (``staged_stream``) show that without touching a reading:
no other staged member and no stored reading falls inside them. Such files
are inserted straight, the cost of a plain INSERT; only the others go through
ranking and comparison with the stored versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import psycopg

from nem12.database import SCHEMA

OUTCOMES = ("inserted", "updated", "unchanged", "superseded")

_VERSION = (
    "coalesce({t}.update_datetime, '-infinity'), "
    "coalesce({t}.header_datetime, '-infinity'), {t}.file_id"
)
_VALUES = (
    "({t}.value, {t}.interval_length, {t}.uom, {t}.quality_method, {t}.reason_code, "
    "{t}.reason_description)"
)

_CLASSIFY = f"""
CREATE TEMP TABLE incoming ON COMMIT DROP AS
WITH ranked AS (
    SELECT s.*, l.header_datetime,
           row_number() OVER (
               PARTITION BY s.nmi, s.nmi_suffix, s.interval_start
               ORDER BY s.update_datetime DESC NULLS LAST, l.header_datetime DESC NULLS LAST,
                        s.file_id DESC
           ) AS rank
    FROM {SCHEMA}.reading_staging s
    JOIN {SCHEMA}.file_ledger l USING (file_id)
    WHERE s.file_id = ANY(%(file_ids)s)
)
SELECT r.*,
       r.rank = 1 AND (t.nmi IS NULL OR ({_VERSION.format(t="r")}) > ({_VERSION.format(t="t")}))
           AS wins,
       CASE
           WHEN r.rank > 1 THEN 'superseded'
           WHEN t.nmi IS NULL THEN 'inserted'
           WHEN {_VALUES.format(t="r")} IS NOT DISTINCT FROM {_VALUES.format(t="t")}
               THEN 'unchanged'
           WHEN ({_VERSION.format(t="r")}) > ({_VERSION.format(t="t")}) THEN 'updated'
           ELSE 'superseded'
       END AS outcome
FROM ranked r
LEFT JOIN {SCHEMA}.meter_reading t
       ON t.nmi = r.nmi AND t.nmi_suffix = r.nmi_suffix AND t.interval_start = r.interval_start
"""

_COLUMNS = (
    "nmi, nmi_suffix, interval_start, interval_length, value, uom, quality_method, "
    "reason_code, reason_description, update_datetime, header_datetime, file_id"
)

#: Files of the batch none of whose streams can collide with another member's
#: staged readings or with stored ones (or repeat a date a rule let through).
_FRESH = f"""
WITH batch AS (
    SELECT * FROM {SCHEMA}.staged_stream WHERE file_id = ANY(%(file_ids)s)
)
SELECT f.file_id
FROM unnest(%(file_ids)s::bigint[]) AS f(file_id)
WHERE NOT EXISTS (
    SELECT 1 FROM batch a
    WHERE a.file_id = f.file_id
      AND (
        EXISTS (
            SELECT 1 FROM batch b
            WHERE (b.file_id, b.member) <> (a.file_id, a.member)
              AND b.nmi = a.nmi AND b.nmi_suffix = a.nmi_suffix
              AND b.first_start <= a.last_start AND a.first_start <= b.last_start
        )
        OR EXISTS (
            SELECT 1 FROM {SCHEMA}.meter_reading t
            WHERE t.nmi = a.nmi AND t.nmi_suffix = a.nmi_suffix
              AND t.interval_start BETWEEN a.first_start AND a.last_start
        )
      )
)
AND NOT EXISTS (
    SELECT 1 FROM {SCHEMA}.finding r
    WHERE r.file_id = f.file_id AND r.rule = 'interval_date_repeated' AND r.severity <> 'error'
)
"""

_INSERT_FRESH = f"""
INSERT INTO {SCHEMA}.meter_reading ({_COLUMNS})
SELECT s.nmi, s.nmi_suffix, s.interval_start, s.interval_length, s.value, s.uom,
       s.quality_method, s.reason_code, s.reason_description, s.update_datetime,
       l.header_datetime, s.file_id
FROM {SCHEMA}.reading_staging s
JOIN {SCHEMA}.file_ledger l USING (file_id)
WHERE s.file_id = ANY(%(file_ids)s)
"""

_STAGED_PER_FILE = f"""
SELECT file_id, sum(readings) FROM {SCHEMA}.staged_stream
WHERE file_id = ANY(%(file_ids)s) GROUP BY file_id
"""

_INSERT = f"""
INSERT INTO {SCHEMA}.meter_reading ({_COLUMNS})
SELECT {_COLUMNS} FROM incoming WHERE outcome = 'inserted'
"""

_UPDATE = f"""
UPDATE {SCHEMA}.meter_reading t
SET value = i.value, interval_length = i.interval_length, uom = i.uom,
    quality_method = i.quality_method, reason_code = i.reason_code,
    reason_description = i.reason_description, update_datetime = i.update_datetime,
    header_datetime = i.header_datetime, file_id = i.file_id, merged_at = now()
FROM incoming i
WHERE i.wins AND i.outcome <> 'inserted'
  AND t.nmi = i.nmi AND t.nmi_suffix = i.nmi_suffix AND t.interval_start = i.interval_start
"""


@dataclass
class MergeCounts:
    """Readings of a merge by outcome, in all and per file."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    superseded: int = 0
    per_file: dict[int, dict[str, int]] = field(default_factory=dict)
    #: The ledger status each merged file ended with: loaded, or partial.
    status: dict[int, str] = field(default_factory=dict)

    @property
    def readings(self) -> int:
        return self.inserted + self.updated + self.unchanged + self.superseded


def merge_files(conn: psycopg.Connection, file_ids: list[int]) -> MergeCounts:
    """Merge the staged readings of ``file_ids``; mark them loaded with their counts."""
    counts = MergeCounts()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('nem12 merge'))")
        params = {"file_ids": file_ids}
        fresh = [row[0] for row in conn.execute(_FRESH, params).fetchall()]
        rest = [f for f in file_ids if f not in set(fresh)]
        rows: list[tuple[int, str, int]] = []
        if fresh:
            conn.execute(_INSERT_FRESH, {"file_ids": fresh})
            staged = conn.execute(_STAGED_PER_FILE, {"file_ids": fresh}).fetchall()
            rows += [(file_id, "inserted", int(n)) for file_id, n in staged]
        if rest:
            conn.execute(_CLASSIFY, {"file_ids": rest})
            conn.execute(_INSERT)
            conn.execute(_UPDATE)
            rows += conn.execute(
                "SELECT file_id, outcome, count(*) FROM incoming GROUP BY file_id, outcome"
            ).fetchall()
        for file_id, outcome, n in rows:
            per_file = counts.per_file.setdefault(file_id, dict.fromkeys(OUTCOMES, 0))
            per_file[outcome] = n
            setattr(counts, outcome, getattr(counts, outcome) + n)
        for file_id in file_ids:
            got = counts.per_file.setdefault(file_id, dict.fromkeys(OUTCOMES, 0))
            ended = conn.execute(
                f"""
                UPDATE {SCHEMA}.file_ledger
                SET status = CASE WHEN quality = 'partial' THEN 'partial' ELSE 'loaded' END,
                    readings = %(readings)s, inserted = %(inserted)s,
                    updated = %(updated)s, unchanged = %(unchanged)s,
                    superseded = %(superseded)s, updated_at = now()
                WHERE file_id = %(file_id)s
                RETURNING status
                """,
                {"file_id": file_id, "readings": sum(got.values()), **got},
            ).fetchone()
            if ended is not None:
                counts.status[file_id] = ended[0]
        _clear_staging(conn, file_ids)
    return counts


def _clear_staging(conn: psycopg.Connection, file_ids: list[int]) -> None:
    """Drop the merged files' staging rows: TRUNCATE when no other file is staged.

    Deleting a big file's rows costs as much as writing them; truncating costs
    nothing. The lock waits for loads still copying; their streams then count
    as other files (a load commits its rows and its streams together).
    """
    tables = (f"{SCHEMA}.reading_staging", f"{SCHEMA}.staged_stream")
    conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
    others = conn.execute(
        f"""
        SELECT EXISTS (SELECT 1 FROM {SCHEMA}.staged_stream WHERE file_id <> ALL(%(ids)s))
            OR EXISTS (SELECT 1 FROM {SCHEMA}.file_ledger
                        WHERE status = 'staged' AND file_id <> ALL(%(ids)s))
        """,
        {"ids": file_ids},
    ).fetchone()
    if others and others[0]:
        for table in tables:
            conn.execute(f"DELETE FROM {table} WHERE file_id = ANY(%s)", (file_ids,))
    else:
        conn.execute(f"TRUNCATE {', '.join(tables)}")
