"""The one place that knows the SQL of the merge: day_staging -> meter_day.

NEM12 versions data by the day, so the merge does too. The newest version of
a day wins, by (UpdateDateTime, header DateTime, arrival order = ledger
file_id); an older version arriving late changes nothing. A newer version
replaces the whole stored day, so a day re-sent at another interval length
leaves nothing of the old one; one with identical values still moves the
stored version forward, so that a later-arriving middle version cannot win.
Everything happens in one transaction under an advisory lock: one merge at a
time, all or nothing. Every day a newer version won is noted in ``day_change``
for the consumers downstream (``nem12.warehouse.changes``).

Outcomes are counted per reading, as the ledger and the metrics report them:
inserted (no stored reading at its interval), updated (a newer version with
another value or quality), unchanged (a newer version, same reading),
superseded (not newer than the stored day, or beaten in the same merge).

NEM13 reads (read_staging -> meter_read) are versioned by read, in the same
transaction: every version is kept in ``read_version``, and a read is current
when no newer version of its data stream overlaps its period. Outcomes count
reads: inserted (it overlaps no stored read), unchanged (it replaces the
stored read at its key with the same reads, quality and quantity), updated
(it replaces others), superseded (a newer version overlaps it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from nem12.format import spec
from nem12.warehouse import changes, ledger
from nem12.warehouse.schema import DAY_FIELDS, DAY_KEY, READ_FIELDS, READ_KEY, SCHEMA

OUTCOMES = ("inserted", "updated", "unchanged", "superseded")

_VERSION = (
    "coalesce({t}.update_datetime, '-infinity'), "
    "coalesce({t}.header_datetime, '-infinity'), {t}.file_id"
)
_JOIN_KEY = " AND ".join(f"{{a}}.{c} = {{b}}.{c}" for c in DAY_KEY)

#: Each staged day ranked among its key's versions and held against the stored
#: day: ``wins`` (it replaces or adds the stored day), ``outcome`` (inserted or
#: superseded for all its readings, or compared reading by reading).
_CLASSIFY = f"""
CREATE TEMP TABLE incoming ON COMMIT DROP AS
WITH ranked AS (
    SELECT s.file_id, s.member, s.line_number, s.nmi, s.nmi_suffix, s.interval_date,
           {spec.MINUTES_PER_DAY} / s.interval_length AS readings,
           s.update_datetime, l.header_datetime,
           row_number() OVER (
               PARTITION BY s.nmi, s.nmi_suffix, s.interval_date
               ORDER BY s.update_datetime DESC NULLS LAST, l.header_datetime DESC NULLS LAST,
                        s.file_id DESC, s.member DESC, s.line_number DESC
           ) AS rank
    FROM {SCHEMA}.day_staging s
    JOIN {SCHEMA}.file_ledger l USING (file_id)
    WHERE s.file_id = ANY(%(file_ids)s)
)
SELECT r.file_id, r.member, r.line_number, r.nmi, r.nmi_suffix, r.interval_date, r.readings,
       r.rank = 1 AND (t.nmi IS NULL OR ({_VERSION.format(t="r")}) > ({_VERSION.format(t="t")}))
           AS wins,
       CASE
           WHEN r.rank > 1 THEN 'superseded'
           WHEN t.nmi IS NULL THEN 'inserted'
           WHEN ({_VERSION.format(t="r")}) <= ({_VERSION.format(t="t")}) THEN 'superseded'
           ELSE 'compared'
       END AS outcome
FROM ranked r
LEFT JOIN {SCHEMA}.meter_day t ON {_JOIN_KEY.format(a="t", b="r")}
"""

#: Each newer version held against its stored day. Most corrections keep the
#: day's shape (same interval length, no 400 ranges on either side): then a
#: changed day-level quality changes every reading, else the readings that
#: changed are the values that differ, counted position by position.
#: ``updated`` is null for the other days, compared reading by reading.
_PAIRS = f"""
CREATE TEMP TABLE compared ON COMMIT DROP AS
SELECT i.file_id, i.member, i.line_number, i.nmi, i.nmi_suffix, i.interval_date, i.readings,
       CASE
           WHEN s.interval_length <> t.interval_length
                OR s.interval_quality IS NOT NULL OR t.interval_quality IS NOT NULL THEN NULL
           WHEN (s.uom, s.quality_method, s.reason_code, s.reason_description)
                IS DISTINCT FROM (t.uom, t.quality_method, t.reason_code, t.reason_description)
               THEN i.readings
           WHEN s.interval_values = t.interval_values THEN 0
           ELSE (SELECT count(*) FROM unnest(s.interval_values, t.interval_values) AS v(new, old)
                 WHERE v.new IS DISTINCT FROM v.old)
       END AS updated
