"""The steps of the nem12_daily DAG, downstream of the meter table, free of Airflow.

Each step reads the days the merges changed from its own cursor
(``nem12.warehouse.changes``), so it may run after every Asset event or after
hours of downtime with the same result, and a re-run does nothing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import psycopg

from nem12.warehouse import rollup

log = logging.getLogger(__name__)


def refresh_rollups(conn: psycopg.Connection) -> dict[str, int]:
    """Refresh the daily rollup for every day changed since the last refresh."""
    done = rollup.refresh(conn)
    log.info(
        "day_rollup: %d changes taken in %d batches, %d days refreshed, %d removed",
        done.changes,
        done.batches,
        done.days,
        done.removed,
    )
    return asdict(done)
