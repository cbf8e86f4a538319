"""NEM13 files through the pipeline beside NEM12 files, on real PostgreSQL and S3.

The steps as the DAG runs them, then the DAG itself under ``airflow dags
test``: real AEMO NEM13 examples, a correction, a re-sent duplicate and a
broken NEM13 file land with NEM12 files; ``meter_read`` must end as the model
of the merge says (the newest version of a stream's period wins), the NEM12
readings as before, and every object archived or quarantined.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import psycopg
import pytest

from nem12.devtools import demo
from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.format.parsing import parse_source
from nem12.pipeline.settings import Settings
from nem12.warehouse import schema
from tests.conftest import AEMO, AEMO_NEM13
from tests.integration.test_ingest_steps import run_steps

_NEM = timezone(timedelta(hours=10))
EARLIEST = datetime.min.replace(tzinfo=UTC)  # what coalesce(..., '-infinity') sorts as
NEM12_GOOD = generate_bytes(GeneratorSpec(nmis=2, days=2, seed=21))
REAL = {
    "NEM13#SEN1316103#AGILITY#NEMMCO.zip": (AEMO_NEM13 / "NEM13#SEN1316103#AGILITY#NEMMCO.zip"),
    "nem13#12#INTEGM#NEMMCO.zip": AEMO_NEM13 / "nem13#12#INTEGM#NEMMCO.zip",
    "Example_NEM13_forward_estimate.csv": AEMO / "unzipped" / "Example_NEM13_forward_estimate.csv",
}
#: The forward estimate's first read, re-sent as an actual read a day later
#: than the estimate's date (another key; it overlaps the estimate's period).
ACTUAL = (
    b"100,NEM13,200404101030,MDA1,Ret1\r\n"
    b"250,VDEF005890,1141,1,11,11,MET12345,E,000888,20040108103055,A,,,000990,"
    b"20040409101500,A,,,102,kWh,20040708,20040410000000,\r\n"
    b"900\r\n"
)
BROKEN = (
    b"100,NEM13,200404101030,MDA1,Ret1\r\n"
    b"250,VDEF005891,1141,1,11,11,MET1,E,000888,20040108103055,A,,,000990,"
    b"20040409101500,A,,,102,kWh,20040708,20040410000000,\r\n"
    b"300,20040409,1,2,3\r\n"
    b"900\r\n"
)


def deliveries() -> list[dict[str, bytes]]:
    first = {f"landing/{name}": path.read_bytes() for name, path in REAL.items()}
    first["landing/NEM12#GOOD#MDP#RET.csv"] = NEM12_GOOD
    first["landing/NEM13#BROKEN#MDA1#RET1.csv"] = BROKEN
    second = {
        "landing/NEM13#ACTUAL#MDA1#RET1.csv": ACTUAL,
        "landing/resent/Example_NEM13_forward_estimate.csv": REAL[
            "Example_NEM13_forward_estimate.csv"
        ].read_bytes(),
    }
    return [first, second]


def model_reads(delivered: list[dict[str, bytes]]) -> set[tuple]:
    """The merge's rule on every accepted read delivered: a read is current when no
    newer version (UpdateDateTime, header DateTime, arrival, member, line) of its
    stream overlaps its period."""
    versions = []
    arrival = 0
    for delivery in delivered:
        for key, data in sorted(delivery.items()):
            arrival += 1
            for member, parse in enumerate(parse_source(data, name=key)):
                batches = [b for b in parse.batches() if parse.version == "NEM13"]
                if parse.result.status == "rejected":
                    continue
                header = parse.result.header.datetime
                for batch in batches:
                    for row in batch.iter_rows(named=True):
                        updated = row["update_datetime"] or EARLIEST
                        order = (updated, header or EARLIEST, arrival, member, row["line_number"])
                        versions.append((order, row))
    current = set()
    for order, row in versions:
        beaten = any(
            (o > order)
            and (r["nmi"], r["nmi_suffix"]) == (row["nmi"], row["nmi_suffix"])
            and r["previous_register_read_datetime"] < row["current_register_read_datetime"]
            and r["current_register_read_datetime"] > row["previous_register_read_datetime"]
            for o, r in versions
        )
        if not beaten:
            current.add(_key(row))
    return current


def _key(row) -> tuple:
    return (
        row["nmi"],
        row["nmi_suffix"],
        row["current_register_read_datetime"].isoformat(),
        row["current_register_read_text"],
        str(row["quantity"].normalize()),
    )


def stored_reads(conn: psycopg.Connection) -> set[tuple]:
    rows = conn.execute(
        "SELECT nmi, nmi_suffix, current_register_read_datetime, current_register_read_text,"
        " quantity FROM nem12.meter_read"
    ).fetchall()
    return {
        (
            nmi,
            suffix,
            at.astimezone(_NEM).isoformat(),
            text,
            str(quantity.normalize()),
        )
        for nmi, suffix, at, text, quantity in rows
    }


@pytest.mark.parametrize("staged_by", ["validation", "load task"])
def test_nem13_files_load_beside_nem12_and_meter_read_is_the_model(services, tmp_path, staged_by):
    s3 = services.s3_client()
    settings = Settings(bucket=services.bucket, reports_dir=str(tmp_path / "reports"))
    if staged_by == "load task":
        settings = replace(settings, stage_with_validation_bytes=0)
    delivered = deliveries()
    with psycopg.connect(services.role_dsn(), autocommit=True) as conn:
        schema.apply_schema(conn)
        for number, delivery in enumerate(delivered):
            for key, data in delivery.items():
                s3.put_object(Bucket=services.bucket, Key=key, Body=data)
            run_steps(s3, conn, settings, f"run{number}")
        assert stored_reads(conn) == model_reads(delivered)
        ledger = dict(conn.execute("SELECT key, status FROM nem12.file_ledger").fetchall())
        readings = conn.execute("SELECT count(*) FROM nem12.meter_reading").fetchone()[0]
        findings = conn.execute(
            "SELECT l.key, f.rule, f.line FROM nem12.finding f JOIN nem12.file_ledger l"
            " USING (file_id) WHERE f.severity = 'error'"
        ).fetchall()
        actual = conn.execute(
            "SELECT inserted, updated, unchanged, superseded FROM nem12.file_ledger"
            " WHERE key = 'landing/NEM13#ACTUAL#MDA1#RET1.csv'"
        ).fetchone()
        staging = conn.execute(
            "SELECT (SELECT count(*) FROM nem12.read_staging),"
            " (SELECT count(*) FROM nem12.day_staging)"
        ).fetchone()
    assert ledger == {
        "landing/NEM13#SEN1316103#AGILITY#NEMMCO.zip": "loaded",
        "landing/nem13#12#INTEGM#NEMMCO.zip": "loaded",
        "landing/Example_NEM13_forward_estimate.csv": "loaded",
        "landing/NEM12#GOOD#MDP#RET.csv": "loaded",
        "landing/NEM13#BROKEN#MDA1#RET1.csv": "rejected",
        "landing/NEM13#ACTUAL#MDA1#RET1.csv": "loaded",
        "landing/resent/Example_NEM13_forward_estimate.csv": "duplicate",
    }
    assert readings == 2 * 2 * 2 * 48  # 2 NMIs x 2 suffixes x 2 days
    assert findings == [("landing/NEM13#BROKEN#MDA1#RET1.csv", "record_wrong_version", 3)]
    assert actual == (0, 1, 0, 0)  # it replaced the estimate it overlaps
    assert staging == (0, 0)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=services.bucket)["Contents"]}
    assert not [k for k in keys if k.startswith("landing/")]
    assert "archive/nem13#12#INTEGM#NEMMCO.zip" in keys
    assert "rejected/NEM13#BROKEN#MDA1#RET1.csv.findings.json" in keys


def test_the_ingest_dag_takes_nem13_files_the_same_path(services, tmp_path):
    env = demo.airflow_env(tmp_path / "airflow", services.airflow_env(), tmp_path / "reports")
    log = tmp_path / "airflow.log"
    demo.prepare_airflow(env, log)
    s3 = services.s3_client()
    delivered = deliveries()
    for number, delivery in enumerate(delivered):
        for key, data in delivery.items():
            s3.put_object(Bucket=services.bucket, Key=key, Body=data)
        demo.airflow(
            ["dags", "test", "nem12_ingest", f"2024-01-0{number + 1}T00:00:00+00:00"], env, log
        )
    with psycopg.connect(services.postgres_dsn) as conn:
        assert stored_reads(conn) == model_reads(delivered)
        statuses = conn.execute(
            "SELECT status, count(*) FROM nem12.file_ledger GROUP BY 1 ORDER BY 1"
        ).fetchall()
        reads = conn.execute(
            "SELECT sum(readings) FROM nem12.file_ledger WHERE key LIKE '%NEM13%'"
            " OR key LIKE '%nem13%'"
        ).fetchone()[0]
    assert statuses == [("duplicate", 1), ("loaded", 5), ("rejected", 1)]
    assert reads == 3 + 12 + 2 + 1
