"""The pipeline steps on real PostgreSQL and S3, without Airflow."""

from __future__ import annotations

from dataclasses import replace

import pytest

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.pipeline import steps, storage
from nem12.pipeline.settings import Settings

GOOD = generate_bytes(GeneratorSpec(nmis=1, days=2, seed=1))
BAD = generate_bytes(GeneratorSpec(nmis=1, days=2, seed=2, defects=("header_missing",)))


def put(s3, services, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        s3.put_object(Bucket=services.bucket, Key=key, Body=data)


def test_new_objects_register_duplicates_and_validate_with_report_in_s3(env):
    services, conn, s3 = env
    settings = replace(
        Settings(bucket=services.bucket), reports_dir=f"s3://{services.bucket}/reports"
    )
    put(s3, services, {"landing/a.csv": GOOD, "landing/b.csv": GOOD, "landing/c.csv": BAD})
    found = steps.new_objects(s3, conn, settings)
    assert [o.key for o in found] == ["landing/a.csv", "landing/b.csv", "landing/c.csv"]
    files = steps.register(s3, conn, settings, found)
    assert [(f.key, f.status) for f in files] == [
        ("landing/a.csv", "registered"),
        ("landing/b.csv", "duplicate"),
        ("landing/c.csv", "registered"),
    ]
    outcome = steps.validate(s3, conn, settings, files, "run1")
    assert [f.key for f in outcome.accepted] == ["landing/a.csv"]
    assert [f.key for f in outcome.rejected] == ["landing/c.csv"]
    assert outcome.report_location is not None
    assert outcome.report_location.startswith(f"s3://{services.bucket}/reports/run1/")
    report_key = outcome.report_location.split(f"s3://{services.bucket}/", 1)[1]
    page = s3.get_object(Bucket=services.bucket, Key=report_key)["Body"].read()
    assert page.startswith(b"<!DOCTYPE html>")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=services.bucket)["Contents"]}
    assert len([k for k in keys if k.startswith("reports/run1/")]) > 1
    assert {"rejected/c.csv", "rejected/c.csv.findings.json"} <= keys
    assert "landing/c.csv" not in keys
    # the finished objects are no longer new; the unfinished ones still are
    assert [o.key for o in steps.new_objects(s3, conn, settings)] == ["landing/a.csv"]


def test_backfill_selection_by_glob_and_date_and_reprocessing(env):
    services, conn, s3 = env
    settings = Settings(bucket=services.bucket)
    put(s3, services, {"landing/x/NEM12#1#A#B.csv": GOOD, "landing/x/other.txt": b"hello"})
    chosen = steps.select_objects(s3, conn, settings, prefix="landing/x/", pattern="NEM12#*")
    assert [o.key for o in chosen] == ["landing/x/NEM12#1#A#B.csv"]
    assert (
        steps.select_objects(s3, conn, settings, prefix="landing/", arrived_to="2000-01-01") == []
    )
    files = steps.register(s3, conn, settings, chosen)
    staged = steps.load_group(s3, conn, settings, files)
    steps.merge(s3, conn, settings, list(staged))
    again = steps.select_objects(s3, conn, settings, prefix="landing/", pattern="NEM12#*")
    assert again == []
    every = steps.select_objects(s3, conn, settings, prefix="archive/", include_finished=True)
    assert [o.key for o in every] == ["archive/x/NEM12#1#A#B.csv"]
    redone = steps.register(s3, conn, settings, every, reprocess=True)
    assert [f.status for f in redone] == ["registered"]


def test_groups_put_small_files_together_and_big_ones_alone():
    settings = Settings(group_bytes=100, group_files=3)
    files = [
        steps.Registered(i, f"k{i}", size, "registered")
        for i, size in enumerate([500, 10, 10, 10, 10, 60])
    ]
    groups = steps.loading_groups(files, settings)
    assert [[f.size for f in g] for g in groups] == [[500], [60, 10, 10], [10, 10]]


