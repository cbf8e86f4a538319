"""Faults on the real PostgreSQL: the server restarts during a load and during a merge."""

from __future__ import annotations

import time

import psycopg
import pytest
from pgserver._commands import pg_ctl

from nem12.devtools.generate import generate_bytes
from nem12.format.parsing import parse_source
from nem12.warehouse.merge import merge_files
from nem12.warehouse.staging import stage_days
from tests.conftest import postgres_server
from tests.faults.scenarios import blocked_merge, keys_of, slow_load
from tests.integration.test_load_and_merge import BASE, DAYS, READINGS, table


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    """A server of this module's own: the cases restart it."""
    with postgres_server(tmp_path_factory.mktemp("pgdata-restarted")) as server:
        yield server


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


def test_restart_during_a_load_leaves_no_rows_and_a_rerun_is_exact(
    conn, postgres, tmp_path, fault_tally
):
    data = generate_bytes(BASE)
    path = tmp_path / "slow.csv"
    path.write_bytes(data)
    child = slow_load(conn.info.dsn, path)
    try:
        restart(postgres)
    finally:
        child.kill()
        child.wait(timeout=30)
    with reconnect(conn.info.dsn) as again:
        assert again.execute("SELECT count(*) FROM nem12.day_staging").fetchone() == (0,)
        file_id = again.execute(
            "SELECT file_id FROM nem12.file_ledger WHERE key = 'slow.csv'"
        ).fetchone()[0]
        assert stage_days(again, file_id, list(parse_source(data, config=DAYS))) == READINGS
        merge_files(again, [file_id])
        assert len(table(again)) == READINGS
        figures = fault_tally.record("PostgreSQL restarted during a load", 1, keys_of(data), again)
        assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)


def test_restart_during_a_merge_changes_nothing_and_a_rerun_is_exact(conn, postgres, fault_tally):
    merge = blocked_merge(conn)
    try:
        restart(postgres)
        assert merge.child.wait(timeout=60) != 0  # its connection was cut
    finally:
        merge.release()
    with reconnect(conn.info.dsn) as again:
        assert table(again) == merge.before
        counts = merge_files(again, [merge.file_id])
        assert counts.updated + counts.unchanged == READINGS
        assert {v[2] for v in table(again).values()} == {merge.file_id}
        figures = fault_tally.record(
            "PostgreSQL restarted during a merge", 1, set(merge.before), again
        )
        assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)
