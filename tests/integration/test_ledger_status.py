"""``nem12 status`` on a ledger of known rows in a real PostgreSQL: exact table and JSON."""

from __future__ import annotations

import json
import socket
import uuid
from datetime import UTC, datetime

import psycopg

from nem12.cli import main
from nem12.pipeline.connections import postgres_dsn_from_env
from nem12.pipeline.settings import Settings

LAST_MERGE = datetime(2024, 5, 2, 3, 0, 0, tzinfo=UTC)
EARLIER_MERGE = datetime(2024, 5, 1, 3, 0, 0, tzinfo=UTC)

OLDEST_AGE = "2 days 3 hours 4 minutes 30 seconds"

# key, status, arrived (how long ago), updated_at, (inserted, updated, unchanged, superseded)
LEDGER = [
    ("landing/a.csv", "loaded", "9 days", EARLIER_MERGE, (96, 0, 0, 0)),
    ("landing/b.csv", "loaded", "8 days", LAST_MERGE, (48, 40, 8, 0)),
    ("landing/c.zip", "partial", "8 days", LAST_MERGE, (10, 0, 0, 2)),
    ("landing/d.csv", "rejected", "8 days", LAST_MERGE, None),
    ("landing/e.csv", "duplicate", "8 days", LAST_MERGE, None),
    ("landing/e2.csv", "replaced", "8 days", LAST_MERGE, None),
    ("landing/f.csv", "staged", OLDEST_AGE, "2024-05-02 02:00+00", None),
    ("landing/g.csv", "validated", "1 hour", "2024-05-02 02:31+00", None),
    ("landing/h.csv", "registered", "5 minutes", "2024-05-02 02:41+00", None),
]


def build_ledger(conn: psycopg.Connection) -> datetime:
    """The rows above and a day of 48 readings; returns when the staged (oldest
    unprocessed) arrived."""
    for key, status, arrived, updated_at, counts in LEDGER:
        inserted, updated, unchanged, superseded = counts or (None, None, None, None)
        conn.execute(
            """
            INSERT INTO nem12.file_ledger (bucket, key, etag, status, first_seen, updated_at,
                inserted, updated, unchanged, superseded)
            VALUES ('nem12', %s, %s, %s, now() - %s::interval, %s, %s, %s, %s, %s)
            """,
            (key, key, status, arrived, updated_at, inserted, updated, unchanged, superseded),
        )
    conn.execute(
        """
        INSERT INTO nem12.meter_day (nmi, nmi_suffix, interval_date, interval_length, uom,
            interval_values, quality_method, file_id, total, actual_intervals,
            estimated_intervals, final_substituted_intervals, null_intervals,
            substituted_intervals, variable_intervals)
        SELECT 'NMI0000001', 'E1', '2024-05-01', 30, 'kWh', array_fill(1.5, ARRAY[48]), 'A', 2,
               72, 48, 0, 0, 0, 0, 0
        """
    )
    row = conn.execute(
        "SELECT first_seen FROM nem12.file_ledger WHERE key = 'landing/f.csv'"
    ).fetchone()
    assert row is not None
    return row[0]