def test_every_step_logs_each_file_by_key_with_its_counts(env, caplog, tmp_path):
    services, conn, s3 = env
    settings = Settings(bucket=services.bucket, reports_dir=str(tmp_path / "reports"))
    put(s3, services, {"landing/a.csv": GOOD, "landing/b.csv": GOOD, "landing/c.csv": BAD})
    caplog.set_level("INFO", logger="nem12.pipeline.steps")
    files = steps.register(s3, conn, settings, steps.new_objects(s3, conn, settings))
    outcome = steps.validate(s3, conn, settings, files, "run1")
    assert outcome.staged == {1: 192}  # landing/a.csv is small: staged by validation
    loads = [f for f in outcome.accepted if f.file_id not in outcome.staged]
    assert steps.load_group(s3, conn, settings, loads) == {}
    counts = steps.merge(s3, conn, settings, [1], also_archive=files[1:2])
    assert counts.status == {1: "loaded"}
    assert (outcome.errors, outcome.warnings, outcome.rejected_blocks) == (1, 0, 0)
    lines = [r.getMessage() for r in caplog.records if r.name == "nem12.pipeline.steps"]
    report = outcome.report_location
    assert lines == [
        f"landing/a.csv: registered as file 1, {len(GOOD)} bytes",
        "landing/b.csv: duplicate of landing/a.csv (file 1), not parsed again",
        f"landing/c.csv: registered as file 3, {len(BAD)} bytes",
        "landing/a.csv: accepted (file 1), 192 readings, 0 errors, 0 warnings, "
        "0 of 2 blocks rejected",
        "landing/c.csv: rejected (file 3), 0 readings, 1 errors, 0 warnings, "
        "0 of 2 blocks rejected",
        # recorded together: the rejected moved, then the small ones staged
        "landing/c.csv rejected: 1 findings, moved to rejected/c.csv",
        "landing/a.csv: 192 readings staged (file 1)",
        f"validation report: {report}",
        "landing/a.csv: merged (file 1) as loaded: 192 inserted, 0 updated, 0 unchanged, "
        "0 superseded",
        "merge of 1 files: 192 inserted, 0 updated, 0 unchanged, 0 superseded",
        "landing/a.csv: archived to archive/a.csv",
        "landing/b.csv: archived to archive/b.csv",
    ]


def test_an_overlapping_run_leaves_files_another_run_finished(env):
    """Run B took the same new file as run A; A merged and archived it first."""
    services, conn, s3 = env
    settings = Settings(bucket=services.bucket)
    put(s3, services, {"landing/a.csv": GOOD})
    found = steps.new_objects(s3, conn, settings)
    run_a = steps.register(s3, conn, settings, found)
    run_b = steps.register(s3, conn, settings, found)  # the same ledger row
    assert [f.file_id for f in run_a] == [f.file_id for f in run_b]
    staged_b = steps.load_group(s3, conn, settings, run_b)  # B staged it, then stalled
    staged_a = steps.load_group(s3, conn, settings, run_a)
    first = steps.merge(s3, conn, settings, list(staged_a))
    assert first.inserted == 192 and list(staged_b) == list(staged_a)
    # B wakes up: every later step sees the file finished and leaves it alone
    assert steps.validate(s3, conn, settings, run_b, "run-b").accepted == []
    assert steps.load_group(s3, conn, settings, run_b) == {}
    late = steps.merge(s3, conn, settings, list(staged_b))
    assert (late.inserted, late.updated, late.unchanged, late.superseded) == (0, 0, 0, 0)
    ledger = conn.execute(
        "SELECT status, readings, inserted FROM nem12.file_ledger WHERE key = 'landing/a.csv'"
    ).fetchall()
    assert ledger == [("loaded", 192, 192)]
    assert conn.execute("SELECT count(*) FROM nem12.meter_reading").fetchone() == (192,)


def run_steps(s3, conn, settings: Settings, name: str = "run") -> list[steps.Registered]:
    """One run of the DAG's steps over what landed, as the tasks chain them."""
    files = steps.register(s3, conn, settings, steps.new_objects(s3, conn, settings))
    outcome = steps.validate(s3, conn, settings, files, name)
    staged = dict(outcome.staged)
    loading = [f for f in outcome.accepted if f.file_id not in staged]
    for group in steps.loading_groups(loading, settings):
        staged.update(steps.load_group(s3, conn, settings, group))
    duplicates = [f for f in files if f.status == "duplicate"]
    steps.merge(s3, conn, settings, list(staged), also_archive=duplicates)
    return files


