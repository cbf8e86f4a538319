"""End to end: the demo scenario through Airflow on real PostgreSQL and S3.

Two deliveries go through ``nem12_ingest`` (``airflow dags test``): the table
must then hold exactly the newest version of every reading the accepted files
carry, as our own parser reads them.
"""

from __future__ import annotations

import json
from decimal import Decimal

import polars as pl
import psycopg
import pytest

from nem12 import demo
from nem12.mdff import NEM_TIME_ZONE
from nem12.parsing import parse_source
from nem12.services import LOCAL_S3_SECRET, LocalServices


def expected_table(deliveries: list[dict[str, bytes]]) -> pl.DataFrame:
    """Newest version per (nmi, nmi_suffix, interval_start) of every non-rejected member."""
    frames = []
    arrival = 0
    for delivery in deliveries:
        for key, data in sorted(delivery.items()):
            arrival += 1
            for parser in parse_source(data, name=key):
                batches = list(parser.batches())
                report = parser.report
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


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    seen: dict[str, object] = {}

    def look(services: LocalServices) -> None:
        with psycopg.connect(services.postgres_dsn) as conn:
            seen["table"] = conn.execute(
                "SELECT nmi, nmi_suffix, interval_start, value, quality_method "
                "FROM nem12.meter_reading"
            ).fetchall()
            seen["findings"] = conn.execute(
                "SELECT l.key, f.rule, f.line FROM nem12.finding f "
                "JOIN nem12.file_ledger l USING (file_id) WHERE f.severity = 'error'"
            ).fetchall()
            seen["staging"] = conn.execute("SELECT count(*) FROM nem12.reading_staging").fetchone()
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

    result = demo.run(None, workdir, check=look_and_backfill)
    seen["airflow_log"] = (workdir / "airflow.log").read_text()
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
    assert "archive/NEM12#0001-resent#MDPGEN#RETAILER.csv" in seen["keys"]
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
    log = seen["airflow_log"]
    assert "Returned value was" in log  # the task logs are there
    assert LOCAL_S3_SECRET not in log
