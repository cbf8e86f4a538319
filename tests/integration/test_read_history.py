"""NEM13 version history on a real PostgreSQL: what ``meter_read`` held at any time.

Hypothesis draws versions of one stream's reads (periods, UpdateDateTime and
header DateTime varied, ties included) and delivers them in a random order, some
twice, merging after each delivery or in batches. As of the moment after each
merge, ``read_versions`` must return exactly what ``meter_read`` held then, and
nothing before the first merge; with no moment, every version, the current ones
being those ``meter_read`` holds now.
"""

from __future__ import annotations

import json
from datetime import date, datetime

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nem12.warehouse.history import read_versions
from nem12.warehouse.merge import merge_files
from tests.faults.test_nem13_reads import version_file, versions
from tests.integration.test_load_and_merge import load
from tests.integration.test_read_merge import nem13, read

NMI = "QB00000001"
PERIOD = (date(2023, 12, 1), date(2024, 2, 1))


def held_now(conn: psycopg.Connection) -> set[tuple]:
    """What ``meter_read`` holds: (suffix, period, quantity, file)."""
    rows = conn.execute(
        "SELECT nmi_suffix, previous_register_read_datetime, current_register_read_datetime,"
        " quantity, file_id FROM nem12.meter_read"
    ).fetchall()
    return set(rows)


def held(found) -> set[tuple]:
    return {
        (
            v.nmi_suffix,
            v.previous_register_read_datetime,
            v.current_register_read_datetime,
            v.quantity,
            v.file_id,
        )
        for v in found
    }


def now(conn: psycopg.Connection) -> datetime:
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=versions, data=st.data())
def test_as_of_each_merge_the_read_history_is_what_meter_read_held_then(conn, drawn, data):
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
    before_any = now(conn)
    moments, pending = [], []
    for arrival, index in enumerate(order):
        pending.append(load(conn, f"v{index}-{arrival}.csv", version_file(*drawn[index])))
        if len(pending) == batch or arrival == len(order) - 1:
            merge_files(conn, pending)
            pending = []
            moments.append((now(conn), held_now(conn)))
    assert read_versions(conn, NMI, *PERIOD, as_of=before_any) == []
    for moment, then in moments:
        assert held(read_versions(conn, NMI, *PERIOD, as_of=moment)) == then
    every = read_versions(conn, NMI, *PERIOD)
    assert len(every) == len(order)  # each delivery is a version, current or not
    assert held(v for v in every if v.current) == moments[-1][1]
    for v in every:
        assert (v.replaced_at is None) == (v.replaced_by is None)
        if v.replaced_by is not None:  # the replacing version is newer and overlaps it
            assert any(
                w.file_id == v.replaced_by
                and max(w.merged_at, v.merged_at) == v.replaced_at
                and w.previous_register_read_datetime < v.current_register_read_datetime
                and w.current_register_read_datetime > v.previous_register_read_datetime
                for w in every
            )


def test_an_estimate_replaced_by_its_actual_and_a_late_estimate_never_held(conn, capsys):
    from nem12.cli import main

    estimate = load(conn, "estimate.csv", nem13(read(quality="E64", quantity="140")))
    merge_files(conn, [estimate])
    between = now(conn)
    actual = load(
        conn,
        "actual.csv",
        nem13(read(quantity="150", update="20240403000000"), header="202404030000"),
    )
    merge_files(conn, [actual])
    late = load(
        conn,
        "late.csv",
        nem13(read(quality="E64", quantity="130", update="20240401000000"), header="202404010000"),
    )
    merge_files(conn, [late])
    every = read_versions(conn, NMI, date(2024, 3, 1), date(2024, 3, 2))
    assert [(v.file_id, v.current, v.ever_held, v.replaced_by) for v in every] == [
        (estimate, False, True, actual),
        (actual, True, True, None),
        (late, False, False, actual),
    ]
    assert read_versions(conn, NMI, date(2024, 4, 2), date(2024, 4, 3)) == []  # after the period
    [then] = read_versions(conn, NMI, date(2024, 1, 1), date(2024, 5, 1), as_of=between)
    assert (then.file_id, then.quantity) == (estimate, 140)

    args = ["history", "--dsn", conn.info.dsn, "--nmi", NMI, "--from", "2024-03-01"]
    args += ["--to", "2024-03-02", "--reads"]
    assert main([*args, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(v["file_id"], v["quantity"], v["replaced_by"]) for v in shown] == [
        (estimate, "140", actual),
        (actual, "150", None),
        (late, "130", actual),
    ]
    assert shown[0]["current_register_read_datetime"] == "2024-04-01T10:15:00+10:00"
    assert main([*args, "--as-of", between.isoformat()]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("nmi_suffix\tregister_id")
    assert f"\t{estimate}\t" in lines[1] and "\t140\t" in lines[1]
