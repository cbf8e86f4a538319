"""The scheduler tier: Airflow's own components from the venv, driven through its REST API.

One cluster per module (starting one takes ~20 s); every test starts from an
empty bucket and a database without the ``nem12`` schema, as a new deployment.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from nem12.devtools.cluster import Cluster, airflow_cluster
from nem12.devtools.demo import airflow_env
from nem12.devtools.services import LocalServices, local_services

#: Settings that make an hour of the pipeline fit in a test: a sensor that
#: looks every 3 s and gives up after 40 s, one file per load (more groups;
#: the tests' small files go to load tasks too), two load slots, lost tasks
#: noticed within seconds.
FAST = {
    "NEM12_SENSE_POKE_SECONDS": "3",
    "NEM12_SENSE_TIMEOUT_SECONDS": "40",
    "NEM12_GROUP_FILES": "1",
    "NEM12_STAGE_WITH_VALIDATION_BYTES": "0",
    "NEM12_LOAD_SLOTS": "2",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
}
FINAL = ("success", "failed")
#: What the session's runs showed: per scenario, its task instances' spans.
TIMELINES: dict[str, list[dict]] = {}


def record_timeline(scenario: str, task_instances: list[dict]) -> None:
    """Keep a scenario's task-instance spans for the session's summary."""
    TIMELINES.setdefault(scenario, []).extend(
        t for t in task_instances if t.get("start_date") and t.get("end_date")
    )


def pytest_terminal_summary(terminalreporter) -> None:
    """Task-instance spans per scenario, in seconds from the scenario's first start."""
    if not TIMELINES:
        return
    terminalreporter.section("task-instance timelines")
    for scenario, tis in TIMELINES.items():
        terminalreporter.write_line(scenario)
        origin = min(datetime.fromisoformat(t["start_date"]) for t in tis)
        for t in sorted(tis, key=lambda t: t["start_date"]):
            start, end = (
                (datetime.fromisoformat(t[k]) - origin).total_seconds()
                for k in ("start_date", "end_date")
            )
            label = t.get("rendered_map_index") or ""
            terminalreporter.write_line(
                f"  {t['dag_id']:<15} {t['task_id']:<15} {start:7.2f} .. {end:7.2f} s  "
                f"try {t['try_number']}  {t.get('hostname') or '':<10} {t['state']:<8} {label}"
            )


class Live:
    """A cluster with the local services, and what the tests ask of both."""

    def __init__(self, cluster: Cluster, services: LocalServices) -> None:
        self.cluster = cluster
        self.services = services
        self.s3 = services.s3_client()

    def reset(self) -> None:
        with psycopg.connect(self.services.postgres_dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS nem12 CASCADE")
        for item in self.s3.list_objects_v2(Bucket=self.services.bucket).get("Contents", []):
            self.s3.delete_object(Bucket=self.services.bucket, Key=item["Key"])

    def deliver(self, objects: dict[str, bytes]) -> None:
        for key, data in objects.items():
            self.s3.put_object(Bucket=self.services.bucket, Key=key, Body=data)

    def objects(self) -> dict[str, str]:
        listed = self.s3.list_objects_v2(Bucket=self.services.bucket).get("Contents", [])
        return {o["Key"]: o["ETag"] for o in listed}

    def sql(self, query: str) -> list[tuple]:
        with psycopg.connect(self.services.postgres_dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT to_regclass('nem12.file_ledger')").fetchone()[0]
            return conn.execute(query).fetchall() if exists else []

    def ledger(self) -> list[tuple]:
        return self.sql("SELECT key, status FROM nem12.file_ledger ORDER BY file_id")

    def table_keys(self) -> list[tuple]:
        return self.sql("SELECT nmi, nmi_suffix, interval_start FROM nem12.meter_reading")

    def trigger(self, dag_id: str, conf: dict | None = None) -> str:
        self.cluster.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self.cluster.request(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
        )
        return str(run["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        return str(self.cluster.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"])

    def finished(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        return self.cluster.wait_for(
            f"{dag_id} {run_id} to finish",
            lambda: (state := self.run_state(dag_id, run_id)) in FINAL and state,
            timeout=timeout,
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.cluster.request(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000"
        )["task_instances"]

    def pause(self, dag_id: str) -> None:
        self.cluster.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})


def interval(ti: dict) -> tuple[datetime, datetime]:
    return datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"])


def most_at_once(spans: list[tuple[datetime, datetime]]) -> int:
    """The largest number of the spans running at one instant."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture(scope="module")
def live_services(tmp_path_factory) -> Iterator[tuple[LocalServices, Path]]:
    root = tmp_path_factory.mktemp("live")
    with local_services(root / "services") as services:
        yield services, root


def start_live(live_services, executor: str, monkeypatch_env: dict[str, str]) -> Iterator[Live]:
    services, root = live_services
    env = airflow_env(root / f"airflow-{executor}", services.airflow_env(), root / "reports")
    env.update(monkeypatch_env)
    with airflow_cluster(root / executor, services, env, executor=executor) as cluster:
        live = Live(cluster, services)
        cluster.wait_for(
            "the DAGs to be parsed",
            lambda: cluster.request("GET", "/api/v2/dags")["total_entries"] >= 3,
            timeout=120,
        )
        time.sleep(1)
        yield live


@pytest.fixture
def live(cluster: Live) -> Live:
    """The module's cluster (its own ``cluster`` fixture), on an empty bucket and database."""
    cluster.reset()
    return cluster
