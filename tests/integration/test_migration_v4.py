"""Schema v4 -> v5 on a real PostgreSQL: the long table's rows as the view's, exactly.

The v4 tables under tests/fixtures/v4_meter_reading were written by the v4 code
(commit 4830e15) from the deliveries of its make_fixture.py. Each test restores
them into a new database (DDL_V4, version 4, the rows COPYed back) and lets
``apply_schema`` migrate it.
"""

from __future__ import annotations

import gzip
import importlib.util
import sys
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from nem12.format.parsing import ParseConfig, parse_source
from nem12.warehouse import schema
from nem12.warehouse.ledger import record_parse, register_file
from nem12.warehouse.merge import merge_files
from nem12.warehouse.staging import stage_days

FIXTURE = Path(__file__).parents[1] / "fixtures" / "v4_meter_reading"

_spec = importlib.util.spec_from_file_location("v4_make_fixture", FIXTURE / "make_fixture.py")
make_fixture = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(make_fixture)

#: The long table's columns, in v4's order (merged_at last).
V4_COLUMNS = (
    "nmi, nmi_suffix, interval_start, interval_length, value, uom, quality_method, "
    "reason_code, reason_description, update_datetime, header_datetime, file_id, merged_at"
)
#: What the v4 code wrote per set (make_fixture.py's deliveries).
V4_ROWS = {"deliveries": 1680, "resent_interval_length": 240}
#: The NMIs of "deliveries" in key order, as the conversion takes them.
NMIS = [
    "6100000001",
    "6100000002",
    "6100000003",
    "6200000001",
    "6300000001",
    "CCCC123456",
    "VABD000163",
]


def readings(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        f"SELECT {V4_COLUMNS} FROM nem12.meter_reading ORDER BY nmi, nmi_suffix, interval_start"
    ).fetchall()


def days(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT * FROM nem12.meter_day ORDER BY nmi, nmi_suffix, interval_date"
    ).fetchall()


@pytest.fixture
def new_database(postgres):
    """Connections to new, empty databases (no schema) on ``postgres``, dropped after."""
    made: list[str] = []

    def connect(name: str | None = None) -> psycopg.Connection:
        if name is None:
            name = f"t_{uuid.uuid4().hex[:12]}"
            postgres.psql(f"CREATE DATABASE {name};")
            made.append(name)
        return psycopg.connect(postgres.get_uri(name), autocommit=True)

    yield connect
    for name in made:
        postgres.psql(f"DROP DATABASE {name} WITH (FORCE);")


def restore_v4(conn: psycopg.Connection, fixture: str) -> list[tuple]:
    """A database at schema v4 holding the fixture's ledger and long table; its rows."""
    folder = FIXTURE / fixture
    with conn.transaction():
        conn.execute(schema.DDL_V4)
        conn.execute("INSERT INTO nem12.schema_version (version) VALUES (4)")
        for table, data in (
            ("file_ledger", (folder / "file_ledger.csv").read_bytes()),
            ("meter_reading", gzip.decompress((folder / "meter_reading.csv.gz").read_bytes())),
        ):
            header = data.split(b"\n", 1)[0].decode()
            with conn.cursor().copy(
                f"COPY nem12.{table} ({header}) FROM STDIN WITH (FORMAT csv, HEADER)"
            ) as copy:
                copy.write(data)
        conn.execute(
            "SELECT setval('nem12.file_ledger_file_id_seq', (SELECT max(file_id)"
            " FROM nem12.file_ledger))"
        )
    assert schema.schema_version(conn) == 4
    rows = readings(conn)
    assert len(rows) == V4_ROWS[fixture]
    return rows


def assert_v5_done(conn: psycopg.Connection) -> None:
    assert schema.schema_version(conn) == schema.SCHEMA_VERSION == 9
    assert conn.execute(
        "SELECT relkind FROM pg_class WHERE oid = 'nem12.meter_reading'::regclass"
    ).fetchone() == ("v",)
    assert conn.execute(
        "SELECT to_regclass('nem12.meter_reading_v4'), to_regclass('nem12.migration_v5')"
    ).fetchone() == (None, None)


