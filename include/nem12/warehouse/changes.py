"""The days the merge changed, read in order by each downstream consumer: the one
place that knows the SQL of ``day_change`` and ``change_cursor``.

The merge appends a row for every day a newer version won. A consumer (the
daily rollup, the alerts) takes the changes after its cursor in batches, works
on them and moves its cursor in the same transaction: a run that fails leaves
the cursor where it was, a run after downtime takes everything it missed, and a
re-run finds nothing new.
"""

from __future__ import annotations

import psycopg

from nem12.warehouse.schema import CHANGE_CONSUMERS, SCHEMA

#: Changes per transaction when a consumer catches up.
BATCH_CHANGES = 200_000

#: The merge's note of the days whose newer version it stored (``incoming.wins``).
NOTE_CHANGED_DAYS = f"""
INSERT INTO {SCHEMA}.day_change (nmi, nmi_suffix, interval_date, file_id, changed_at)
SELECT nmi, nmi_suffix, interval_date, file_id, %(merged_at)s FROM incoming WHERE wins
ORDER BY nmi, nmi_suffix, interval_date
"""


def take_changes(
    conn: psycopg.Connection,
    consumer: str,
    limit: int = BATCH_CHANGES,
    through: int | None = None,
) -> int:
    """Within the caller's transaction: the next ``limit`` changes after ``consumer``'s
    cursor (up to change ``through`` when given) as ``TEMP TABLE changed_day`` (nmi,
    nmi_suffix, interval_date; each day once), the cursor moved past them. Returns how
    many changes were taken."""
    if consumer not in CHANGE_CONSUMERS:
        raise ValueError(f"unknown consumer of day_change: {consumer!r}")
    row = conn.execute(
        f"SELECT change_id FROM {SCHEMA}.change_cursor WHERE consumer = %s FOR UPDATE",
        (consumer,),
    ).fetchone()
    after = row[0] if row else 0
    conn.execute("DROP TABLE IF EXISTS changed_day")
    conn.execute(
        f"""
        CREATE TEMP TABLE changed_day ON COMMIT DROP AS
        WITH batch AS (
            SELECT change_id, nmi, nmi_suffix, interval_date FROM {SCHEMA}.day_change
            WHERE change_id > %(after)s
              AND (%(through)s::bigint IS NULL OR change_id <= %(through)s::bigint)
            ORDER BY change_id LIMIT %(limit)s
        )
        SELECT nmi, nmi_suffix, interval_date, max(change_id) AS change_id, count(*) AS changes
        FROM batch GROUP BY nmi, nmi_suffix, interval_date
        """,
        {"after": after, "limit": limit, "through": through},
    )
    taken, upto = conn.execute("SELECT sum(changes), max(change_id) FROM changed_day").fetchone()
    if not taken:
        return 0
    conn.execute(
        f"""
        INSERT INTO {SCHEMA}.change_cursor (consumer, change_id, moved_at)
        VALUES (%s, %s, now())
        ON CONFLICT (consumer) DO UPDATE SET change_id = EXCLUDED.change_id, moved_at = now()
        """,
        (consumer, upto),
    )
    conn.execute("ANALYZE changed_day")
    return int(taken)


def cursor(conn: psycopg.Connection, consumer: str) -> int:
    """The last change ``consumer`` has taken (0: none)."""
    row = conn.execute(
        f"SELECT change_id FROM {SCHEMA}.change_cursor WHERE consumer = %s", (consumer,)
    ).fetchone()
    return int(row[0]) if row else 0


def pending(conn: psycopg.Connection, consumer: str) -> int:
    """How many changes ``consumer`` has not taken yet."""
    row = conn.execute(
        f"""
        SELECT count(*) FROM {SCHEMA}.day_change
        WHERE change_id > coalesce((SELECT change_id FROM {SCHEMA}.change_cursor
                                    WHERE consumer = %s), 0)
        """,
        (consumer,),
    ).fetchone()
    return int(row[0])


def forget_taken(conn: psycopg.Connection) -> int:
    """Delete the changes every consumer has taken; how many went."""
    deleted = conn.execute(
        f"""
        DELETE FROM {SCHEMA}.day_change
        WHERE change_id <= (SELECT min(change_id) FROM {SCHEMA}.change_cursor
                            WHERE consumer = ANY(%s))
        """,
        (list(CHANGE_CONSUMERS),),
    )
    return deleted.rowcount
