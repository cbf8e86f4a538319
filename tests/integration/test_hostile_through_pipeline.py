"""The whole hostile corpus lands in one run beside a good file, on real PostgreSQL and S3.

Each broken file is quarantined (or loaded in part) with the finding its
manifest names; the good file, and the good blocks of the partial ones, load
exactly; no step fails.
"""

from __future__ import annotations

import json

import psycopg
import pytest

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.pipeline import steps
from nem12.pipeline.settings import Settings
from nem12.warehouse import schema
from tests.conftest import FIXTURES, parse_all

CORPUS = FIXTURES / "hostile"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
GOOD = generate_bytes(GeneratorSpec(nmis=2, days=3, seed=9))


@pytest.fixture
def landed(services):
    s3 = services.s3_client()
    for name in MANIFEST:
        s3.upload_file(str(CORPUS / name), services.bucket, f"landing/hostile/{name}")
    s3.put_object(Bucket=services.bucket, Key="landing/good.csv", Body=GOOD)
    with psycopg.connect(services.role_dsn(), autocommit=True) as conn:
        schema.apply_schema(conn)
        yield services, conn, s3


@pytest.mark.slow
def test_every_hostile_file_is_quarantined_or_trimmed_and_the_good_ones_load(landed, tmp_path):
    services, conn, s3 = landed
    settings = Settings(bucket=services.bucket, reports_dir=str(tmp_path / "reports"))
    files = steps.register(s3, conn, settings, steps.new_objects(s3, conn, settings))
    checked = steps.validate(s3, conn, settings, files, "hostile")
    staged: dict[int, int] = {}
    for group in steps.loading_groups(checked.accepted, settings):
        staged.update(steps.load_group(s3, conn, settings, group))
    steps.merge(s3, conn, settings, list(staged))

    ledger = dict(conn.execute("SELECT key, status FROM nem12.file_ledger").fetchall())
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=services.bucket)["Contents"]}
    expected_keys = {(r["nmi"], r["nmi_suffix"], r["interval_start"]) for r in rows(GOOD)}
    expected_reads: set[tuple] = set()
    for name, case in MANIFEST.items():
        key = f"landing/hostile/{name}"
        if case["status"] == "rejected":
            assert ledger[key] == "rejected", name
            assert {f"rejected/hostile/{name}", f"rejected/hostile/{name}.findings.json"} <= keys
            findings = s3.get_object(
                Bucket=services.bucket, Key=f"rejected/hostile/{name}.findings.json"
            )["Body"].read()
            assert case["rule"] in {f["rule"] for f in json.loads(findings)}, name
        else:
            assert ledger[key] == ("partial" if case["status"] == "partial" else "loaded"), name
            assert f"archive/hostile/{name}" in keys
            parsed = parse_all(CORPUS / name, name=name)
            expected_keys |= {
                (r["nmi"], r["nmi_suffix"], r["interval_start"])
                for r in parsed.readings.select("nmi", "nmi_suffix", "interval_start").iter_rows(
                    named=True
                )
            }
            expected_reads |= {
                (r["nmi"], r["nmi_suffix"], r["current_register_read_datetime"])
                for r in parsed.reads.iter_rows(named=True)
            }
        rules = {
            r[0]
            for r in conn.execute(
                "SELECT rule FROM nem12.finding f JOIN nem12.file_ledger l USING (file_id) "
                "WHERE l.key = %s",
                (key,),
            ).fetchall()
        }
        assert case["rule"] in rules, name
    assert ledger["landing/good.csv"] == "loaded"
    stored = conn.execute(
        "SELECT nmi, nmi_suffix, interval_start FROM nem12.meter_reading"
    ).fetchall()
    assert len(stored) == len(set(stored)) == len(expected_keys)
    assert set(stored) == expected_keys
    stored_reads = conn.execute(
        "SELECT nmi, nmi_suffix, current_register_read_datetime FROM nem12.meter_read"
    ).fetchall()
    assert expected_reads and set(stored_reads) == expected_reads
    good_values = {(r["nmi"], r["nmi_suffix"], r["interval_start"]): r["value"] for r in rows(GOOD)}
    held = dict(
        ((nmi, suffix, start), value)
        for nmi, suffix, start, value in conn.execute(
            "SELECT nmi, nmi_suffix, interval_start, value FROM nem12.meter_reading "
            "WHERE nmi = ANY(%s)",
            (sorted({k[0] for k in good_values}),),
        ).fetchall()
    )
    assert held == good_values


def rows(data: bytes) -> list[dict]:
    return list(parse_all(data).readings.iter_rows(named=True))