def test_v4_fixture_holds_what_the_deliveries_are_about(new_database):
    """The fixture is the data the other tests need: corrections, V days, 5/15/30 minutes."""
    with new_database() as conn:
        restore_v4(conn, "deliveries")
        files = conn.execute(
            "SELECT file_id, key, status, inserted, updated, superseded FROM nem12.file_ledger"
            " ORDER BY file_id"
        ).fetchall()
        assert files == [
            (1, "base-30min.csv", "loaded", 864, 0, 0),
            (2, "meter-5min.csv", "loaded", 288, 0, 0),
            (3, "meter-15min.csv", "loaded", 384, 0, 0),
            (4, "Example_NEM12_multiple_quality.csv", "loaded", 48, 0, 0),
            (5, "Example_NEM12_actual_interval.csv", "loaded", 96, 0, 0),
            (6, "correction-30min.csv", "loaded", 0, 384, 0),
            (7, "late-older-30min.csv", "loaded", 0, 0, 192),
            (8, "correction-2-30min.csv", "loaded", 0, 96, 0),
            (9, "correction-5min.csv", "loaded", 0, 288, 0),
        ]
        shape = conn.execute(
            "SELECT nmi, nmi_suffix, interval_length, count(*),"
            " array_agg(DISTINCT quality_method ORDER BY quality_method),"
            " array_agg(DISTINCT file_id ORDER BY file_id)"
            " FROM nem12.meter_reading GROUP BY 1, 2, 3 ORDER BY 1, 2"
        ).fetchall()
        assert shape == [
            ("6100000001", "B1", 30, 144, ["A", "E52", "S14"], [1, 6, 8]),
            ("6100000001", "E1", 30, 144, ["A", "E52", "S14"], [1, 6, 8]),
            ("6100000002", "B1", 30, 144, ["A", "E52", "S14"], [1, 6]),
            ("6100000002", "E1", 30, 144, ["A", "E52", "S14"], [1, 6]),
            ("6100000003", "B1", 30, 144, ["A", "E52", "S14"], [1]),
            ("6100000003", "E1", 30, 144, ["A", "E52", "S14"], [1]),
            ("6200000001", "E1", 5, 288, ["A", "E52", "S14"], [9]),
            ("6300000001", "B1", 15, 192, ["A", "E52", "S14"], [3]),
            ("6300000001", "E1", 15, 192, ["A", "E52", "S14"], [3]),
            ("CCCC123456", "E1", 30, 48, ["A", "F14", "S14"], [4]),
            ("VABD000163", "E1", 30, 48, ["A"], [5]),
            ("VABD000163", "Q1", 30, 48, ["A"], [5]),
        ]


