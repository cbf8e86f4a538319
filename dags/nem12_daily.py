"""Downstream of the merge, on every change of the meter table: the daily rollup.

Scheduled on the ``nem12_meter_reading`` Asset alone. Each run takes every day
changed since the previous run (however many events or hours it missed), so
runs never need a backfill; one runs at a time.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag, task
from nem12_common import DEFAULT_ARGS, METER_READING, our_process, postgres


@dag(
    schedule=[METER_READING],
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["nem12", "meter-data"],
    doc_md=__doc__,
)
def nem12_daily() -> None:
    @task
    def refresh_rollups() -> dict[str, int]:
        """Refresh ``day_rollup`` for the days the merges changed."""
        our_process()
        from nem12.pipeline import downstream, steps

        with postgres() as conn:
            steps.prepare(conn)
            return downstream.refresh_rollups(conn)

    refresh_rollups()


nem12_daily()
