"""nem12_daily raises the alerts after the rollup holds the changed days."""

from __future__ import annotations

from tests.dags.test_dag_integrity import dagbag  # noqa: F401 (the fixture)


def test_raise_alerts_runs_after_refresh_rollups(dagbag):  # noqa: F811
    dag = dagbag.dags["nem12_daily"]
    tasks = {t.task_id: t for t in dag.tasks}
    assert "raise_alerts" in tasks
    assert tasks["raise_alerts"].upstream_task_ids == {"refresh_rollups"}