FROM incoming i
JOIN {SCHEMA}.day_staging s USING (file_id, member, line_number)
JOIN {SCHEMA}.meter_day t ON {_JOIN_KEY.format(a="t", b="i")}
WHERE i.outcome = 'compared'
"""

_SAME_SHAPE = """
SELECT file_id, 'updated', sum(updated) FROM compared WHERE updated IS NOT NULL GROUP BY 1
UNION ALL
SELECT file_id, 'unchanged', sum(readings - updated) FROM compared
WHERE updated IS NOT NULL GROUP BY 1
"""

_DAY_READINGS = (
    "{s}.interval_values, {s}.interval_length, {s}.quality_method, {s}.reason_code, "
    "{s}.reason_description, {s}.interval_quality"
)
_READING = (
    "{r}.value, {s}.interval_length, {s}.uom, {r}.quality_method, {r}.reason_code, "
    "{r}.reason_description"
)
_READING_OF = (
    "({t}.value, {t}.interval_length, {t}.uom, {t}.quality_method, {t}.reason_code, "
    "{t}.reason_description)"
)


#: The other newer versions, reading by reading against the stored ones at the
#: same interval start (another interval length, or 400 ranges). Both sides'
#: readings are written out first, each under the staged day it is compared for
#: (file_id, member, line_number: integers, cheap to join), and the two sets
#: joined: joined as a lateral function each, the planner may rerun one side
#: per row of the other.
def _readings_of(table: str, staged: bool) -> str:
    """Write out the readings of the days compared reading by reading: the staged
    versions, or the stored days they meet."""
    day = "s" if staged else "t"
    source = (
        f"JOIN {SCHEMA}.day_staging s USING (file_id, member, line_number)"
        if staged
        else f"JOIN {SCHEMA}.meter_day t ON {_JOIN_KEY.format(a='t', b='c')}"
    )
    return f"""
CREATE TEMP TABLE {table} ON COMMIT DROP AS
SELECT c.file_id, c.member, c.line_number, r.start_minute,
       {_READING.format(r="r", s=day)}
FROM compared c
{source}
CROSS JOIN LATERAL {SCHEMA}.day_readings({_DAY_READINGS.format(s=day)}) r
WHERE c.updated IS NULL
"""


_NEW_READINGS = _readings_of("new_reading", staged=True)
_OLD_READINGS = _readings_of("old_reading", staged=False)

_READING_BY_READING = f"""
SELECT new.file_id,
       CASE WHEN old.file_id IS NULL THEN 'inserted'
            WHEN {_READING_OF.format(t="new")} IS NOT DISTINCT FROM {_READING_OF.format(t="old")}
                THEN 'unchanged'
            ELSE 'updated' END,
       count(*)
FROM new_reading new
LEFT JOIN old_reading old USING (file_id, member, line_number, start_minute)
GROUP BY 1, 2
"""

_WHOLE_DAYS = """
SELECT file_id, outcome, sum(readings) FROM incoming
WHERE outcome <> 'compared' GROUP BY 1, 2
"""

_VERSION_FIELDS = ("header_datetime", "file_id", "merged_at")
_STORED_COLUMNS = ", ".join((*DAY_KEY, *DAY_FIELDS, *_VERSION_FIELDS))

#: The winning days in place of the stored ones (or beside them, if new).
_UPSERT = f"""
INSERT INTO {SCHEMA}.meter_day ({_STORED_COLUMNS})
SELECT {", ".join(f"s.{c}" for c in (*DAY_KEY, *DAY_FIELDS))}, l.header_datetime, s.file_id,
       %(merged_at)s
FROM incoming i
JOIN {SCHEMA}.day_staging s USING (file_id, member, line_number)
JOIN {SCHEMA}.file_ledger l ON l.file_id = s.file_id
WHERE i.wins
ON CONFLICT ({", ".join(DAY_KEY)}) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in (*DAY_FIELDS, *_VERSION_FIELDS))}
"""


# --- NEM13 reads --------------------------------------------------------------------
#: How NEM13 read versions rank, oldest first (``{t}``: the table's alias).
READ_RANK_TERMS = (
    "coalesce({t}.update_datetime, '-infinity')",
    "coalesce({t}.header_datetime, '-infinity')",
    "{t}.file_id",
    "{t}.member",
    "{t}.line_number",
)
READ_RANK = ", ".join(READ_RANK_TERMS)
_READ_COLUMNS = ", ".join((*READ_KEY, *READ_FIELDS))
_SAME_STREAM = "{a}.nmi = {b}.nmi AND {a}.nmi_suffix = {b}.nmi_suffix"
_SAME_READ_KEY = " AND ".join(f"{{a}}.{c} = {{b}}.{c}" for c in READ_KEY)
#: Two reads of a stream whose periods (previous to current read) overlap.
_OVERLAP = (
    _SAME_STREAM + " AND {a}.previous_register_read_datetime < {b}.current_register_read_datetime"
    " AND {a}.current_register_read_datetime > {b}.previous_register_read_datetime"
)
#: What a reader of the read sees: a same-key version with these equal is unchanged.
_READ_CONTENT = tuple(c for c in READ_FIELDS if c not in ("update_datetime", "msats_load_datetime"))

#: The merged files' reads become versions (a retried merge finds them there).
_TAKE_READ_VERSIONS = f"""
INSERT INTO {SCHEMA}.read_version (file_id, member, line_number, {_READ_COLUMNS}, header_datetime,
                                    merged_at)
