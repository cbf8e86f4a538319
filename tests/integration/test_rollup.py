"""The daily rollup on a real PostgreSQL agrees exactly with a plain model of the files.

Hypothesis delivers versions of the same days (corrections, late older
versions, V days, another interval length) in a random order, merged in
random batches, with rollup refreshes after some merges only (downtime); after
a last refresh every rollup row must equal the newest version of its day as
our parser read it, summed in Python, and refreshing again must change nothing.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nem12.devtools.generate import generate_bytes
from nem12.format.parsing import parse_source
from nem12.warehouse import changes, rollup
from nem12.warehouse.merge import merge_files
from tests.integration.test_load_and_merge import load
from tests.integration.test_usage import SHAPE, START, version, versions

CLASS_COLUMNS = {
    "A": "actual_intervals",
    "E": "estimated_intervals",
    "F": "final_substituted_intervals",
    "S": "substituted_intervals",
    "V": "variable_intervals",
    "N": "missing_intervals",
}
COLUMNS = ("uom", "interval_length", "intervals", "total", *CLASS_COLUMNS.values(), "file_id")


def model(delivered: list[tuple]) -> dict[tuple, tuple]:
    """Each day's newest version (UpdateDateTime, header DateTime, arrival) as a rollup row."""
    newest: dict[tuple, tuple] = {}
    for spec, file_id in delivered:
        for parse in parse_source(generate_bytes(spec)):
            for batch in parse.batches():
                frame = batch.with_columns(day=batch.get_column("interval_start").dt.date())
                for row in frame.iter_rows(named=True):
                    key = (str(row["nmi"]), str(row["nmi_suffix"]), row["day"])
                    rank = (spec.update_datetime, spec.header_datetime, file_id)
                    if key not in newest or newest[key][0] < rank:
                        newest[key] = (rank, [])
                    if newest[key][0] == rank:
                        newest[key][1].append(row)
    rows = {}
    for key, ((_, _, file_id), readings) in newest.items():
        counts = dict.fromkeys(CLASS_COLUMNS.values(), 0)
        for reading in readings:
            counts[CLASS_COLUMNS[str(reading["quality_method"])[0]]] += 1
        length = readings[0]["interval_length"]
        total = sum((r["value"] for r in readings), Decimal(0))
        uom = str(readings[0]["uom"])
        rows[key] = (uom, length, 1440 // length, total, *counts.values(), file_id)
    return rows


def stored(conn) -> dict[tuple, tuple]:
    found = conn.execute(
        f"SELECT nmi, nmi_suffix, interval_date, {', '.join(COLUMNS)} FROM nem12.day_rollup"
    ).fetchall()
    return {tuple(r[:3]): tuple(r[3:]) for r in found}


def clear(conn) -> None:
    conn.execute(
        "TRUNCATE nem12.meter_day, nem12.meter_day_version, nem12.day_staging, nem12.finding, "
        "nem12.day_change, nem12.day_rollup, nem12.file_ledger RESTART IDENTITY CASCADE"
    )
    conn.execute("UPDATE nem12.change_cursor SET change_id = 0")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=versions, data=st.data())
def test_the_rollup_equals_the_model_of_the_delivered_files(conn, drawn, data):
    clear(conn)
    specs = [version(n, *v) for n, v in enumerate(drawn)]
    order = data.draw(st.permutations(range(len(specs))))
    delivered, waiting = [], []
    for index in order:
        file_id = load(conn, f"v{index}.csv", generate_bytes(specs[index]))
        delivered.append((specs[index], file_id))
        waiting.append(file_id)
        if data.draw(st.booleans(), label="merge now"):
            merge_files(conn, waiting)
            waiting = []
            if data.draw(st.booleans(), label="refresh now"):
                rollup.refresh(conn)
    if waiting:
        merge_files(conn, waiting)
    done = rollup.refresh(conn, batch_changes=data.draw(st.sampled_from([1, 5, 10_000])))
    assert stored(conn) == model(delivered)
    assert len(stored(conn)) == 2 * 2 * SHAPE.days  # two NMIs, E1 and B1
    assert done.removed == 0
    assert rollup.refresh(conn).changes == 0
    assert changes.pending(conn, rollup.CONSUMER) == 0


@pytest.fixture
def two_files(conn):
    """Two NMIs' three days merged and rolled up, then a correction of one day's version."""
    clear(conn)
    first = load(conn, "first.csv", generate_bytes(version(0, 0, 0, 30)))
    merge_files(conn, [first])
    rollup.refresh(conn)
    return first


def test_a_refresh_rewrites_exactly_the_days_the_merge_changed(conn, two_files):
    before = dict(
        conn.execute(
            "SELECT (nmi, nmi_suffix, interval_date)::text, refreshed_at FROM nem12.day_rollup"
        ).fetchall()
    )
    correction = version(1, 1, 1, 15)
    correction = type(correction)(
        **{**correction.__dict__, "nmis": 1, "days": 1, "channels": ("E1",)}
    )
    merge_files(conn, [load(conn, "correction.csv", generate_bytes(correction))])
    assert changes.pending(conn, rollup.CONSUMER) == 1
    done = rollup.refresh(conn)
    assert (done.changes, done.days, done.batches) == (1, 1, 1)
    after = dict(
        conn.execute(
            "SELECT (nmi, nmi_suffix, interval_date)::text, refreshed_at FROM nem12.day_rollup"
        ).fetchall()
    )
    changed = {key for key in after if after[key] != before[key]}
    assert changed == {f"({SHAPE.nmi(1)},E1,{START})"}
    row = conn.execute(
        "SELECT interval_length, intervals FROM nem12.day_rollup "
        "WHERE nmi = %s AND nmi_suffix = 'E1' AND interval_date = %s",
        (SHAPE.nmi(1), START),
    ).fetchone()
    assert row == (15, 96)


def test_an_older_version_arriving_late_changes_no_rollup_row(conn, two_files):
    late = version(2, -1, -1, 30)  # older UpdateDateTime and header than the first file
    merge_files(conn, [load(conn, "late.csv", generate_bytes(late))])
    assert changes.pending(conn, rollup.CONSUMER) == 0
    assert rollup.refresh(conn).changes == 0


def test_taken_changes_are_forgotten_once_every_consumer_took_them(conn, two_files):
    assert conn.execute("SELECT count(*) FROM nem12.day_change").fetchone() == (12,)
    with conn.transaction():
        assert changes.take_changes(conn, "alert") == 12
    rollup.refresh(conn)
    assert conn.execute("SELECT count(*) FROM nem12.day_change").fetchone() == (0,)


def test_an_upgraded_database_rolls_up_the_days_it_already_held(conn, two_files):
    from nem12.warehouse.schema import apply_schema

    conn.execute("TRUNCATE nem12.day_change, nem12.day_rollup")
    conn.execute("UPDATE nem12.change_cursor SET change_id = 0")
    conn.execute("DELETE FROM nem12.schema_version WHERE version >= 8")
    apply_schema(conn)
    # the history is rolled up; alerts start after it (none raised for the past)
    assert (changes.pending(conn, rollup.CONSUMER), changes.pending(conn, "alert")) == (12, 0)
    assert rollup.refresh(conn).days == 12
    assert START + timedelta(days=2) in {key[2] for key in stored(conn)}