def test_status_json_is_exact(conn, capsys):
    staged_since = build_ledger(conn)
    assert main(["status", "--dsn", conn.info.dsn, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    checked_at = datetime.fromisoformat(out.pop("checked_at"))
    age = out["oldest_unprocessed"].pop("age_seconds")
    assert age == int((checked_at - staged_since).total_seconds())
    assert 2 * 86400 + 3 * 3600 + 4 * 60 + 30 <= age < 2 * 86400 + 3 * 3600 + 5 * 60
    assert out == {
        "files_by_status": {
            "registered": 1,
            "validated": 1,
            "staged": 1,
            "loaded": 2,
            "partial": 1,
            "rejected": 1,
            "duplicate": 1,
            "replaced": 1,
        },
        "files": 9,
        "oldest_unprocessed": {
            "key": "landing/f.csv",
            "status": "staged",
            "first_seen": staged_since.astimezone(UTC).isoformat(),
        },
        "last_merge": {
            "at": "2024-05-02T03:00:00+00:00",
            "files": 2,
            "inserted": 58,
            "updated": 40,
            "unchanged": 8,
            "superseded": 2,
        },
        "readings": 48,
        "reads": 0,
    }


def test_status_table_is_exact(conn, capsys, monkeypatch):
    staged_since = build_ledger(conn)
    monkeypatch.setenv("NEM12_DSN", conn.info.dsn)  # the default when --dsn is not given
    assert main(["status"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == (
        "files by status\n"
        "  registered         1\n"
        "  validated          1\n"
        "  staged             1\n"
        "  loaded             2\n"
        "  partial            1\n"
        "  rejected           1\n"
        "  duplicate          1\n"
        "  replaced           1\n"
        "  total              9\n"
        f"oldest unprocessed  landing/f.csv (staged, first seen "
        f"{staged_since.astimezone(UTC).isoformat()}, 2d 3h 4m ago)\n"
        "last merge          2024-05-02T03:00:00+00:00: 2 files, 58 inserted, 40 updated, "
        "8 unchanged, 2 superseded\n"
        "readings            48\n"
        "NEM13 reads         0\n"
    )


def test_status_of_an_empty_ledger(conn, capsys):
    assert main(["status", "--dsn", conn.info.dsn, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["files"] == 0 and set(out["files_by_status"].values()) == {0}
    assert out["oldest_unprocessed"] is None and out["last_merge"] is None
    assert out["readings"] == 0
    assert main(["status", "--dsn", conn.info.dsn]) == 0
    text = capsys.readouterr().out
    assert "oldest unprocessed  none\n" in text and "last merge          none\n" in text


def _one_clear_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_unreachable_database_exits_2_with_one_line(capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dsn = f"host=127.0.0.1 port={port} dbname=nem12 user=nem12 password=hunter2-not-shown"
    assert main(["status", "--dsn", dsn]) == 2
    captured = capsys.readouterr()
    line = _one_clear_line(captured.err)
    assert line.startswith("nem12: cannot reach PostgreSQL: ")
    assert "hunter2-not-shown" not in line and captured.out == ""


def test_database_without_the_schema_exits_2_with_one_line(postgres, capsys):
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.psql(f"CREATE DATABASE {name};")
    try:
        assert main(["status", "--dsn", postgres.get_uri(name), "--json"]) == 2
        line = _one_clear_line(capsys.readouterr().err)
        assert line == ("nem12: no nem12.ledger_summary in this database (schema not applied)")
    finally:
        postgres.psql(f"DROP DATABASE {name} WITH (FORCE);")


def test_no_dsn_exits_2(monkeypatch, capsys):
    monkeypatch.delenv("NEM12_DSN", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_NEM12_POSTGRES", raising=False)
    assert main(["status"]) == 2
    assert _one_clear_line(capsys.readouterr().err) == (
        "nem12: status needs --dsn or NEM12_DSN (a PostgreSQL connection string)"
    )


def _dsn(environ: dict[str, str]) -> str | None:
    return Settings.from_env(environ).dsn or postgres_dsn_from_env(environ)


def test_dsn_falls_back_to_the_airflow_connection():
    conn = json.dumps(
        {"conn_type": "postgres", "host": "db", "port": 5432, "login": "nem12",
         "password": "s3cret", "schema": "meters"}
    )  # fmt: skip
    assert _dsn({"AIRFLOW_CONN_NEM12_POSTGRES": conn}) == (
        "host=db port=5432 dbname=meters user=nem12 password=s3cret"
    )
    uri = "postgres://nem12:s3cret@db:5432/meters"
    assert _dsn({"AIRFLOW_CONN_NEM12_POSTGRES": uri}) == uri
    assert _dsn({"NEM12_DSN": "dbname=x", "AIRFLOW_CONN_NEM12_POSTGRES": uri}) == ("dbname=x")
    assert _dsn({}) is None
