"""The DAG files import cleanly, cheaply, and wire the tasks as designed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

DAGS = Path(__file__).parents[2] / "dags"
HEAVY = ("polars", "great_expectations", "psycopg", "pgserver", "moto", "nem12.format.parsing")


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow")))
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    sys.path.insert(0, str(DAGS))  # Airflow puts the dags folder on sys.path too
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors_and_both_dags(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"nem12_ingest", "nem12_backfill", "nem12_changes", "nem12_daily"}


def test_parsing_the_dags_imports_nothing_heavy(tmp_path):
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(DAGS)!r})\n"
        "from airflow.dag_processing.dagbag import DagBag\n"
        f"DagBag(dag_folder={str(DAGS)!r})\n"
        f"print(json.dumps([m for m in sys.modules if m.startswith({HEAVY!r})]))\n"
    )
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    # as docker-compose sets it: the settings read at parse time must not resolve it
    env["AIRFLOW_CONN_NEM12_POSTGRES"] = '{"conn_type": "postgres", "host": "db", "schema": "x"}'
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_ingest_schedule_and_task_graph(dagbag):
    dag = dagbag.dags["nem12_ingest"]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert dag.schedule == "@hourly"
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {
        "sense",
        "register",
        "validate",
        "plan_loads",
        "parse_and_load",
        "merge",
        "publish",
        "notify_run",
    }
    sense = tasks["sense"]
    assert sense.mode == "reschedule" and sense.soft_fail is True
    assert tasks["parse_and_load"].pool == "nem12_load"
    assert tasks["merge"].pool == "nem12_merge"
    assert [t.task_id for t in tasks["parse_and_load"].upstream_list] == ["plan_loads"]
    assert {t.task_id for t in tasks["merge"].upstream_list} == {"validate", "parse_and_load"}
    assert [o.name for o in tasks["publish"].outlets] == ["nem12_meter_reading"]
    # the run's summary goes out whatever became of the tasks before it, last
    assert tasks["notify_run"].trigger_rule == "all_done"
    assert tasks["notify_run"].upstream_task_ids == {"publish"}
    assert [t.task_id for t in dag.leaves] == ["notify_run"]
    for task in dag.tasks:
        assert task.retries == 3 and task.retry_exponential_backoff


def test_backfill_has_a_params_form_and_the_same_task_chain(dagbag):
    dag = dagbag.dags["nem12_backfill"]
    assert dag.schedule is None
    assert set(dag.params.keys()) == {
        "prefix",
        "glob",
        "arrived_from",
        "arrived_to",
        "reprocess",
        "dry_run",
    }
    ingest = {t.task_id for t in dagbag.dags["nem12_ingest"].tasks} - {"sense"}
    assert {t.task_id for t in dag.tasks} - {"select"} == ingest


def test_daily_sends_the_alerts_after_raising_them(dagbag):
    tasks = {t.task_id: t for t in dagbag.dags["nem12_daily"].tasks}
    assert tasks["send_alerts"].upstream_task_ids == {"raise_alerts"}
    assert tasks["send_alerts"].retries == 3
