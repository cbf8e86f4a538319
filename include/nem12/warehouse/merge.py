"""The one place that knows the SQL of the merge: staging -> meter_reading.

The newest version of a reading wins, by (UpdateDateTime, header DateTime,
arrival order = ledger file_id); an older version arriving late changes
nothing. A newer version with identical values still moves the stored
version forward, so that a later-arriving middle version cannot win.
Everything happens in one transaction under an advisory lock: one merge at a
time, all or nothing. Outcomes: inserted (a new key), updated (a newer
version with other values), unchanged (a newer version, same values),
superseded (not newer than the stored version, or beaten in the same merge).

Most files bring readings nobody holds yet (a backfill, the next day's data).
Their stream spans (``staged_stream``) show that without touching a reading:
no other staged member and no stored reading falls inside them. Such files
are inserted straight, the cost of a plain INSERT; only the others go through
ranking and comparison with the stored versions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psycopg

from nem12.warehouse import ledger
from nem12.warehouse.schema import SCHEMA

OUTCOMES = ("inserted", "updated", "unchanged", "superseded")

_VERSION = (
    "coalesce({t}.update_datetime, '-infinity'), "
    "coalesce({t}.header_datetime, '-infinity'), {t}.file_id"
)
_VALUES = (
    "({t}.value, {t}.interval_length, {t}.uom, {t}.quality_method, {t}.reason_code, "
    "{t}.reason_description)"
)

#: Files whose readings collide among themselves: each staged reading ranked
#: among its key's versions (a sort of every reading by key) and given its
#: outcome; ``tid`` lets the update reach the stored row without a second join.
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
SELECT r.*, t.ctid AS tid,
       r.rank = 1 AND (t.nmi IS NULL OR ({_VERSION.format(t="r")}) > ({_VERSION.format(t="t")}))
           AS wins,
       CASE
           WHEN r.rank > 1 THEN 'superseded'
           WHEN t.nmi IS NULL THEN 'inserted'
           WHEN ({_VERSION.format(t="r")}) <= ({_VERSION.format(t="t")}) THEN 'superseded'
           WHEN {_VALUES.format(t="r")} IS NOT DISTINCT FROM {_VALUES.format(t="t")}
               THEN 'unchanged'
           ELSE 'updated'
       END AS outcome
FROM ranked r
LEFT JOIN {SCHEMA}.meter_reading t
       ON t.nmi = r.nmi AND t.nmi_suffix = r.nmi_suffix AND t.interval_start = r.interval_start
"""

_COLUMNS = (
    "nmi, nmi_suffix, interval_start, interval_length, value, uom, quality_method, "
    "reason_code, reason_description, update_datetime, header_datetime, file_id"
)

#: Per file of the batch: whether a stream of it overlaps another staged member's
#: (or repeats a date a rule let through), and whether it overlaps stored readings.
_COLLISIONS = f"""
WITH batch AS (
    SELECT * FROM {SCHEMA}.staged_stream WHERE file_id = ANY(%(file_ids)s)
)
SELECT f.file_id,
       EXISTS (
           SELECT 1 FROM batch a JOIN batch b
             ON b.nmi = a.nmi AND b.nmi_suffix = a.nmi_suffix
            AND (b.file_id, b.member) <> (a.file_id, a.member)
            AND b.first_start <= a.last_start AND a.first_start <= b.last_start
           WHERE a.file_id = f.file_id
       ) OR EXISTS (
           SELECT 1 FROM {SCHEMA}.finding r
           WHERE r.file_id = f.file_id AND r.rule = 'interval_date_repeated'
             AND r.severity <> 'error'
       ) AS within_batch,
       EXISTS (
           SELECT 1 FROM batch a JOIN {SCHEMA}.meter_reading t
             ON t.nmi = a.nmi AND t.nmi_suffix = a.nmi_suffix
            AND t.interval_start BETWEEN a.first_start AND a.last_start
           WHERE a.file_id = f.file_id
       ) AS with_stored
FROM unnest(%(file_ids)s::bigint[]) AS f(file_id)
"""

#: A staged reading as a meter_reading row (``_COLUMNS`` order); ``s`` and ``l``
#: are the staged row and its file's ledger row.
_STAGED_ROWS = f"""
SELECT s.nmi, s.nmi_suffix, s.interval_start, s.interval_length, s.value, s.uom,
       s.quality_method, s.reason_code, s.reason_description, s.update_datetime,
       l.header_datetime, s.file_id
FROM {SCHEMA}.reading_staging s
JOIN {SCHEMA}.file_ledger l USING (file_id)
WHERE s.file_id = ANY(%(file_ids)s)
"""

#: What a newer version sets on the stored row; ``{t}`` holds the version's
#: readings, ``{h}`` its header DateTime.
_NEWER_VERSION = """value = {t}.value, interval_length = {t}.interval_length, uom = {t}.uom,
    quality_method = {t}.quality_method, reason_code = {t}.reason_code,
    reason_description = {t}.reason_description, update_datetime = {t}.update_datetime,
    header_datetime = {h}.header_datetime, file_id = {t}.file_id, merged_at = now()"""