SELECT s.file_id, s.member, s.line_number, {", ".join(f"s.{c}" for c in (*READ_KEY, *READ_FIELDS))},
       l.header_datetime, %(merged_at)s
FROM {SCHEMA}.read_staging s
JOIN {SCHEMA}.file_ledger l USING (file_id)
WHERE s.file_id = ANY(%(file_ids)s)
ON CONFLICT (file_id, member, line_number) DO NOTHING
"""

#: The current reads of the streams the merge touches: versions no newer
#: overlapping version beats (pairwise non-overlapping, one per key).
_TOUCHED_STREAMS = f"""
CREATE TEMP TABLE touched_stream ON COMMIT DROP AS
SELECT DISTINCT nmi, nmi_suffix FROM {SCHEMA}.read_staging WHERE file_id = ANY(%(file_ids)s)
"""
_CURRENT_READS = f"""
CREATE TEMP TABLE current_read ON COMMIT DROP AS
SELECT v.*
FROM {SCHEMA}.read_version v
JOIN touched_stream t USING (nmi, nmi_suffix)
WHERE NOT EXISTS (
    SELECT 1 FROM {SCHEMA}.read_version w
    WHERE {_OVERLAP.format(a="w", b="v")}
      AND ({READ_RANK.format(t="w")}) > ({READ_RANK.format(t="v")})
)
"""

#: Each merged read's outcome, against the stored reads before the merge.
_READ_OUTCOMES = f"""
SELECT s.file_id,
       CASE
           WHEN c.file_id IS NULL THEN 'superseded'
           WHEN NOT EXISTS (SELECT 1 FROM {SCHEMA}.meter_read m
                            WHERE {_OVERLAP.format(a="m", b="s")}) THEN 'inserted'
           WHEN EXISTS (SELECT 1 FROM {SCHEMA}.meter_read m
                        WHERE {_SAME_READ_KEY.format(a="m", b="s")}
                          AND ({", ".join(f"m.{c}" for c in _READ_CONTENT)})
                              IS NOT DISTINCT FROM ({", ".join(f"s.{c}" for c in _READ_CONTENT)}))
                AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.meter_read m
                                WHERE {_OVERLAP.format(a="m", b="s")}
                                  AND m.current_register_read_datetime
                                      <> s.current_register_read_datetime) THEN 'unchanged'
           ELSE 'updated'
       END,
       count(*)
FROM {SCHEMA}.read_staging s
LEFT JOIN current_read c USING (file_id, member, line_number)
WHERE s.file_id = ANY(%(file_ids)s)
GROUP BY 1, 2
"""

#: The touched streams' stored reads made the current ones: the others go, the
#: new ones come in.
_DROP_STALE_READS = f"""
DELETE FROM {SCHEMA}.meter_read m
USING touched_stream t
WHERE {_SAME_STREAM.format(a="m", b="t")}
  AND NOT EXISTS (SELECT 1 FROM current_read c
                  WHERE {_SAME_READ_KEY.format(a="c", b="m")} AND c.file_id = m.file_id)
"""
_ADD_CURRENT_READS = f"""
INSERT INTO {SCHEMA}.meter_read ({_READ_COLUMNS}, header_datetime, file_id, merged_at)
SELECT {", ".join(f"c.{c}" for c in (*READ_KEY, *READ_FIELDS))}, c.header_datetime, c.file_id,
       %(merged_at)s
FROM current_read c
WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.meter_read m
                  WHERE {_SAME_READ_KEY.format(a="m", b="c")} AND m.file_id = c.file_id)
"""


def _merge_reads(
    conn: psycopg.Connection, file_ids: list[int], merged_at: datetime
) -> list[tuple[int, str, int]]:
    """Merge the staged NEM13 reads of ``file_ids``; their outcomes per file."""
    staged = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.read_staging WHERE file_id = ANY(%s))",
        (file_ids,),
    ).fetchone()
    if not staged or not staged[0]:
        return []
    conn.execute(_TAKE_READ_VERSIONS, {"file_ids": file_ids, "merged_at": merged_at})
    conn.execute(_TOUCHED_STREAMS, {"file_ids": file_ids})
    conn.execute(_CURRENT_READS)
    outcomes = conn.execute(_READ_OUTCOMES, {"file_ids": file_ids}).fetchall()
    conn.execute(_DROP_STALE_READS)
    conn.execute(_ADD_CURRENT_READS, {"merged_at": merged_at})
    return outcomes


#: The stored days the winners replace, kept as versions (``history``).
_KEEP_REPLACED = f"""
INSERT INTO {SCHEMA}.meter_day_version ({_STORED_COLUMNS}, replaced_at, replaced_by)
SELECT {", ".join(f"t.{c}" for c in (*DAY_KEY, *DAY_FIELDS, *_VERSION_FIELDS))}, %(merged_at)s,
       i.file_id
