"""NEM13 reads under faults and in any delivery order, on the real PostgreSQL.

Hypothesis draws versions of one stream's reads (periods, UpdateDateTime and
header DateTime varied, ties included), delivers them in a random order, some
twice, merging after each delivery or in batches: ``meter_read`` must equal
the model (a read is current when no newer version of its stream overlaps its
period), hold no two overlapping reads, and count each kWh once. A merge
killed mid-transaction changes nothing, and its rerun is exact.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nem12.warehouse.merge import merge_files
from tests.faults.scenarios import MERGE
from tests.integration.test_read_merge import load, meter_reads, nem13, read

READ_KEYS = "SELECT nmi, nmi_suffix, current_register_read_datetime FROM nem12.meter_read"
DAY0 = datetime(2024, 1, 1, 9, 30)
T0 = datetime(2024, 6, 1, 9, 0)


NEM = timezone(timedelta(hours=10))


def nem(at: datetime) -> datetime:
    """A stored timestamp as the file wrote it: NEM time, naive."""
    return at.astimezone(NEM).replace(tzinfo=None)


def stamp(at: datetime) -> str:
    return at.strftime("%Y%m%d%H%M%S")


#: One version of a read: its period in days from DAY0, its quantity, and
#: its UpdateDateTime and header DateTime offsets in days.
versions = st.lists(
    st.tuples(
        st.integers(0, 8), st.integers(1, 4), st.integers(1, 999), st.integers(0, 3),
        st.integers(0, 2),
    ),
    min_size=1,
    max_size=5,
)  # fmt: skip

OVERLAPPING = """
SELECT count(*) FROM nem12.meter_read a JOIN nem12.meter_read b
  ON a.nmi = b.nmi AND a.nmi_suffix = b.nmi_suffix
 AND a.current_register_read_datetime < b.current_register_read_datetime
 AND a.current_register_read_datetime > b.previous_register_read_datetime
"""


def version_file(start: int, days: int, quantity: int, update: int, header: int) -> bytes:
    previous, current = DAY0 + timedelta(days=start), DAY0 + timedelta(days=start + days)
    return nem13(
        read(
            previous=("000100", stamp(previous)),
            current=(f"{100 + quantity:06d}", stamp(current)),
            quantity=str(quantity),
            update=stamp(T0 + timedelta(days=update)),
        ),
        header=(T0 + timedelta(days=header, hours=1)).strftime("%Y%m%d%H%M"),
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=versions, data=st.data())
def test_meter_read_equals_the_newest_overlapping_version_model(conn, drawn, data, fault_tally):
    conn.execute(
        "TRUNCATE nem12.meter_read, nem12.read_version, nem12.read_staging, nem12.finding, "
        "nem12.file_ledger RESTART IDENTITY CASCADE"
    )
    order = data.draw(
        st.lists(
            st.sampled_from(range(len(drawn))), min_size=len(drawn), max_size=2 * len(drawn)
        ).filter(lambda o: set(o) == set(range(len(drawn))))
    )
    batch = data.draw(st.integers(1, 3))
    arrivals, pending = [], []
    for arrival, index in enumerate(order):
        file_id = load(conn, f"v{index}-{arrival}.csv", version_file(*drawn[index]))
        arrivals.append((index, file_id))
        pending.append(file_id)
        if len(pending) == batch:
            merge_files(conn, pending)
            pending = []
    if pending:
        merge_files(conn, pending)

    def rank(arrival: tuple[int, int]) -> tuple:
        index, file_id = arrival
        return drawn[index][3], drawn[index][4], file_id

    def overlap(a: int, b: int) -> bool:
        (sa, da, *_), (sb, db, *_) = drawn[a], drawn[b]
        return sa < sb + db and sa + da > sb

    current = {
        (drawn[i][0], drawn[i][1], drawn[i][2])
        for i, f in arrivals
        if not any(overlap(i, j) and rank((j, g)) > rank((i, f)) for j, g in arrivals)
    }
    got = {
        ((nem(prev) - DAY0).days, (cur - prev).days, int(quantity))
        for _, _, _, _, prev, cur, _, quantity, _ in meter_reads(conn)
    }
    assert got == current
    assert conn.execute(OVERLAPPING).fetchone() == (0,)
    expected_keys = {
        ("QB00000001", "11", (DAY0 + timedelta(days=start + days)).replace(tzinfo=NEM))
        for start, days, _ in current
    }
    late = sum(
        1
        for n, (a, f) in enumerate(arrivals)
        if any(overlap(a, b) and rank((b, g)) > rank((a, f)) for b, g in arrivals[:n])
    )
    stored = set(conn.execute(READ_KEYS).fetchall())
    figures = fault_tally.record(
        "NEM13 corrections in random order, some twice",
        len(order) - len(drawn) + late,
        expected_keys,
        conn,
        stored_keys=READ_KEYS,
    )
    assert stored == expected_keys
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)


def test_a_nem13_merge_killed_mid_transaction_changes_nothing_and_a_rerun_is_exact(
    conn, fault_tally
):
    merge_files(conn, [load(conn, "v1.csv", nem13(read(quantity="150")))])
    before = meter_reads(conn)
    actual = read(current=("000260", "20240406101500"), quantity="160", update="20240407000000")
    file_id = load(conn, "v2.csv", nem13(actual, header="202404070000"))
    blocker = psycopg.connect(conn.info.dsn)
    blocker.execute("SELECT 1 FROM nem12.meter_read FOR UPDATE")
    child = subprocess.Popen(
        [sys.executable, "-c", MERGE, conn.info.dsn, str(file_id)], stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while not conn.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND query LIKE '%DELETE FROM nem12.meter_read%'"
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the merge never reached its delete"
            time.sleep(0.1)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        blocker.close()
    time.sleep(0.5)  # the server notices the dead connection and rolls back
    assert meter_reads(conn) == before
    assert conn.execute(
        "SELECT count(*) FROM nem12.read_version WHERE file_id = %s", (file_id,)
    ).fetchone() == (0,)
    counts = merge_files(conn, [file_id])
    assert (counts.inserted, counts.updated, counts.unchanged, counts.superseded) == (0, 1, 0, 0)
    after = meter_reads(conn)
    assert [(r[3], r[7], r[8]) for r in after] == [("000260", 160, file_id)]
    figures = fault_tally.record(
        "NEM13 merge SIGKILLed mid-transaction",
        1,
        {(r[0], r[1], r[5]) for r in after},
        conn,
        stored_keys=READ_KEYS,
    )
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)
