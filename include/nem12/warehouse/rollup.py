"""The daily rollup, the one place that knows the SQL of ``day_rollup``.

A row sums one stream's day as ``meter_day`` holds it: the total, the
intervals per quality class and the intervals without a reading (QualityFlag
N). Only the days the merge changed are refreshed, taken in order from
``day_change`` (``nem12.warehouse.changes``), so a refresh costs what the
merges since the last one changed, and running it again changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from nem12.format import spec
from nem12.warehouse import changes
from nem12.warehouse.schema import (
    DAY_KEY,
    ROLLUP_CLASS_COLUMNS,
    ROLLUP_COLUMNS,
    ROLLUP_QUALITY_COLUMNS,
    SCHEMA,
)

CONSUMER = "day_rollup"

_KEY = ", ".join(DAY_KEY)
_SAME_DAY = " AND ".join(f"{{a}}.{c} = {{b}}.{c}" for c in DAY_KEY)
_SUMS = {
    "intervals": f"{spec.MINUTES_PER_DAY} / d.interval_length",
    **{column: f"d.{column}" for column in ROLLUP_QUALITY_COLUMNS},
    ROLLUP_CLASS_COLUMNS["N"]: "d.null_intervals",
}

#: The changed days as the meter table holds them now.
_REFRESH = f"""
INSERT INTO {SCHEMA}.day_rollup ({", ".join(ROLLUP_COLUMNS)}, refreshed_at)
SELECT {", ".join(_SUMS.get(c, f"d.{c}") for c in ROLLUP_COLUMNS)}, now()
FROM changed_day c
JOIN {SCHEMA}.meter_day d ON {_SAME_DAY.format(a="d", b="c")}
ON CONFLICT ({_KEY}) DO UPDATE SET
    {", ".join(f"{c} = EXCLUDED.{c}" for c in ROLLUP_COLUMNS if c not in DAY_KEY)},
    refreshed_at = EXCLUDED.refreshed_at
"""

#: A changed day the meter table no longer holds (removed by its owner) leaves the rollup.
_DROP_GONE = f"""
DELETE FROM {SCHEMA}.day_rollup r
USING changed_day c
WHERE {_SAME_DAY.format(a="r", b="c")}
  AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.meter_day d WHERE {_SAME_DAY.format(a="d", b="c")})
"""


@dataclass
class Refreshed:
    """What a refresh did: changes taken, rollup rows written and removed, in batches."""

    changes: int = 0
    days: int = 0
    removed: int = 0
    batches: int = 0


def refresh(conn: psycopg.Connection, batch_changes: int = changes.BATCH_CHANGES) -> Refreshed:
    """Bring ``day_rollup`` up to date with every change not yet rolled up, one
    transaction per batch of changes (an interrupted catch-up keeps its batches)."""
    done = Refreshed()
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('nem12 day_rollup'))")
            taken = changes.take_changes(conn, CONSUMER, batch_changes)
            if not taken:
                break
            done.days += conn.execute(_REFRESH).rowcount
            done.removed += conn.execute(_DROP_GONE).rowcount
        done.changes += taken
        done.batches += 1
    with conn.transaction():
        changes.forget_taken(conn)
    return done
