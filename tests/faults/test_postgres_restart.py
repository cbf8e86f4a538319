"""Faults on the real PostgreSQL: the server restarts during a load and during a merge."""

from __future__ import annotations

import subprocess
import sys
import time

import psycopg
from pgserver._commands import pg_ctl

from nem12.database import stage_readings
from nem12.generate import GeneratorSpec, generate_bytes
from nem12.merge import merge_files
from nem12.parsing import parse_source
from tests.faults.test_kill_during_load_and_merge import SLOW_LOAD, wait_for
from tests.integration.test_load_and_merge import BASE, READINGS, load, table


def restart(postgres) -> None:
    """A fast restart: every session is cut, uncommitted work rolled back."""
    pg_ctl(["-m", "fast", "-w", "restart"], pgdata=postgres.pgdata, user=postgres.system_user)


def reconnect(dsn: str) -> psycopg.Connection:
    deadline = time.monotonic() + 30
    while True:
        try:
            return psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_restart_during_a_load_leaves_no_rows_and_a_rerun_is_exact(conn, postgres, tmp_path):
    data = generate_bytes(BASE)
    path = tmp_path / "slow.csv"
    path.write_bytes(data)
    dsn = conn.info.dsn
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_LOAD, dsn, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(child, "COPYING")
        restart(postgres)
    finally:
        child.kill()
        child.wait(timeout=30)
    with reconnect(dsn) as again:
        assert again.execute("SELECT count(*) FROM nem12.reading_staging").fetchone() == (0,)
        file_id = again.execute(
            "SELECT file_id FROM nem12.file_ledger WHERE key = 'slow.csv'"
        ).fetchone()[0]
        assert stage_readings(again, file_id, list(parse_source(data))) == READINGS
        merge_files(again, [file_id])
        assert len(table(again)) == READINGS


def test_restart_during_a_merge_changes_nothing_and_a_rerun_is_exact(conn, postgres):
    first = load(conn, "v1.csv", generate_bytes(BASE))
    merge_files(conn, [first])
    before = table(conn)
    newer = GeneratorSpec(
        **{**BASE.__dict__, "seed": 11, "update_datetime": BASE.update_datetime.replace(month=5)}
    )
    second = load(conn, "v2.csv", generate_bytes(newer))
    dsn = conn.info.dsn
    blocker = psycopg.connect(dsn)
    blocker.execute("SELECT 1 FROM nem12.meter_reading LIMIT 1 FOR UPDATE")
    code = (
        "import sys, psycopg\n"
        "from nem12.merge import merge_files\n"
        "with psycopg.connect(sys.argv[1], autocommit=True) as c:\n"
        "    merge_files(c, [int(sys.argv[2])])\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, dsn, str(second)], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE nem12.meter_reading%'"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the merge never reached its UPDATE"
            time.sleep(0.1)
        restart(postgres)
        assert child.wait(timeout=60) != 0  # its connection was cut
    finally:
        if child.poll() is None:
            child.kill()
        blocker.close()
    with reconnect(dsn) as again:
        assert table(again) == before
        counts = merge_files(again, [second])
        assert counts.updated + counts.unchanged == READINGS
        assert {v[2] for v in table(again).values()} == {second}
