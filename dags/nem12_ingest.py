"""Hourly NEM12 ingestion: new objects under landing/ -> validated -> meter_reading."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime

from airflow.sdk import PokeReturnValue, dag, task
from nem12_common import (
    DEFAULT_ARGS,
    SENSE_POKE_SECONDS,
    SENSE_TIMEOUT_SECONDS,
    our_process,
    pipeline,
    postgres,
    s3,
    settings,
)


@dag(
    schedule="@hourly",
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=["nem12", "meter-data"],
    doc_md=__doc__,
)
def nem12_ingest() -> None:
    @task.sensor(
        poke_interval=SENSE_POKE_SECONDS,
        timeout=SENSE_TIMEOUT_SECONDS,
        mode="reschedule",
        soft_fail=True,
    )
    def sense() -> PokeReturnValue:
        """Objects the ledger has not finished with; an hour without any ends as skipped."""
        our_process()
        from nem12.pipeline import steps

        with postgres() as conn:
            steps.prepare(conn)
            found = steps.new_objects(s3(), conn, settings())
        return PokeReturnValue(is_done=bool(found), xcom_value=[asdict(o) for o in found])

    pipeline(sense())


nem12_ingest()