def test_a_file_resent_after_its_twin_was_archived_is_a_duplicate_never_read(env, caplog):
    services, conn, s3 = env
    settings = Settings(bucket=services.bucket, reports_dir="/tmp/nem12-reports-twins")
    put(s3, services, {"landing/a.csv": GOOD})
    run_steps(s3, conn, settings)
    put(s3, services, {"landing/again/a.csv": GOOD, "landing/other.csv": BAD})
    caplog.set_level("INFO", logger="nem12")
    files = run_steps(s3, conn, settings)
    assert [(f.key, f.status) for f in files] == [
        ("landing/other.csv", "registered"),
        ("landing/again/a.csv", "duplicate"),
    ]
    assert any(
        "landing/again/a.csv: duplicate of landing/a.csv (file 1, same ETag and size), not read;"
        " its bytes are at archive/a.csv" in message
        for message in caplog.messages
    )
    rows = {
        key: rest
        for key, *rest in conn.execute(
            "SELECT key, status, moved_to, sha256 = (SELECT sha256 FROM nem12.file_ledger"
            " WHERE key = 'landing/a.csv') FROM nem12.file_ledger"
        ).fetchall()
    }
    assert rows["landing/again/a.csv"] == ["duplicate", "archive/a.csv", True]
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=services.bucket)["Contents"]}
    assert not [k for k in keys if k.startswith(("landing/", "held/"))]
    assert "archive/again/a.csv" not in keys and "archive/a.csv" in keys
    # a backfill of the archive (not landed objects) reads and keeps them, as before
    archived = [
        o for o in storage.list_objects(s3, settings.bucket, "archive/") if o.key == "archive/a.csv"
    ]
    again = steps.register(s3, conn, settings, archived)
    assert [(f.key, f.status) for f in again] == [("archive/a.csv", "duplicate")]
    steps.merge(s3, conn, settings, [], also_archive=again)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=services.bucket)["Contents"]}
    assert "archive/a.csv" in keys and not [k for k in keys if k.startswith("held/")]
    # a backfill that reprocesses reads it again, as any registered version
    reread = steps.register(
        s3,
        conn,
        settings,
        [
            o
            for o in storage.list_objects(s3, settings.bucket, "archive/")
            if o.key == "archive/a.csv"
        ],
        reprocess=True,
    )
    assert [(f.key, f.status) for f in reread] == [("archive/a.csv", "registered")]


def test_a_small_version_is_held_in_the_database_until_it_is_archived(env):
    """Registered bytes up to NEM12_HOLD_IN_DATABASE_BYTES skip held/ in S3 (two requests)."""
    services, conn, s3 = env
    small = len(GOOD)  # big.csv is a byte bigger: held in S3, loaded by a load task
    settings = Settings(
        bucket=services.bucket, hold_in_database_bytes=small, stage_with_validation_bytes=small
    )
    put(s3, services, {"landing/a.csv": GOOD, "landing/big.csv": GOOD + b"\n"})
    files = steps.register(s3, conn, settings, steps.new_objects(s3, conn, settings))
    held = conn.execute("SELECT file_id, content FROM nem12.held_content").fetchall()
    assert held == [(files[0].file_id, GOOD)]
    listed = s3.list_objects_v2(Bucket=services.bucket, Prefix="held/").get("Contents", [])
    assert [o["Key"] for o in listed] == [f"held/{files[1].file_id}/big.csv"]
    outcome = steps.validate(s3, conn, settings, files, "run")
    assert outcome.staged == {files[0].file_id: 192}
    staged = steps.load_group(s3, conn, settings, outcome.accepted[1:])
    assert staged == {files[1].file_id: 192}
    steps.merge(s3, conn, settings, [*outcome.staged, *staged])
    assert conn.execute("SELECT count(*) FROM nem12.held_content").fetchone() == (0,)
    archived = {
        o["Key"]: s3.get_object(Bucket=services.bucket, Key=o["Key"])["Body"].read()
        for o in s3.list_objects_v2(Bucket=services.bucket)["Contents"]
    }
    assert archived == {"archive/a.csv": GOOD, "archive/big.csv": GOOD + b"\n"}


@pytest.mark.parametrize("batch", [1, 2, 1000], ids=["file by file", "in twos", "together"])
def test_registration_and_validation_in_batches_of_any_size_agree(
    env, tmp_path, batch, monkeypatch
):
    """A duplicate is found whether its original is in its batch or an earlier one."""
    monkeypatch.setattr(steps, "STAGE_BATCH_FILES", batch)
    services, conn, s3 = env
    settings = Settings(bucket=services.bucket, reports_dir=str(tmp_path / "reports"))
    put(s3, services, {"landing/a.csv": GOOD, "landing/b.csv": GOOD, "landing/c.csv": BAD})
    put(s3, services, {"landing/d.csv": GOOD + b"\n", "landing/e.csv": GOOD + b"\n"})
    files = steps.register(s3, conn, settings, steps.new_objects(s3, conn, settings))
    assert [(f.key, f.status) for f in files] == [
        ("landing/a.csv", "registered"),
        ("landing/b.csv", "duplicate"),
        ("landing/c.csv", "registered"),
        ("landing/d.csv", "registered"),
        ("landing/e.csv", "duplicate"),
    ]
    outcome = steps.validate(s3, conn, settings, files, "run")
    assert [f.key for f in outcome.accepted] == ["landing/a.csv", "landing/d.csv"]
    assert [f.key for f in outcome.rejected] == ["landing/c.csv"]
    assert outcome.staged == {1: 192, 4: 192}
