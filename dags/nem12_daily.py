"""Downstream of the merge, on every change of the meter table: the daily rollup,
then the alerts of the alert config for the days it refreshed, sent through their
notifiers (``nem12.pipeline.notify``).

Scheduled on the ``nem12_meter_reading`` Asset alone. Each run takes every day
changed since the previous run (however many events or hours it missed), so
runs never need a backfill; one runs at a time.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag, get_current_context, task
from nem12_common import (
    DEFAULT_ARGS,
    METER_READING,
    alert_config,
    our_process,
    postgres,
    review_base_url,
)


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

    @task
    def raise_alerts() -> dict:
        """Raise the alerts of the config (the Variable ``nem12_alert_config`` when set,
        else the ``NEM12_ALERT_CONFIG`` file) for the days the rollup now holds."""
        our_process()
        from nem12.pipeline import downstream, steps

        config = alert_config()
        with postgres() as conn:
            steps.prepare(conn)
            return downstream.raise_alerts(conn, config)

    @task
    def send_alerts() -> dict:
        """Send every alert not sent yet to its channels (the config's notify.alerts and
        its rule's notify), one message per channel; a channel that cannot take it
        fails this task after the others took theirs, its alerts kept for the next run."""
        our_process()
        from nem12.pipeline import downstream

        context = get_current_context()
        origin = f"{context['dag'].dag_id} {context['run_id']}"
        with postgres() as conn:
            return downstream.send_alerts(conn, alert_config(), origin, context, review_base_url())

    rolled_up = refresh_rollups()
    raised = raise_alerts()
    rolled_up >> raised >> send_alerts()


nem12_daily()
