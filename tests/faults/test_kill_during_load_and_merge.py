"""Faults on the real PostgreSQL: a load or a merge killed with SIGKILL mid-transaction.

Each case ends with the meter-reading table compared row for row with what it
must hold: nothing lost, nothing counted twice, nothing half-applied.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psycopg

from nem12.database import stage_readings
from nem12.generate import GeneratorSpec, generate_bytes
from nem12.merge import merge_files
from nem12.parsing import parse_source
from tests.integration.test_load_and_merge import BASE, READINGS, load, table

#: A child that stages a file's readings, pausing (and saying so) after the first batch.
SLOW_LOAD = textwrap.dedent(
    """
    import sys, time
    import psycopg
    from nem12.database import register_file, stage_readings
    from nem12.parsing import parse_source
    dsn, path = sys.argv[1], sys.argv[2]
    data = open(path, "rb").read()
    with psycopg.connect(dsn, autocommit=True) as conn:
        file_id = register_file(conn, "landing", "slow.csv", "slow.csv", len(data), None)

        class Slow:
            def __init__(self, parser):
                self.parser = parser
                self.report = None

            def batches(self):
                for n, batch in enumerate(self.parser.batches()):
                    yield batch
                    if n == 0:
                        print("COPYING", flush=True)
                        time.sleep(60)
                self.report = self.parser.report

        from nem12.parsing import ParseConfig
        from nem12.reading import ReadLimits
        config = ParseConfig(limits=ReadLimits(chunk_bytes=2000))
        stage_readings(conn, file_id, [Slow(p) for p in parse_source(data, config=config)])
    """
)


def wait_for(process: subprocess.Popen, word: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if word in line:
            return
        if process.poll() is not None:
            raise AssertionError(f"child ended early: {process.stderr.read()}")
    raise AssertionError(f"child never said {word}")


def test_load_killed_mid_copy_leaves_no_rows_and_a_rerun_is_exact(conn, postgres, tmp_path):
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
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    time.sleep(0.5)  # the server notices the dead connection and rolls back
    assert conn.execute("SELECT count(*) FROM nem12.reading_staging").fetchone() == (0,)
    file_id = conn.execute(
        "SELECT file_id FROM nem12.file_ledger WHERE key = 'slow.csv'"
    ).fetchone()[0]
    rows = stage_readings(conn, file_id, list(parse_source(data, name="slow.csv")))
    assert rows == READINGS
    merge_files(conn, [file_id])
    assert len(table(conn)) == READINGS


def test_merge_killed_mid_transaction_changes_nothing_and_a_rerun_is_exact(conn, tmp_path):
    first = load(conn, "v1.csv", generate_bytes(BASE))
    merge_files(conn, [first])
    before = table(conn)
    newer = GeneratorSpec(
        **{**BASE.__dict__, "seed": 11, "update_datetime": BASE.update_datetime.replace(month=5)}
    )
    second = load(conn, "v2.csv", generate_bytes(newer))
    dsn = conn.info.dsn
    with psycopg.connect(dsn) as blocker:
        # hold one stored row so the merge's UPDATE waits inside its transaction
        blocker.execute("SELECT 1 FROM nem12.meter_reading LIMIT 1 FOR UPDATE")
        code = (
            "import sys, psycopg\n"
            "from nem12.merge import merge_files\n"
            "with psycopg.connect(sys.argv[1], autocommit=True) as c:\n"
            "    merge_files(c, [int(sys.argv[2])])\n"
        )
        child = subprocess.Popen([sys.executable, "-c", code, dsn, str(second)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE '%UPDATE nem12.meter_reading%'"
            ).fetchone()[0]
            if waiting:
                break
            time.sleep(0.1)
        else:
            child.kill()
            raise AssertionError("the merge never reached its UPDATE")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        blocker.rollback()
    time.sleep(0.5)
    assert table(conn) == before
    assert conn.execute(
        "SELECT count(*) FROM nem12.reading_staging WHERE file_id = %s", (second,)
    ).fetchone() == (READINGS,)
    counts = merge_files(conn, [second])
    assert counts.updated + counts.unchanged == READINGS
    after = table(conn)
    assert set(after) == set(before)
    assert {v[2] for v in after.values()} == {second}
