"""End to end: the demo scenario through Airflow on real PostgreSQL and S3.

Two deliveries go through ``nem12_ingest`` (``airflow dags test``): the table
must then hold exactly the newest version of every reading the accepted files
carry, as our own parser reads them.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
import pytest

from nem12.devtools import demo
from nem12.devtools.services import LOCAL_ROLE, LOCAL_S3_SECRET, LocalServices
from nem12.format.parsing import parse_source
from nem12.format.spec import NEM_TIME_ZONE

#: The archived twin of 0001, delivered again after the backfill.
AGAIN = "landing/NEM12#0001-again#MDPGEN#RETAILER.csv"


def expected_table(deliveries: list[dict[str, bytes]]) -> pl.DataFrame:
    """Newest version per (nmi, nmi_suffix, interval_start) of every non-rejected member."""
    frames = []
    arrival = 0
    for delivery in deliveries:
        for key, data in sorted(delivery.items()):
            arrival += 1
            for parse in parse_source(data, name=key):
                batches = list(parse.batches())
                report = parse.result
                if report.status == "rejected" or not batches:
                    continue
                frames.append(
                    pl.concat(batches).with_columns(
                        header=pl.lit(report.header.datetime), arrival=pl.lit(arrival)
                    )
                )
    readings = pl.concat(frames).with_columns(pl.col(pl.Categorical, pl.Enum).cast(pl.String))
    return (
        readings.sort(["update_datetime", "header", "arrival"], nulls_last=False)
        .unique(subset=["nmi", "nmi_suffix", "interval_start"], keep="last")
        .select("nmi", "nmi_suffix", "interval_start", "value", "quality_method")
    )


@contextmanager
def statsd_listener() -> Iterator[list[str]]:
    """A UDP listener on loopback that Airflow sends its StatsD metrics to (by environment)."""
    lines: list[str] = []
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                lines.extend(listener.recv(65536).decode().splitlines())
            except TimeoutError:
                continue

    settings = {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(listener.getsockname()[1]),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }
    before = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)  # demo.airflow_env starts from this process's environment
    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        yield lines
    finally:
        stop.set()
        thread.join()
        listener.close()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def task_log_files(home: Path) -> str:
    """Every task log file Airflow wrote under its home (dags test also prints them)."""
    logs = home / "logs"
    files = sorted(p for p in logs.rglob("*") if p.is_file()) if logs.exists() else []
    return "".join(p.read_text(errors="replace") for p in files)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    seen: dict[str, object] = {}

    def look(services: LocalServices) -> None:
        seen["postgres_password"] = services.postgres_password
        pipeline = json.loads(services.airflow_env()["AIRFLOW_CONN_NEM12_POSTGRES"])
        try:  # the pipeline's role cannot log in without its password
            psycopg.connect(host=pipeline["host"], user=pipeline["login"], dbname="nem12").close()
            seen["without_password"] = "connected"
        except psycopg.OperationalError as exc:
            seen["without_password"] = str(exc)
        with psycopg.connect(services.postgres_dsn) as conn:
            seen["owner"] = conn.execute(
                "SELECT tableowner FROM pg_tables "
                "WHERE schemaname = 'nem12' AND tablename = 'meter_day'"
            ).fetchone()
            seen["table"] = conn.execute(
                "SELECT nmi, nmi_suffix, interval_start, value, quality_method "
                "FROM nem12.meter_reading"
            ).fetchall()
            seen["findings"] = conn.execute(
                "SELECT l.key, f.rule, f.line FROM nem12.finding f "
                "JOIN nem12.file_ledger l USING (file_id) WHERE f.severity = 'error'"
            ).fetchall()
            seen["staging"] = conn.execute("SELECT count(*) FROM nem12.day_staging").fetchone()
            seen["resent_moved_to"] = conn.execute(
                "SELECT moved_to FROM nem12.file_ledger WHERE key LIKE '%0001-resent%'"
            ).fetchone()
        s3 = services.s3_client()
        listed = s3.list_objects_v2(Bucket=services.bucket).get("Contents", [])
        seen["keys"] = sorted(o["Key"] for o in listed)
        rejected = "rejected/NEM12#0004#MDPGEN#RETAILER.csv.findings.json"
        seen["quarantine"] = json.loads(
            s3.get_object(Bucket=services.bucket, Key=rejected)["Body"].read()
        )

    workdir = tmp_path_factory.mktemp("demo")

    def look_and_backfill(services: LocalServices) -> None:
        look(services)
        env = demo.airflow_env(workdir / "airflow", services.airflow_env(), workdir / "reports")
        conf = {"prefix": "archive/", "glob": "NEM12#0006*", "reprocess": True}
        demo.airflow(
            [
                "dags",
                "test",
                "nem12_backfill",
                "2024-01-02T00:00:00+00:00",
                "--conf",
                json.dumps(conf),
            ],
            env,
            workdir / "airflow.log",
        )
        with psycopg.connect(services.postgres_dsn) as conn:
            seen["backfill"] = conn.execute(
                "SELECT key, status, inserted, updated, unchanged, superseded "
                "FROM nem12.file_ledger WHERE key LIKE 'archive/%'"
            ).fetchall()
            seen["table_after_backfill"] = conn.execute(
                "SELECT count(*), sum(value) FROM nem12.meter_reading"
            ).fetchone()
            seen["table_sum"] = sum(row[3] for row in seen["table"])
        resend_archived_twin(services, env, workdir)

    def resend_archived_twin(services: LocalServices, env: dict[str, str], workdir: Path) -> None:
        """The archived 0001 delivered once more, alone: the run has nothing to do after
        registering it."""
        s3 = services.s3_client()
        (archived,) = seen["resent_moved_to"]
        body = s3.get_object(Bucket=services.bucket, Key=archived)["Body"].read()
        s3.put_object(Bucket=services.bucket, Key=AGAIN, Body=body)
        demo.airflow(
            ["dags", "test", "nem12_ingest", "2024-01-03T00:00:00+00:00"],
            env,
            workdir / "again.log",
        )
        with psycopg.connect(services.postgres_dsn) as conn:
            seen["again"] = conn.execute(
                "SELECT status, moved_to = %s FROM nem12.file_ledger WHERE key = %s",
                (archived, AGAIN),
            ).fetchall()
            seen["changes_after_again"] = conn.execute(
                "SELECT count(*) FROM nem12.table_change"
            ).fetchone()
        with sqlite3.connect(workdir / "airflow" / "airflow.db") as db:
            seen["again_tasks"] = dict(
                db.execute(
                    "SELECT task_id, state FROM task_instance WHERE dag_id = 'nem12_ingest' "
                    "AND run_id = (SELECT run_id FROM dag_run WHERE dag_id = 'nem12_ingest' "
                    "ORDER BY id DESC LIMIT 1)"
                ).fetchall()
            )
        seen["keys_after_again"] = sorted(
            o["Key"] for o in s3.list_objects_v2(Bucket=services.bucket).get("Contents", [])
        )

    with statsd_listener() as metric_lines:
        result = demo.run(None, workdir, check=look_and_backfill)
    seen["metrics"] = list(metric_lines)
    seen["airflow_log"] = (workdir / "airflow.log").read_text()
    seen["task_log_files"] = task_log_files(workdir / "airflow")
    return result, seen


def test_every_file_ends_loaded_partial_duplicate_or_rejected(demo_run):
    result, _ = demo_run
    status = {f["key"].split("#")[1]: f["status"] for f in result["files"]}
    assert status == {
        "0001": "loaded",
        "0002": "loaded",
        "0003": "loaded",
        "0004": "rejected",
        "0005": "partial",
        "0006": "loaded",
        "0007": "loaded",
        "0001-resent": "duplicate",
    }
    assert result["files_by_status"] == {"loaded": 5, "rejected": 1, "partial": 1, "duplicate": 1}


def test_table_holds_exactly_the_newest_version_of_each_reading(demo_run):
    result, seen = demo_run
    expected = expected_table(demo.sample_files())
    got = pl.DataFrame(
        seen["table"],
        orient="row",
        schema=["nmi", "nmi_suffix", "interval_start", "value", "quality_method"],
    ).with_columns(pl.col("interval_start").dt.convert_time_zone(NEM_TIME_ZONE))
    key = ["nmi", "nmi_suffix", "interval_start"]
    assert got.height == expected.height == result["readings_merged"] == 3840
    merged = got.join(expected, on=key, how="full", suffix="_expected", coalesce=True)
    assert merged.filter(pl.col("value").is_null() | pl.col("value_expected").is_null()).height == 0
    assert merged.filter(pl.col("value") != pl.col("value_expected")).height == 0
    assert merged.filter(pl.col("quality_method") != pl.col("quality_method_expected")).height == 0
    per_stream = got.group_by("nmi", "nmi_suffix").agg(pl.len(), pl.col("value").sum())
    assert per_stream.height == 3 * 2 + 2 * 2 + 1 * 2 + 2 * 2 - 1
    assert all(isinstance(v, Decimal) for v in got.get_column("value").head(5).to_list())


def test_correction_wins_late_older_file_and_duplicate_change_nothing(demo_run):
    result, _ = demo_run
    by_key = {f["key"].split("#")[1]: f for f in result["files"]}
    assert by_key["0006"]["updated"] + by_key["0006"]["unchanged"] == 864
    assert by_key["0006"]["inserted"] == 0
    assert by_key["0007"]["superseded"] == 864 and by_key["0007"]["updated"] == 0
    assert by_key["0001-resent"]["readings"] is None


def test_invalid_file_is_quarantined_with_its_findings(demo_run):
    _, seen = demo_run
    assert "rejected/NEM12#0004#MDPGEN#RETAILER.csv" in seen["keys"]
    assert [f["rule"] for f in seen["quarantine"]] == ["end_missing"]
    assert ("landing/NEM12#0004#MDPGEN#RETAILER.csv", "end_missing", None) in seen["findings"]
    assert ("landing/NEM12#0005#MDPGEN#RETAILER.csv", "value_negative", 3) in seen["findings"]


def test_landing_is_emptied_into_archive_and_staging_is_clean(demo_run):
    _, seen = demo_run
    assert not [k for k in seen["keys"] if k.startswith("landing/")]
    assert "archive/NEM12#0003#MDPGEN#RETAILER.zip" in seen["keys"]
    # the re-sent twin of an archived file is not copied again: the ledger points at it
    assert "archive/NEM12#0001-resent#MDPGEN#RETAILER.csv" not in seen["keys"]
    assert seen["resent_moved_to"] == ("archive/NEM12#0001#MDPGEN#RETAILER.csv",)
    assert seen["staging"] == (0,)


def test_the_report_location_is_in_the_ledger_and_exists(demo_run):
    result, _ = demo_run
    assert result["report_locations"]
    assert all(loc.endswith(".html") for loc in result["report_locations"])


def test_backfill_reprocesses_a_chosen_file_and_changes_nothing(demo_run):
    _, seen = demo_run
    assert seen["backfill"] == [("archive/NEM12#0006#MDPGEN#RETAILER.csv", "loaded", 0, 0, 864, 0)]
    assert seen["table_after_backfill"] == (3840, seen["table_sum"])


def test_no_secret_appears_in_the_task_logs(demo_run):
    _, seen = demo_run
    password = seen["postgres_password"]
    # the tasks logged in as the pipeline's role, which PostgreSQL makes give its password
    assert seen["owner"] == (LOCAL_ROLE,)
    assert "no password supplied" in str(seen["without_password"])
    assert isinstance(password, str) and len(password) >= 24
    log, files = seen["airflow_log"], seen["task_log_files"]
    assert "Returned value was" in log  # the task logs are there
    for output in (log, files):
        assert LOCAL_S3_SECRET not in output
        assert password not in output


def test_task_logs_name_each_file_and_its_counts(demo_run):
    _, seen = demo_run
    log = seen["airflow_log"]
    first = "landing/NEM12#0001#MDPGEN#RETAILER.csv"
    assert f"{first}: registered as file 1, " in log
    assert f"{first}: accepted (file 1), 864 readings, 0 errors, " in log
    assert f"{first}: 864 readings staged (file 1)" in log
    assert f"{first}: merged (file 1) as loaded: 864 inserted, 0 updated, 0 unchanged, " in log
    assert "landing/NEM12#0001-resent#MDPGEN#RETAILER.csv: duplicate of " + first in log
    assert "landing/NEM12#0004#MDPGEN#RETAILER.csv rejected: 1 findings, moved to " in log
    assert f"{first}: archived to archive/NEM12#0001#MDPGEN#RETAILER.csv" in log


def test_the_tasks_send_nem12_metrics_to_statsd(demo_run):
    result, seen = demo_run
    counted: dict[str, int] = {}
    for line in seen["metrics"]:
        name, _, rest = line.partition(":")
        if name.startswith("airflow.nem12.") and rest.endswith("|c"):
            counted[name] = counted.get(name, 0) + int(rest.removesuffix("|c"))
    # two ingest runs, a backfill that reprocesses file 0006 (changing nothing), and a
    # run of only a re-sent twin (no merge)
    assert counted["airflow.nem12.readings.inserted"] == result["readings_merged"] == 3840
    assert counted["airflow.nem12.files.duplicate"] == 2
    assert counted["airflow.nem12.files.rejected"] == 1
    assert counted["airflow.nem12.files.loaded"] == 5 + 1
    assert counted["airflow.nem12.files.partial"] == 1
    timers = [line for line in seen["metrics"] if line.startswith("airflow.nem12.merge.duration:")]
    assert len(timers) == 3 and all(line.endswith("|ms") for line in timers)


def test_a_run_of_only_a_resent_twin_skips_every_task_after_registering_it(demo_run):
    _, seen = demo_run
    assert seen["again"] == [("duplicate", True)]
    assert seen["again_tasks"] == {
        "sense": "success",
        "register": "success",
        "validate": "skipped",
        "plan_loads": "skipped",
        "parse_and_load": "skipped",
        "merge": "skipped",
        "publish": "skipped",
        "notify_run": "success",  # the run's summary: one duplicate
    }
    assert AGAIN not in seen["keys_after_again"]  # its bytes are the archived twin's
