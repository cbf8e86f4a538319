"""Staging loads and the merge on a real PostgreSQL: newest version wins, nothing twice."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import psycopg
import pytest

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.format.parsing import parse_source
from nem12.warehouse.ledger import record_parse, register_file
from nem12.warehouse.merge import merge_files
from nem12.warehouse.schema import SCHEMA_VERSION, TASK_ROLE_SQL, apply_schema, schema_version
from nem12.warehouse.staging import stage_readings

BASE = GeneratorSpec(nmis=2, days=2, channels=("E1", "B1"), seed=1, variable_day_share=0.5)
READINGS = 2 * 2 * 2 * 48


def load(conn: psycopg.Connection, key: str, data: bytes) -> int:
    """Register, parse and stage one file as a task would; returns its ledger id."""
    file_id = register_file(conn, "landing", key, etag=key, size_bytes=len(data)).file_id
    parses = list(parse_source(data, name=key))  # bytes sources need no open handle
    stage_readings(conn, file_id, parses)
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


def meter_storage(conn: psycopg.Connection) -> list[str] | None:
    """meter_reading's storage parameters (its fillfactor)."""
    row = conn.execute(
        "SELECT reloptions FROM pg_class WHERE oid = 'nem12.meter_reading'::regclass"
    ).fetchone()
    return row[0] if row else None


@pytest.mark.parametrize(
    ("storage_at_v2", "after_upgrade"),
    [("RESET (fillfactor)", ["fillfactor=50"]), ("SET (fillfactor = 100)", ["fillfactor=100"])],
    ids=["v2 default: gets 50", "owner's choice: kept"],
)
def test_a_database_at_the_previous_version_is_brought_to_the_current_one(
    conn, storage_at_v2, after_upgrade
):
    conn.execute(f"ALTER TABLE nem12.meter_reading {storage_at_v2}")
    conn.execute("INSERT INTO nem12.schema_version (version) VALUES (%s)", (SCHEMA_VERSION - 1,))
    conn.execute("DELETE FROM nem12.schema_version WHERE version = %s", (SCHEMA_VERSION,))
    assert schema_version(conn) == SCHEMA_VERSION - 1
    apply_schema(conn)
    assert schema_version(conn) == SCHEMA_VERSION
    assert meter_storage(conn) == after_upgrade


def test_a_database_a_newer_worker_upgraded_gets_no_older_ddl(conn):
    conn.execute("ALTER TABLE nem12.meter_reading RESET (fillfactor)")
    conn.execute("INSERT INTO nem12.schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    apply_schema(conn)
    assert meter_storage(conn) is None  # this version's DDL would have set fillfactor 50


def test_a_file_is_staged_then_merged_with_exact_values(conn):
    file_id = load(conn, "a.csv", generate_bytes(BASE))
    assert conn.execute("SELECT count(*) FROM nem12.reading_staging").fetchone() == (READINGS,)
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
    assert conn.execute("SELECT count(*) FROM nem12.reading_staging").fetchone() == (0,)
    ledger = conn.execute(
        "SELECT status, readings, inserted FROM nem12.file_ledger WHERE file_id = %s", (file_id,)
    ).fetchone()
    assert ledger == ("loaded", READINGS, READINGS)


def test_restaging_a_file_replaces_its_rows(conn):
    data = generate_bytes(BASE)
    first = load(conn, "a.csv", data)
    again = load(conn, "a.csv", data)
    assert first == again
    assert conn.execute("SELECT count(*) FROM nem12.reading_staging").fetchone() == (READINGS,)


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


def test_a_correction_of_whole_days_writes_each_new_version_beside_the_old(conn):
    """Pages keep half their space free: a correction's new versions stay on the old
    ones' pages, HOT updates that add no index entry."""
    old = GeneratorSpec(**{**BASE.__dict__, "update_datetime": datetime(2024, 2, 1, 9, 0)})
    new = GeneratorSpec(
        **{**BASE.__dict__, "seed": 11, "update_datetime": datetime(2024, 3, 1, 9, 0)}
    )
    assert meter_storage(conn) == ["fillfactor=50"]
    merge_files(conn, [load(conn, "old.csv", generate_bytes(old))])
    page_of = (
        "SELECT nmi, nmi_suffix, interval_start, (ctid::text::point)[0] FROM nem12.meter_reading"
    )
    before = {row[:3]: row[3] for row in conn.execute(page_of)}
    newer = merge_files(conn, [load(conn, "new.csv", generate_bytes(new))])
    assert newer.updated + newer.unchanged == READINGS and newer.updated > READINGS // 2
    after = {row[:3]: row[3] for row in conn.execute(page_of)}
    moved = [key for key, page in after.items() if page != before[key]]
    assert after.keys() == before.keys()
    # a longer new version may not fit its page (here 2 of 384); at fillfactor 100 all move
    assert len(moved) <= READINGS // 20


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


def staged(conn: psycopg.Connection) -> tuple[int, int]:
    return conn.execute(
        "SELECT (SELECT count(*) FROM nem12.reading_staging), "
        "(SELECT count(*) FROM nem12.staged_stream)"
    ).fetchone()


def test_staging_records_each_streams_span(conn):
    file_id = load(conn, "a.csv", generate_bytes(BASE))
    spans = conn.execute(
        "SELECT member, nmi, nmi_suffix, first_start, last_start, readings "
        "FROM nem12.staged_stream WHERE file_id = %s ORDER BY nmi, nmi_suffix",
        (file_id,),
    ).fetchall()
    first = datetime.fromisoformat("2024-01-01T00:00:00+10:00")
    last = datetime.fromisoformat("2024-01-02T23:30:00+10:00")
    assert spans == [
        (0, nmi, suffix, first, last, 2 * 48)
        for nmi in (BASE.nmi(1), BASE.nmi(2))
        for suffix in ("B1", "E1")
    ]


def test_merging_one_file_leaves_the_other_staged_files_rows(conn):
    first = load(conn, "a.csv", generate_bytes(BASE))
    other = GeneratorSpec(**{**BASE.__dict__, "seed": 2})
    second = load(conn, "b.csv", generate_bytes(other))
    assert merge_files(conn, [first]).inserted == READINGS
    assert staged(conn) == (READINGS, 4)
    assert merge_files(conn, [second]).inserted == READINGS
    assert staged(conn) == (0, 0)
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
        for parse in parse_source(data, name="both.zip"):  # members one after another
            yield parse
            reports.append(parse.result)

    assert stage_readings(conn, file_id, parses()) == 2 * READINGS
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
                task.execute("DROP TABLE nem12.meter_reading")
    finally:
        conn.execute("DROP OWNED BY nem12_task_test")
        conn.execute("DROP ROLE nem12_task_test")
