"""Children caught in the middle of their work, for the fault cases to strike."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.warehouse.merge import merge_files
from tests.integration.test_load_and_merge import BASE, load, table

#: A child that stages a file's readings and pauses, saying so, after the first batch.
SLOW_LOAD = textwrap.dedent(
    """
    import sys, time
    import psycopg
    from nem12.warehouse.ledger import register_file
    from nem12.warehouse.staging import stage_days
    from nem12.format.parsing import ParseConfig, parse_source
    from nem12.format.reading import ReadLimits

    dsn, path = sys.argv[1], sys.argv[2]
    data = open(path, "rb").read()

    class Slow:
        def __init__(self, parse):
            self.parse = parse
            self.version = parse.version

        def batches(self):
            for n, batch in enumerate(self.parse.batches()):
                yield batch
                if n == 0:
                    print("COPYING", flush=True)
                    time.sleep(60)

        @property
        def result(self):
            return self.parse.result

    with psycopg.connect(dsn, autocommit=True) as conn:
        file_id = register_file(conn, "landing", "slow.csv", "slow.csv", len(data)).file_id
        config = ParseConfig(limits=ReadLimits(chunk_bytes=2000), per_day=True)
        stage_days(conn, file_id, [Slow(p) for p in parse_source(data, config=config)])
    """
)

MERGE = (
    "import sys, psycopg\n"
    "from nem12.warehouse.merge import merge_files\n"
    "with psycopg.connect(sys.argv[1], autocommit=True) as c:\n"
    "    merge_files(c, [int(sys.argv[2])])\n"
)


def slow_load(dsn: str, path: Path) -> subprocess.Popen:
    """A child in the middle of its COPY (the first batch sent, the rest pending)."""
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_LOAD, dsn, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "COPYING" in child.stdout.readline():
            return child
        if child.poll() is not None:
            raise AssertionError(f"the load ended early: {child.stderr.read()}")
    child.kill()
    raise AssertionError("the load never started its COPY")


def keys_of(data: bytes) -> set[tuple]:
    """The (nmi, nmi_suffix, interval_start) of every reading ``data`` holds."""
    from nem12.format.parsing import parse_source

    return {
        (r["nmi"], r["nmi_suffix"], r["interval_start"])
        for parse in parse_source(data)
        for batch in parse.batches()
        for r in batch.select("nmi", "nmi_suffix", "interval_start").iter_rows(named=True)
    }


@dataclass
class BlockedMerge:
    """A merge of a newer version, waiting on a row lock inside its transaction."""

    before: dict
    file_id: int
    child: subprocess.Popen
    blocker: psycopg.Connection

    def release(self) -> None:
        if self.child.poll() is None:
            self.child.kill()
        self.blocker.close()


def blocked_merge(conn: psycopg.Connection) -> BlockedMerge:
    merge_files(conn, [load(conn, "v1.csv", generate_bytes(BASE))])
    before = table(conn)
    newer = GeneratorSpec(
        **{**BASE.__dict__, "seed": 11, "update_datetime": BASE.update_datetime.replace(month=5)}
    )
    file_id = load(conn, "v2.csv", generate_bytes(newer))
    blocker = psycopg.connect(conn.info.dsn)
    blocker.execute("SELECT 1 FROM nem12.meter_day LIMIT 1 FOR UPDATE")
    child = subprocess.Popen(
        [sys.executable, "-c", MERGE, conn.info.dsn, str(file_id)], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while not conn.execute(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO nem12.meter_day%'"
    ).fetchone()[0]:
        if time.monotonic() > deadline:
            child.kill()
            raise AssertionError("the merge never reached its upsert")
        time.sleep(0.1)
    return BlockedMerge(before, file_id, child, blocker)