FROM incoming i
JOIN {SCHEMA}.meter_day t ON {_JOIN_KEY.format(a="t", b="i")}
WHERE i.wins
"""

#: Versions replaced longer ago than the retention go.
_FORGET_VERSIONS = f"""
DELETE FROM {SCHEMA}.meter_day_version WHERE replaced_at < now() - %(keep)s * interval '1 day'
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


def merge_files(
    conn: psycopg.Connection, file_ids: list[int], history_days: int | None = None
) -> MergeCounts:
    """Merge the staged days and reads of ``file_ids``; mark them loaded with their
    counts. Each day version replaced is kept, for ``history_days`` if given."""
    counts = MergeCounts()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('nem12 merge'))")
        # the moment the merge holds the table: a merge that waited for the lock is
        # dated after the one it waited for (now() would be its transaction's start)
        at = {"merged_at": conn.execute("SELECT clock_timestamp()").fetchone()[0]}
        finished = ledger.finished_files(conn, file_ids)  # by an overlapping run's merge
        file_ids = [f for f in file_ids if f not in finished]
        conn.execute(_CLASSIFY, {"file_ids": file_ids})
        conn.execute("ANALYZE incoming")
        rows = conn.execute(_WHOLE_DAYS).fetchall()
        conn.execute(_PAIRS)
        rows += conn.execute(_SAME_SHAPE).fetchall() + _reading_by_reading(conn)
        conn.execute(_KEEP_REPLACED, at)
        conn.execute(_UPSERT, at)
        conn.execute(changes.NOTE_CHANGED_DAYS, at)
        if history_days is not None:
            conn.execute(_FORGET_VERSIONS, {"keep": history_days})
        rows += _merge_reads(conn, file_ids, at["merged_at"])
        for file_id, outcome, n in rows:
            per_file = counts.per_file.setdefault(file_id, dict.fromkeys(OUTCOMES, 0))
            per_file[outcome] += int(n)
            setattr(counts, outcome, getattr(counts, outcome) + int(n))
        for file_id in file_ids:
            counts.per_file.setdefault(file_id, dict.fromkeys(OUTCOMES, 0))
        counts.status = ledger.record_merged(conn, {f: counts.per_file[f] for f in file_ids})
        _clear_staging(conn, file_ids)
    return counts


def _reading_by_reading(conn: psycopg.Connection) -> list[tuple[int, str, int]]:
    """Outcomes of the compared days whose shape changed or that hold 400 ranges."""
    if not conn.execute("SELECT EXISTS (SELECT 1 FROM compared WHERE updated IS NULL)").fetchone()[
        0
    ]:
        return []
    conn.execute(_NEW_READINGS)
    conn.execute(_OLD_READINGS)
    conn.execute("ANALYZE new_reading")
    conn.execute("ANALYZE old_reading")
    return conn.execute(_READING_BY_READING).fetchall()


def _clear_staging(conn: psycopg.Connection, file_ids: list[int]) -> None:
    """Drop the merged files' staging rows: TRUNCATE when no other file is staged.

    Truncating costs nothing and returns the space at once. The lock waits for
    loads still copying; their rows then count as other files.
    """
    for table in ("day_staging", "read_staging"):
        conn.execute(f"LOCK TABLE {SCHEMA}.{table} IN ACCESS EXCLUSIVE MODE")
    others = conn.execute(
        f"""
        SELECT EXISTS (SELECT 1 FROM {SCHEMA}.day_staging WHERE file_id <> ALL(%(ids)s))
            OR EXISTS (SELECT 1 FROM {SCHEMA}.read_staging WHERE file_id <> ALL(%(ids)s))
            OR EXISTS (SELECT 1 FROM {SCHEMA}.file_ledger
                        WHERE status = 'staged' AND file_id <> ALL(%(ids)s))
        """,
        {"ids": file_ids},
    ).fetchone()
    if others and others[0]:
        for table in ("day_staging", "read_staging"):
            conn.execute(f"DELETE FROM {SCHEMA}.{table} WHERE file_id = ANY(%s)", (file_ids,))
    else:
        conn.execute(f"TRUNCATE {SCHEMA}.day_staging, {SCHEMA}.read_staging")
