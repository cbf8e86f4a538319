"""Staging loads and the merge on a real PostgreSQL: newest version wins, nothing twice."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import psycopg
import pytest

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.format.parsing import ParseConfig, parse_source
from nem12.warehouse.ledger import record_parse, register_file
from nem12.warehouse.merge import merge_files
from nem12.warehouse.schema import SCHEMA_VERSION, TASK_ROLE_SQL, apply_schema, schema_version
from nem12.warehouse.staging import stage_days

BASE = GeneratorSpec(nmis=2, days=2, channels=("E1", "B1"), seed=1, variable_day_share=0.5)
READINGS = 2 * 2 * 2 * 48


DAYS = ParseConfig(per_day=True)


def load(conn: psycopg.Connection, key: str, data: bytes) -> int:
    """Register, parse and stage one file as a task would; returns its ledger id."""
    file_id = register_file(conn, "landing", key, etag=key, size_bytes=len(data)).file_id
    parses = list(parse_source(data, name=key, config=DAYS))  # bytes sources need no open handle
    stage_days(conn, file_id, parses)
    reports = [p.result for p in parses]
    record_parse(conn, file_id, reports, reports[0].status)
    return file_id


def table(conn: psycopg.Connection) -> dict[tuple, tuple]:
    rows = conn.execute(
        "SELECT nmi, nmi_suffix, interval_start, value, quality_method, file_id "
        "FROM nem12.meter_reading"
    ).fetchall()
    return {(r[0], r[1], r[2]): (r[3], r[4], r[5]) for r in rows}


def test_schema_is_idempotent(conn):
    apply_schema(conn)
    apply_schema(conn)
    assert conn.execute("SELECT count(*) FROM nem12.meter_reading").fetchone() == (0,)


def staged_days(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) FROM nem12.day_staging").fetchone()[0]


#: BASE: 2 NMIs x 2 suffixes x 2 days of 30-minute data.
DAYS_OF_BASE = 8


def test_a_database_at_the_previous_version_is_brought_to_the_current_one(conn):
    conn.execute("INSERT INTO nem12.schema_version (version) VALUES (%s)", (SCHEMA_VERSION - 1,))
    conn.execute("DELETE FROM nem12.schema_version WHERE version = %s", (SCHEMA_VERSION,))
    assert schema_version(conn) == SCHEMA_VERSION - 1
    apply_schema(conn)
    assert schema_version(conn) == SCHEMA_VERSION
    assert conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = 'nem12.meter_reading'::regclass"
    ).fetchone() == ("v",)


def test_a_database_a_newer_worker_upgraded_gets_no_older_ddl(conn):
    conn.execute("DROP VIEW nem12.ledger_summary")
    conn.execute("INSERT INTO nem12.schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    apply_schema(conn)
    assert conn.execute("SELECT to_regclass('nem12.ledger_summary')").fetchone() == (None,)


def test_a_file_is_staged_then_merged_with_exact_values(conn):
    file_id = load(conn, "a.csv", generate_bytes(BASE))
    assert staged_days(conn) == DAYS_OF_BASE
    counts = merge_files(conn, [file_id])
    assert (counts.inserted, counts.updated, counts.unchanged, counts.superseded) == (
        READINGS,
        0,
        0,
        0,
    )
    stored = table(conn)
    assert len(stored) == READINGS
    values = [v[0] for v in stored.values()]
    assert all(isinstance(v, Decimal) for v in values)
    assert staged_days(conn) == 0
    ledger = conn.execute(
        "SELECT status, readings, inserted FROM nem12.file_ledger WHERE file_id = %s", (file_id,)
    ).fetchone()
    assert ledger == ("loaded", READINGS, READINGS)


def test_restaging_a_file_replaces_its_rows(conn):
    data = generate_bytes(BASE)
    first = load(conn, "a.csv", data)
    again = load(conn, "a.csv", data)
    assert first == again
    assert staged_days(conn) == DAYS_OF_BASE


def test_newer_version_wins_and_a_late_older_one_changes_nothing(conn):
    old = GeneratorSpec(**{**BASE.__dict__, "update_datetime": datetime(2024, 2, 1, 9, 0)})
    new = GeneratorSpec(
        **{**BASE.__dict__, "seed": 11, "update_datetime": datetime(2024, 3, 1, 9, 0)}
    )
    merge_files(conn, [load(conn, "old.csv", generate_bytes(old))])
    newer = merge_files(conn, [load(conn, "new.csv", generate_bytes(new))])
    assert newer.inserted == 0 and newer.updated + newer.unchanged == READINGS
    after_new = table(conn)
    late = merge_files(conn, [load(conn, "old-again.csv", generate_bytes(old))])
    assert (late.inserted, late.updated) == (0, 0)
    assert late.superseded + late.unchanged == READINGS
    assert {k: v[:2] for k, v in table(conn).items()} == {k: v[:2] for k, v in after_new.items()}


def test_same_batch_versions_resolve_to_the_newest_and_count_the_rest(conn):
    old = GeneratorSpec(**{**BASE.__dict__, "update_datetime": datetime(2024, 2, 1, 9, 0)})
    new = GeneratorSpec(
        **{**BASE.__dict__, "seed": 11, "update_datetime": datetime(2024, 3, 1, 9, 0)}
    )
    new_id = load(conn, "new.csv", generate_bytes(new))
    old_id = load(conn, "old.csv", generate_bytes(old))
    counts = merge_files(conn, [old_id, new_id])
    assert counts.inserted == READINGS
    assert counts.superseded == READINGS
    assert counts.per_file[new_id]["inserted"] == READINGS
    assert counts.per_file[old_id]["superseded"] == READINGS
    assert {v[2] for v in table(conn).values()} == {new_id}


def test_identical_newer_version_moves_the_version_so_a_middle_one_cannot_win(conn):
    v1 = GeneratorSpec(**{**BASE.__dict__, "update_datetime": datetime(2024, 1, 1)})
    v3 = GeneratorSpec(**{**BASE.__dict__, "update_datetime": datetime(2024, 3, 1)})
    v2 = GeneratorSpec(**{**BASE.__dict__, "seed": 21, "update_datetime": datetime(2024, 2, 1)})
    merge_files(conn, [load(conn, "v1.csv", generate_bytes(v1))])
    same = merge_files(conn, [load(conn, "v3.csv", generate_bytes(v3))])
    assert same.unchanged == READINGS
    before = table(conn)
    middle = merge_files(conn, [load(conn, "v2.csv", generate_bytes(v2))])
    assert middle.superseded == READINGS
    assert {k: v[:2] for k, v in table(conn).items()} == {k: v[:2] for k, v in before.items()}


def test_merging_one_file_leaves_the_other_staged_files_rows(conn):
    first = load(conn, "a.csv", generate_bytes(BASE))
    other = GeneratorSpec(**{**BASE.__dict__, "seed": 2})
    second = load(conn, "b.csv", generate_bytes(other))
    assert merge_files(conn, [first]).inserted == READINGS
    assert staged_days(conn) == DAYS_OF_BASE
    assert merge_files(conn, [second]).inserted == READINGS
    assert staged_days(conn) == 0
    assert len(table(conn)) == 2 * READINGS


def test_one_object_whose_members_repeat_a_day_counts_it_once(conn):
    from nem12.devtools.generate import zip_bytes

    newer = GeneratorSpec(
        **{**BASE.__dict__, "seed": 11, "update_datetime": datetime(2024, 3, 1, 9, 0)}
    )
    data = zip_bytes({"old.csv": generate_bytes(BASE), "new.csv": generate_bytes(newer)})
    file_id = register_file(conn, "landing", "both.zip", "e", len(data)).file_id
    reports = []

    def parses():
        for parse in parse_source(data, name="both.zip", config=DAYS):  # members one after another
            yield parse
            reports.append(parse.result)

    assert stage_days(conn, file_id, parses()) == 2 * READINGS
    record_parse(conn, file_id, reports, "accepted")
    counts = merge_files(conn, [file_id])
    assert (counts.inserted, counts.superseded) == (READINGS, READINGS)
    expected = {
        key: (value, method)
        for key, (value, method, _) in table_of(parse_source(generate_bytes(newer))).items()
    }
    assert {k: (v, m) for k, (v, m, _) in table(conn).items()} == expected


def table_of(parses) -> dict[tuple, tuple]:
    rows = {}
    for parse in parses:
        for batch in parse.batches():
            for r in batch.iter_rows(named=True):
                rows[(r["nmi"], r["nmi_suffix"], r["interval_start"])] = (
                    r["value"],
                    r["quality_method"],
                    None,
                )
    return rows


def test_findings_are_kept_with_file_line_and_rule(conn):
    data = generate_bytes(GeneratorSpec(defects=("value_negative",)))
    file_id = load(conn, "bad.csv", data)
    rows = conn.execute(
        "SELECT file, rule, severity, line FROM nem12.finding WHERE file_id = %s", (file_id,)
    ).fetchall()
    assert rows == [("bad.csv", "value_negative", "error", 3)]
    assert conn.execute(
        "SELECT status, quality FROM nem12.file_ledger WHERE file_id = %s", (file_id,)
    ).fetchone() == ("validated", "partial")


def test_ledger_summary_view(conn):
    assert conn.execute(
        "SELECT files_by_status, oldest_unprocessed, last_merge, readings FROM nem12.ledger_summary"
    ).fetchone() == ({}, None, None, 0)
    file_id = load(conn, "a.csv", generate_bytes(BASE))
    waiting = conn.execute(
        "SELECT files_by_status, oldest_unprocessed IS NOT NULL FROM nem12.ledger_summary"
    ).fetchone()
    assert waiting == ({"validated": 1}, True)
    merge_files(conn, [file_id])
    done = conn.execute(
        "SELECT files_by_status, oldest_unprocessed, last_merge IS NOT NULL, readings "
        "FROM nem12.ledger_summary"
    ).fetchone()
    assert done == ({"loaded": 1}, None, True, READINGS)


def test_tasks_run_as_a_role_without_ddl_rights(conn, postgres):
    """The documented least-privilege role loads and merges; it cannot change the schema."""
    conn.execute("CREATE ROLE nem12_task_test LOGIN PASSWORD 'task'")
    try:
        conn.execute(TASK_ROLE_SQL.format(role="nem12_task_test"))
        params = {**conn.info.get_parameters(), "user": "nem12_task_test", "password": "task"}
        with psycopg.connect(**params, autocommit=True) as task:
            apply_schema(task)  # already at the current version: no DDL attempted
            file_id = load(task, "a.csv", generate_bytes(BASE))
            assert merge_files(task, [file_id]).inserted == READINGS
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                task.execute("DROP TABLE nem12.meter_day")
    finally:
        conn.execute("DROP OWNED BY nem12_task_test")
        conn.execute("DROP ROLE nem12_task_test")
