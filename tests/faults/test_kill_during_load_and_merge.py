"""Faults on the real PostgreSQL: a load or a merge killed with SIGKILL mid-transaction.

Each case ends with the meter-reading table compared with what it must hold:
nothing lost, nothing counted twice, nothing half-applied.
"""

from __future__ import annotations

import os
import signal
import time

from nem12.devtools.generate import generate_bytes
from nem12.format.parsing import parse_source
from nem12.warehouse.merge import merge_files
from nem12.warehouse.staging import stage_days
from tests.faults.scenarios import blocked_merge, keys_of, slow_load
from tests.integration.test_load_and_merge import BASE, DAYS, DAYS_OF_BASE, READINGS, table


def test_load_killed_mid_copy_leaves_no_rows_and_a_rerun_is_exact(conn, tmp_path, fault_tally):
    data = generate_bytes(BASE)
    path = tmp_path / "slow.csv"
    path.write_bytes(data)
    child = slow_load(conn.info.dsn, path)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    time.sleep(0.5)  # the server notices the dead connection and rolls back
    assert conn.execute("SELECT count(*) FROM nem12.day_staging").fetchone() == (0,)
    file_id = conn.execute(
        "SELECT file_id FROM nem12.file_ledger WHERE key = 'slow.csv'"
    ).fetchone()[0]
    assert stage_days(conn, file_id, list(parse_source(data, config=DAYS))) == READINGS
    merge_files(conn, [file_id])
    assert len(table(conn)) == READINGS
    figures = fault_tally.record("load SIGKILLed mid-COPY", 1, keys_of(data), conn)
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)


def test_merge_killed_mid_transaction_changes_nothing_and_a_rerun_is_exact(conn, fault_tally):
    merge = blocked_merge(conn)
    try:
        os.kill(merge.child.pid, signal.SIGKILL)
        merge.child.wait(timeout=30)
    finally:
        merge.release()
    time.sleep(0.5)
    assert table(conn) == merge.before
    staged = conn.execute(
        "SELECT count(*) FROM nem12.day_staging WHERE file_id = %s", (merge.file_id,)
    ).fetchone()
    assert staged == (DAYS_OF_BASE,)
    counts = merge_files(conn, [merge.file_id])
    assert counts.updated + counts.unchanged == READINGS
    after = table(conn)
    assert set(after) == set(merge.before)
    assert {v[2] for v in after.values()} == {merge.file_id}
    figures = fault_tally.record("merge SIGKILLed mid-transaction", 1, set(merge.before), conn)
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)