_INSERT_FRESH = f"INSERT INTO {SCHEMA}.meter_reading ({_COLUMNS}){_STAGED_ROWS}"

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
SET {_NEWER_VERSION.format(t="i", h="i")}
FROM incoming i
WHERE i.wins AND i.outcome <> 'inserted' AND t.ctid = i.tid
"""


#: Files whose readings meet only stored ones: one pass over the staged rows
#: finds each stored row through the primary key and replaces it in place when
#: the staged version is newer, reporting whether the values changed.
_APPLY_NEWER = f"""
WITH applied AS (
    UPDATE {SCHEMA}.meter_reading t
    SET {_NEWER_VERSION.format(t="s", h="l")}
    FROM {SCHEMA}.reading_staging s
    JOIN {SCHEMA}.file_ledger l USING (file_id)
    JOIN {SCHEMA}.meter_reading stored
      ON stored.nmi = s.nmi AND stored.nmi_suffix = s.nmi_suffix
     AND stored.interval_start = s.interval_start
    WHERE s.file_id = ANY(%(file_ids)s)
      AND t.ctid = stored.ctid
      AND (coalesce(s.update_datetime, '-infinity'), coalesce(l.header_datetime, '-infinity'),
           s.file_id) > ({_VERSION.format(t="stored")})
    RETURNING s.file_id, {_VALUES.format(t="s")} IS NOT DISTINCT FROM {_VALUES.format(t="stored")}
        AS same
)
SELECT file_id, CASE WHEN same THEN 'unchanged' ELSE 'updated' END, count(*)
FROM applied GROUP BY 1, 2
"""

#: The readings of those files no stored row holds yet.
_INSERT_NEW = f"""
WITH added AS (
    INSERT INTO {SCHEMA}.meter_reading ({_COLUMNS}){_STAGED_ROWS}
      AND NOT EXISTS (
        SELECT 1 FROM {SCHEMA}.meter_reading t
        WHERE t.nmi = s.nmi AND t.nmi_suffix = s.nmi_suffix
          AND t.interval_start = s.interval_start
      )
    RETURNING file_id
)
SELECT file_id, 'inserted', count(*) FROM added GROUP BY 1
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
        finished = ledger.finished_files(conn, file_ids)  # by an overlapping run's merge
        file_ids = [f for f in file_ids if f not in finished]
        collisions = conn.execute(_COLLISIONS, {"file_ids": file_ids}).fetchall()
        fresh = [f for f, within, stored in collisions if not within and not stored]
        compared = [f for f, within, stored in collisions if not within and stored]
        ranked = [f for f, within, _ in collisions if within]
        rows: list[tuple[int, str, int]] = []
        if fresh:
            conn.execute(_INSERT_FRESH, {"file_ids": fresh})
            staged = conn.execute(_STAGED_PER_FILE, {"file_ids": fresh}).fetchall()
            rows += [(file_id, "inserted", int(n)) for file_id, n in staged]
        if compared:
            rows += _merge_compared(conn, compared)
        if ranked:
            with _probing_by_key(conn):
                conn.execute(_CLASSIFY, {"file_ids": ranked})
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
            ended = ledger.record_merged(conn, file_id, got)
            if ended is not None:
                counts.status[file_id] = ended
        _clear_staging(conn, file_ids)
    return counts


def _merge_compared(conn: psycopg.Connection, file_ids: list[int]) -> list[tuple[int, str, int]]:
    """Newer versions replace stored ones; new keys are added only if some remain.

    A staged reading that neither replaced a stored one nor is new is older
    than what is stored: superseded (counted as the rest of the file's readings).
    """
    params = {"file_ids": file_ids}
    staged = {f: int(n) for f, n in conn.execute(_STAGED_PER_FILE, params).fetchall()}
    with _probing_by_key(conn):
        rows = [(f, outcome, int(n)) for f, outcome, n in conn.execute(_APPLY_NEWER, params)]
        if sum(n for *_, n in rows) < sum(staged.values()):
            rows += [(f, outcome, int(n)) for f, outcome, n in conn.execute(_INSERT_NEW, params)]
    counted: dict[int, int] = {}
    for f, _, n in rows:
        counted[f] = counted.get(f, 0) + n
    rows += [(f, "superseded", n - counted.get(f, 0)) for f, n in staged.items()]
    return rows


@contextmanager
def _probing_by_key(conn: psycopg.Connection) -> Iterator[None]:
    """Join staged readings to stored ones row by row: by key through the primary
    key, then by ctid. Without this the planner may hash the whole table (tens
    of millions of rows) to change a few."""
    conn.execute("SET LOCAL enable_hashjoin = off")
    conn.execute("SET LOCAL enable_mergejoin = off")
    yield
    conn.execute("SET LOCAL enable_hashjoin = on")
    conn.execute("SET LOCAL enable_mergejoin = on")


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