def test_a_v4_database_converts_and_the_view_returns_every_row_as_it_was(new_database):
    with new_database() as conn:
        before = restore_v4(conn, "deliveries")
        schema.apply_schema(conn)
        assert_v5_done(conn)
        after = readings(conn)
        assert after == before
        # exactly as v4 held them: Decimal of the same scale, datetimes with their offset
        assert [str(r[4]) for r in after] == [str(r[4]) for r in before]
        assert all(isinstance(r[4], Decimal) and isinstance(r[2], datetime) for r in after)
        # one row per stream and day, V where the day's intervals mix qualities
        stored = conn.execute(
            "SELECT nmi, nmi_suffix, interval_date, interval_length, quality_method,"
            " interval_quality IS NOT NULL, cardinality(interval_values), file_id"
            " FROM nem12.meter_day ORDER BY 1, 2, 3"
        ).fetchall()
        expected_days = sorted(
            {
                (nmi, suffix, (start + timedelta(hours=10)).date(), length, file_id)
                for nmi, suffix, start, length, *_, file_id, _ in before
            }
        )
        assert [(*d[:4], d[7]) for d in stored] == expected_days
        assert all(d[6] == 1440 // d[3] for d in stored)
        assert all((d[4] == "V") == d[5] for d in stored)
        assert ("CCCC123456", "E1", date(2004, 4, 17), 30, "V", True, 48, 4) in stored
        assert ("VABD000163", "Q1", date(2004, 2, 1), 30, "A", False, 48, 5) in stored
        # applied again: nothing changes
        schema.apply_schema(conn)
        assert readings(conn) == before


def load(conn: psycopg.Connection, key: str, data: bytes) -> int:
    """Register, parse and stage one file as the current tasks do (as in
    tests/integration/test_load_and_merge.py's ``load``); returns its ledger id."""
    file_id = register_file(conn, "landing", key, etag=key, size_bytes=len(data)).file_id
    parses = list(parse_source(data, name=key, config=ParseConfig(per_day=True)))
    stage_days(conn, file_id, parses)
    reports = [p.result for p in parses]
    record_parse(conn, file_id, reports, reports[0].status)
    return file_id


#: Per set, which v4 rows the current code must give: v4 kept the rows of a day's
#: older version at another interval length; only file 2's version is current.
CURRENT_V4_ROWS = {
    "deliveries": lambda row: True,
    "resent_interval_length": lambda row: row[11] == 2,
}


@pytest.mark.parametrize("fixture", sorted(CURRENT_V4_ROWS))
def test_the_same_deliveries_through_the_new_code_give_the_rows_v4_held(
    conn, new_database, fixture
):
    with new_database() as old:
        v4 = restore_v4(old, fixture)
        v4_files = old.execute("SELECT file_id, key FROM nem12.file_ledger ORDER BY 1").fetchall()
        schema.apply_schema(old)
        migrated_days = days_without_merged_at(old)
    for group in make_fixture.DELIVERIES[fixture]:
        merge_files(conn, [load(conn, d.key, d.data()) for d in group])
    # the ledger ids line up (same deliveries, same order), so file_id is compared too
    assert conn.execute("SELECT file_id, key FROM nem12.file_ledger ORDER BY 1").fetchall() == (
        v4_files
    )
    assert conn.execute(
        "SELECT count(*) FROM nem12.file_ledger WHERE status <> 'loaded'"
    ).fetchone() == (0,)
    # merged_at is when each merge ran: not comparable across the two databases
    expected = [row[:-1] for row in v4 if CURRENT_V4_ROWS[fixture](row)]
    got = [row[:-1] for row in readings(conn)]
    assert got == expected
    assert [str(r[4]) for r in got] == [str(r[4]) for r in expected]
    # and the migration wrote the day rows the current merge writes (compared as
    # numbers: the current code keeps a value's scale as written, v4 kept it trimmed)
    assert days_without_merged_at(conn) == migrated_days


def days_without_merged_at(conn: psycopg.Connection) -> list[tuple]:
    cursor = conn.execute("SELECT * FROM nem12.meter_day ORDER BY nmi, nmi_suffix, interval_date")
    merged_at = [c.name for c in cursor.description].index("merged_at")
    return [row[:merged_at] + row[merged_at + 1 :] for row in cursor.fetchall()]


class KilledOnBatch:
    """The connection migrate_v4 works on, its server process terminated (for real,
    by ``pg_terminate_backend`` from another session) once batch ``kill_on`` has
    written its days to meter_day, before that batch commits."""

    def __init__(self, conn: psycopg.Connection, admin: psycopg.Connection, kill_on: int):
        self.conn, self.admin, self.kill_on, self.batches = conn, admin, kill_on, 0

    def transaction(self):
        return self.conn.transaction()

    def execute(self, query, params=None):
        cursor = self.conn.execute(query, params)
        if query.startswith(f"INSERT INTO {schema.SCHEMA}.meter_day"):
            self.batches += 1
            if self.batches == self.kill_on:
                assert self.admin.execute(
                    "SELECT pg_terminate_backend(%s, 10000)", (self.conn.info.backend_pid,)
                ).fetchone() == (True,)
        return cursor


def test_an_interrupted_conversion_resumes_where_it_stopped(new_database, monkeypatch):
    with new_database() as plain:
        restore_v4(plain, "deliveries")
        schema.apply_schema(plain)
        uninterrupted_days, uninterrupted_rows = days(plain), readings(plain)

    admin = new_database()
    name = admin.info.dbname
    with admin:
        before = restore_v4(admin, "deliveries")
        migrate = schema.migrate_v4
        victim = psycopg.connect(**admin.info.get_parameters(), autocommit=True)
        killer = KilledOnBatch(victim, admin, kill_on=2)
        monkeypatch.setattr(schema, "migrate_v4", lambda conn: migrate(killer, batch_readings=100))
        with pytest.raises(psycopg.OperationalError):
            schema.apply_schema(victim)
        assert victim.closed or victim.broken
        victim.close()
        monkeypatch.undo()
        assert killer.batches == 2

        # batch 1 (one NMI: 288 readings > 100) committed, batch 2 rolled back
        assert admin.execute("SELECT done_through_nmi FROM nem12.migration_v5").fetchall() == [
            (NMIS[0],)
        ]
        assert days(admin) == [d for d in uninterrupted_days if d[0] == NMIS[0]]
        assert readings(admin) == [r for r in before if r[0] == NMIS[0]]
        long_rows = admin.execute(
            f"SELECT {V4_COLUMNS} FROM nem12.meter_reading_v4"
            " ORDER BY nmi, nmi_suffix, interval_start"
        ).fetchall()
        assert long_rows == before  # the long table is kept whole until the end
        assert schema.schema_version(admin) == 4

    with new_database(name) as resumed:
        schema.apply_schema(resumed)
        assert_v5_done(resumed)
        assert days(resumed) == uninterrupted_days
        assert readings(resumed) == uninterrupted_rows == before


def test_small_batches_convert_whole_nmis_one_transaction_each(new_database):
    with new_database() as conn:
        before = restore_v4(conn, "deliveries")
        with conn.transaction():
            conn.execute(schema.DDL_V4)
            conn.execute(schema.DDL_V5)
        written = schema.migrate_v4(conn, batch_readings=100)
        assert written == len(days(conn)) == 26
        assert readings(conn) == before
        assert conn.execute(
            "SELECT to_regclass('nem12.meter_reading_v4'), to_regclass('nem12.migration_v5')"
        ).fetchone() == (None, None)


def overlaps(conn: psycopg.Connection) -> list[tuple]:
    """Readings that start before the previous reading of their stream ends."""
    return conn.execute(
        """
        SELECT nmi, nmi_suffix, interval_start FROM (
            SELECT nmi, nmi_suffix, interval_start,
                   lag(interval_start + interval_length * interval '1 minute') OVER (
                       PARTITION BY nmi, nmi_suffix ORDER BY interval_start) AS previous_end
            FROM nem12.meter_reading) r
        WHERE interval_start < previous_end
        """
    ).fetchall()


def test_a_day_resent_at_another_interval_length_converts_to_its_newest_version(new_database):
    with new_database() as conn:
        before = restore_v4(conn, "resent_interval_length")
        # v4 left the :15/:45 rows of the 15-minute versions beside the 30-minute one
        assert len(overlaps(conn)) == 2 * 48
        assert conn.execute(
            "SELECT file_id, interval_length, count(*) FROM nem12.meter_reading"
            " GROUP BY 1, 2 ORDER BY 1"
        ).fetchall() == [(1, 15, 48), (2, 30, 144), (3, 15, 48)]
        schema.apply_schema(conn)
        assert_v5_done(conn)
        assert overlaps(conn) == []
        newest = [row for row in before if row[11] == 2]  # days-30min-new.csv
        assert len(newest) == 3 * 48
        assert readings(conn) == newest
        assert conn.execute(
            "SELECT interval_date, interval_length, cardinality(interval_values), file_id"
            " FROM nem12.meter_day ORDER BY 1"
        ).fetchall() == [(date(2024, 1, d), 30, 48, 2) for d in (1, 2, 3)]
