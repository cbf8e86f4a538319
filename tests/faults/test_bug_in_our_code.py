"""A bug of ours is a failure, never a finding: the task fails, the file stays unfinished.

A ``ZeroDivisionError`` is injected into one registered check (``nmi_format``,
which runs on every 200 record). The step raises it with its traceback; the
ledger keeps the file unfinished with no finding, the delivered object and
its held copy (in the database: the file is small) stay where they are; once
the bug is gone the next run loads it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from nem12.devtools.demo import airflow_env, prepare_airflow
from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.devtools.services import LocalServices
from nem12.format.parsing.checks import registry
from nem12.pipeline import steps
from nem12.pipeline.settings import Settings

AIRFLOW = str(Path(sys.executable).parent / "airflow")
KEY = "landing/NEM12#BUG#MDPGEN#RETAILER.csv"
DATA = generate_bytes(GeneratorSpec(nmis=2, days=2, seed=11))
BUG = "a bug injected into the nmi_format check"
#: A ``sitecustomize`` that breaks the check in every process started with it on the path.
INJECTED = f"""
import nem12.format.parsing
from nem12.format.parsing.checks import registry

def nmi_format(*args, **kwargs):
    raise ZeroDivisionError({BUG!r})

for key in [key for key in registry.CHECKS if key[1] == "nmi_format"]:
    registry.CHECKS[key] = nmi_format
"""


def broken(*args, **kwargs):
    raise ZeroDivisionError(BUG)


def deliver(services: LocalServices) -> None:
    services.s3_client().put_object(Bucket=services.bucket, Key=KEY, Body=DATA)


def ledger(services: LocalServices) -> tuple[list[tuple], int]:
    with psycopg.connect(services.postgres_dsn) as conn:
        rows = conn.execute("SELECT key, status FROM nem12.file_ledger ORDER BY file_id")
        findings = conn.execute("SELECT count(*) FROM nem12.finding").fetchone()[0]
        return rows.fetchall(), findings


def held_in_database(services: LocalServices) -> list[int]:
    with psycopg.connect(services.postgres_dsn) as conn:
        rows = conn.execute("SELECT file_id FROM nem12.held_content ORDER BY file_id")
        return [file_id for (file_id,) in rows]


def keys(services: LocalServices) -> list[str]:
    listed = services.s3_client().list_objects_v2(Bucket=services.bucket).get("Contents", [])
    return sorted(item["Key"] for item in listed if not item["Key"].startswith("reports/"))


@pytest.mark.parametrize("step", ["validate", "parse_and_load"])
def test_a_step_raises_the_bug_and_leaves_the_file_unfinished(
    services, step, monkeypatch, tmp_path
):
    deliver(services)
    settings = Settings(  # every file through the load step, which the bug may hit
        bucket=services.bucket,
        reports_dir=str(tmp_path / "reports"),
        stage_with_validation_bytes=0,
    )
    s3 = services.s3_client()
    with psycopg.connect(services.postgres_dsn, autocommit=True) as conn:
        steps.prepare(conn)
        files = steps.register(s3, conn, settings, steps.new_objects(s3, conn, settings))
        if step == "parse_and_load":
            assert [f.key for f in steps.validate(s3, conn, settings, files, "r").accepted] == [KEY]
        for key in [key for key in registry.CHECKS if key[1] == "nmi_format"]:
            monkeypatch.setitem(registry.CHECKS, key, broken)
        run = steps.validate if step == "validate" else steps.load_group
        args = (files, "r") if step == "validate" else (files,)
        with pytest.raises(ZeroDivisionError, match=BUG):
            run(s3, conn, settings, *args)
        status = "registered" if step == "validate" else "validated"
        assert ledger(services) == ([(KEY, status)], 0)
        assert (keys(services), held_in_database(services)) == ([KEY], [1])
        monkeypatch.undo()  # the bug fixed: the same step now finishes the file
        if step == "validate":
            files = steps.validate(s3, conn, settings, files, "r2").accepted
        staged = steps.load_group(s3, conn, settings, files)
        counts = steps.merge(s3, conn, settings, list(staged))
    assert counts.inserted == 2 * 2 * 2 * 48
    assert ledger(services) == ([(KEY, "loaded")], 0)


def test_under_airflow_the_task_fails_with_its_traceback_and_the_next_run_loads(services, tmp_path):
    deliver(services)
    env = airflow_env(tmp_path / "airflow", services.airflow_env(), tmp_path / "reports")
    prepare_airflow(env, tmp_path / "prepare.log")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(INJECTED)
    broken_env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(hook), env.get(
        "PYTHONPATH")]))}  # fmt: skip
    log = tmp_path / "broken-run.log"
    with log.open("w") as out:
        run = subprocess.Popen(
            [AIRFLOW, "dags", "test", "nem12_ingest", "2024-01-01T00:00:00+00:00"],
            env=broken_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while "up_for_retry" not in log.read_text() and time.monotonic() < deadline:
            assert run.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the retries would wait minutes for the same bug
        run.wait(timeout=60)
    text = log.read_text()
    assert "Traceback (most recent call last)" in text
    assert f"ZeroDivisionError: {BUG}" in text
    assert "input_unreadable" not in text
    assert ledger(services) == ([(KEY, "registered")], 0)
    assert (keys(services), held_in_database(services)) == ([KEY], [1])
    fixed = subprocess.run(
        [AIRFLOW, "dags", "test", "nem12_ingest", "2024-01-01T01:00:00+00:00"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert fixed.returncode == 0, fixed.stdout[-3000:]
    assert ledger(services) == ([(KEY, "loaded")], 0)
    assert keys(services) == [KEY.replace("landing/", "archive/")]
    assert held_in_database(services) == []
