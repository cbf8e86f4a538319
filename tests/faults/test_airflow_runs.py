"""Faults through Airflow itself: runs killed with SIGKILL mid-task, runs that overlap.

The real DAGs run under ``airflow dags test`` (every task in that process) on
real PostgreSQL and S3. A killed run is followed by the next run, as the
hourly schedule would start it: the ledger holds no claim that could block
it (an unfinished file is simply taken up again), and the table must end
exactly as the delivered files say.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from nem12.devtools.demo import airflow_env, prepare_airflow
from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.devtools.services import LocalServices
from tests.conftest import empty_services
from tests.faults.scenarios import keys_of

AIRFLOW = str(Path(sys.executable).parent / "airflow")
#: Big enough that its COPY and its merge each last a moment a poll can catch.
MEDIUM = generate_bytes(GeneratorSpec(nmis=20, days=30, interval_length=5, seed=3, value_pool=16))
SMALL = [generate_bytes(GeneratorSpec(nmis=2, days=3, seed=s)) for s in range(4, 8)]


class Wiring:
    """Local services and an Airflow home per concurrent runner, all on loopback."""

    def __init__(self, services: LocalServices, root: Path) -> None:
        self.services = services
        self.root = root
        self.homes: dict[str, dict[str, str]] = {}
        self.runs = 0

    def env(self, home: str = "a") -> dict[str, str]:
        if home not in self.homes:
            env = airflow_env(
                self.root / f"airflow-{home}", self.services.airflow_env(), self.root / "reports"
            )
            log = self.root / f"airflow-{home}.log"
            prepare_airflow(env, log)
            self.homes[home] = env
        return self.homes[home]

    def start(self, dag_id: str = "nem12_ingest", home: str = "a") -> subprocess.Popen:
        self.runs += 1
        log = (self.root / f"run-{self.runs}.log").open("w")
        return subprocess.Popen(
            [AIRFLOW, "dags", "test", dag_id, f"2024-01-01T00:{self.runs:02d}:00+00:00"],
            env=self.env(home),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def reset(self) -> None:
        with psycopg.connect(self.services.postgres_dsn, autocommit=True) as conn:
            exists = conn.execute("SELECT to_regclass('nem12.file_ledger')").fetchone()[0]
            if exists:
                conn.execute(
                    "TRUNCATE nem12.meter_day, nem12.day_staging, nem12.meter_read, "
                    "nem12.read_version, nem12.read_staging, "
                    "nem12.finding, nem12.file_ledger RESTART IDENTITY CASCADE"
                )
        s3 = self.services.s3_client()
        listed = s3.list_objects_v2(Bucket=self.services.bucket).get("Contents", [])
        for item in listed:
            s3.delete_object(Bucket=self.services.bucket, Key=item["Key"])

    def deliver(self, objects: dict[str, bytes]) -> None:
        s3 = self.services.s3_client()
        for key, data in objects.items():
            s3.put_object(Bucket=self.services.bucket, Key=key, Body=data)


@pytest.fixture(scope="module")
def wiring(tmp_path_factory, shared_services) -> Iterator[Wiring]:
    empty_services(shared_services)
    yield Wiring(shared_services, tmp_path_factory.mktemp("airflow-faults"))


def poll(dsn: str, condition: str, timeout: float = 180.0) -> None:
    """Wait until ``condition`` (SQL returning one boolean) holds, polling every 20 ms."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                if conn.execute(condition).fetchone()[0]:
                    return
            except psycopg.errors.UndefinedTable:
                pass  # the first task has not applied the schema yet
            time.sleep(0.02)
    raise AssertionError(f"never saw: {condition}")


def ledger(dsn: str) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(
            "SELECT key, status, readings, coalesce(inserted, 0) + coalesce(updated, 0) "
            "+ coalesce(unchanged, 0) + coalesce(superseded, 0) "
            "FROM nem12.file_ledger ORDER BY key"
        ).fetchall()


def file_status(status: str) -> str:
    return f"SELECT EXISTS (SELECT 1 FROM nem12.file_ledger WHERE status = '{status}')"


def statement_running(prefix: str) -> str:
    return (
        "SELECT EXISTS (SELECT 1 FROM pg_stat_activity "
        f"WHERE state = 'active' AND btrim(query, E' \\n') LIKE '{prefix}%')"
    )


KILL_POINTS: dict[str, Callable[[], str]] = {
    "validated, before its COPY": lambda: file_status("validated"),
    "during the COPY into staging": lambda: statement_running("COPY nem12.day_staging"),
    "staged, after its COPY": lambda: file_status("staged"),
    "during the merge's insert": lambda: statement_running("INSERT INTO nem12.meter_day"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_run_killed_mid_task_is_finished_exactly_by_the_next_run(wiring, point, fault_tally):
    wiring.reset()
    wiring.deliver({"landing/NEM12#MEDIUM#MDPGEN#RETAILER.csv": MEDIUM})
    dsn = wiring.services.postgres_dsn
    run = wiring.start()
    try:
        poll(dsn, KILL_POINTS[point]())
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=60)
    assert run.returncode == -signal.SIGKILL
    unfinished = [row for row in ledger(dsn) if row[1] in ("registered", "validated", "staged")]
    assert len(unfinished) == 1  # the killed run left the file unfinished, not stuck
    again = wiring.start()
    assert again.wait(timeout=600) == 0
    expected = keys_of(MEDIUM)
    assert ledger(dsn) == [
        ("landing/NEM12#MEDIUM#MDPGEN#RETAILER.csv", "loaded", len(expected), len(expected))
    ]
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*) FROM nem12.day_staging").fetchone() == (0,)
        figures = fault_tally.record(f"Airflow run SIGKILLed: {point}", 1, expected, conn)
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)


def test_a_backfill_overlapping_the_hourly_run_counts_every_reading_once(wiring, fault_tally):
    wiring.reset()
    objects = {f"landing/NEM12#S{n}#MDPGEN#RETAILER.csv": data for n, data in enumerate(SMALL)}
    objects["landing/NEM12#MEDIUM#MDPGEN#RETAILER.csv"] = MEDIUM
    wiring.deliver(objects)
    hourly = wiring.start("nem12_ingest", home="a")
    backfill = wiring.start("nem12_backfill", home="b")
    assert hourly.wait(timeout=900) == 0
    assert backfill.wait(timeout=900) == 0
    dsn = wiring.services.postgres_dsn
    rows = ledger(dsn)
    assert [(key, status) for key, status, _, _ in rows] == [(k, "loaded") for k in sorted(objects)]
    assert all(readings == outcomes for _, _, readings, outcomes in rows)
    expected = set().union(*(keys_of(data) for data in objects.values()))
    with psycopg.connect(dsn) as conn:
        inserted = conn.execute("SELECT sum(inserted) FROM nem12.file_ledger").fetchone()[0]
        assert inserted == len(expected)  # each reading inserted by exactly one merge
        figures = fault_tally.record("backfill overlapping the hourly run", 1, expected, conn)
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)
