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


VIEW_COLUMNS = (
    "nmi, nmi_suffix, interval_start, interval_length, value, uom, quality_method, "
    "reason_code, reason_description, update_datetime"
)


def parsed_readings(data: bytes) -> list[tuple]:
    """The file's readings as the per-interval parse gives them, in the view's columns."""
    rows = []
    for parse in parse_source(data):
        for batch in parse.batches():
            for r in batch.iter_rows(named=True):
                rows.append(tuple(r[c] for c in VIEW_COLUMNS.split(", ")))
    return sorted(rows, key=lambda r: r[:3])


def view_rows(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        f"SELECT {VIEW_COLUMNS} FROM nem12.meter_reading ORDER BY nmi, nmi_suffix, interval_start"
    ).fetchall()


def test_the_view_holds_each_reading_as_the_per_interval_parse_reads_it(conn):
    """V days included: each interval's quality comes from the 400 range holding it."""
    data = generate_bytes(BASE)
    merge_files(conn, [load(conn, "a.csv", data)])
    expected = parsed_readings(data)
    assert {r[6] for r in expected} > {"A"}  # V days' intervals hold other qualities too
    assert view_rows(conn) == expected  # decimals by value, instants across zones
    ranges = conn.execute(
        "SELECT count(*) FROM nem12.meter_day WHERE interval_quality IS NOT NULL"
    ).fetchone()[0]
    assert ranges > 0


def test_a_day_keeps_its_total_and_intervals_per_quality_class(conn):
    data = generate_bytes(BASE)
    merge_files(conn, [load(conn, "a.csv", data)])
    expected: dict[tuple, list] = {}
    for nmi, suffix, start, _, value, _, quality, *_ in parsed_readings(data):
        day = expected.setdefault((nmi, suffix, start.date()), [Decimal(0), {}])
        day[0] += value
        day[1][quality[0]] = day[1].get(quality[0], 0) + 1
    stored = {
        (nmi, suffix, day): [total, {k: n for k, n in zip("AEFNSV", counts, strict=True) if n}]
        for nmi, suffix, day, total, *counts in conn.execute(
            "SELECT nmi, nmi_suffix, interval_date, total, actual_intervals, "
            "estimated_intervals, final_substituted_intervals, null_intervals, "
            "substituted_intervals, variable_intervals FROM nem12.meter_day"
        )
    }
    assert stored == expected


@pytest.mark.parametrize(("first", "then"), [(15, 30), (30, 15), (5, 30)])
def test_a_day_resent_at_another_interval_length_leaves_nothing_of_the_old(conn, first, then):
    old = GeneratorSpec(**{**BASE.__dict__, "interval_length": first})
    new = GeneratorSpec(
        **{**BASE.__dict__, "interval_length": then, "update_datetime": datetime(2024, 3, 1)}
    )
    merge_files(conn, [load(conn, "old.csv", generate_bytes(old))])
    counts = merge_files(conn, [load(conn, "new.csv", generate_bytes(new))])
    new_readings = 8 * 1440 // then
    shared_starts = 8 * 1440 // max(first, then)
    assert counts.updated + counts.unchanged == shared_starts
    assert counts.inserted == new_readings - shared_starts
    rows = view_rows(conn)
    assert rows == parsed_readings(generate_bytes(new))
    overlapping = conn.execute(
        "SELECT count(*) FROM nem12.meter_reading a JOIN nem12.meter_reading b "
        "USING (nmi, nmi_suffix) WHERE a.interval_start < b.interval_start "
        "AND b.interval_start < a.interval_start + a.interval_length * interval '1 minute'"
    ).fetchone()
    assert overlapping == (0,)


def test_a_correction_of_one_interval_counts_one_update_and_the_rest_unchanged(conn):
    data = generate_bytes(BASE)
    merge_files(conn, [load(conn, "a.csv", data)])
    lines = data.decode().split("\n")
    first_day = next(i for i, line in enumerate(lines) if line.startswith("300,"))
    fields = lines[first_day].split(",")
    fields[2] = str(Decimal(fields[2]) + 1)
    lines[first_day] = ",".join(fields)
    corrected = "\n".join(lines).replace("20240201091500", "20240301091500").encode()
    counts = merge_files(conn, [load(conn, "b.csv", corrected)])
    assert (counts.inserted, counts.updated, counts.unchanged, counts.superseded) == (
        0,
        1,
        READINGS - 1,
        0,
    )
    nmi_details = next(line for line in reversed(lines[:first_day]) if line.startswith("200,"))
    nmi, suffix = nmi_details.split(",")[1], nmi_details.split(",")[4]
    start = datetime.strptime(fields[1] + "+1000", "%Y%m%d%z")
    assert conn.execute(
        "SELECT value FROM nem12.meter_reading "
        "WHERE nmi = %s AND nmi_suffix = %s AND interval_start = %s",
        (nmi, suffix, start),
    ).fetchone() == (Decimal(fields[2]),)


def test_a_query_by_nmi_and_time_range_uses_the_key(conn):
    many = GeneratorSpec(**{**BASE.__dict__, "nmis": 300, "days": 3})
    merge_files(conn, [load(conn, "many.csv", generate_bytes(many))])
    conn.execute("ANALYZE nem12.meter_day")
    nmi = many.nmi(7)
    bounds = (datetime.fromisoformat("2024-01-02T00:00+10:00"),) * 2
    view = "\n".join(
        row[0]
        for row in conn.execute(
            "EXPLAIN SELECT * FROM nem12.meter_reading WHERE nmi = %s "
            "AND interval_start >= %s AND interval_start < %s + interval '1 day'",
            (nmi, *bounds),
        )
    )
    assert "Index Scan using meter_day_pkey" in view and "Index Cond: (nmi = " in view
    function = "\n".join(
        row[0]
        for row in conn.execute(
            "EXPLAIN SELECT * FROM nem12.meter_readings(%s, %s, %s + interval '1 day')",
            (nmi, *bounds),
        )
    )
    assert "Index Scan using meter_day_pkey" in function
    assert "interval_date >=" in function and "interval_date <=" in function
    got = conn.execute(
        "SELECT count(*), min(interval_start), max(interval_start) "
        "FROM nem12.meter_readings(%s, %s, %s + interval '1 day')",
        (nmi, *bounds),
    ).fetchone()
    assert got == (
        2 * 48,
        bounds[0],
        datetime.fromisoformat("2024-01-02T23:30+10:00"),
    )


def test_the_way_back_to_v4_keeps_every_reading(conn):
    from nem12.warehouse.schema import DDL_V4, DOWNGRADE_TO_V4

    merge_files(conn, [load(conn, "a.csv", generate_bytes(BASE))])
    before = view_rows(conn)
    with conn.transaction():
        conn.execute(DOWNGRADE_TO_V4)
    assert (schema_version(conn) or 0) < SCHEMA_VERSION - 1
    with conn.transaction():  # what a v4 release's first task applies
        conn.execute(DDL_V4)
        conn.execute("INSERT INTO nem12.schema_version (version) VALUES (4)")
    assert conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = 'nem12.meter_reading'::regclass"
    ).fetchone() == ("r",)
    assert view_rows(conn) == before
    assert len(before) == READINGS
    apply_schema(conn)  # and forward again
    assert view_rows(conn) == before
