"""Downstream of the merge: every change of the meter table, recorded as it is announced."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag, get_current_context, task
from nem12_common import DEFAULT_ARGS, METER_READING, our_process, postgres


@dag(
    schedule=[METER_READING],
    start_date=datetime(2024, 1, 1, tzinfo=UTC),
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=["nem12", "meter-data"],
    doc_md=__doc__,
)
def nem12_changes() -> None:
    @task
    def record() -> int:
        """One ``nem12.table_change`` row per Asset event (a repeated event is kept once)."""
        our_process()
        import logging

        from nem12.pipeline import steps

        events = get_current_context()["triggering_asset_events"][METER_READING]
        recorded = 0
        with postgres() as conn:
            steps.prepare(conn)
            for event in events:
                run_id = event.source_run_id or event.timestamp.isoformat()
                if steps.record_change(
                    conn, event.source_dag_id or "", run_id, event.timestamp, event.extra or {}
                ):
                    recorded += 1
                logging.getLogger(__name__).info(
                    "%s %s changed the meter table: %s", event.source_dag_id, run_id, event.extra
                )
        return recorded

    record()


nem12_changes()
