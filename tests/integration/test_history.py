"""Version history on a real PostgreSQL: what the table held for a day at any time.

Hypothesis delivers versions of the same days in a random order, one merge
each; as of the moment after each merge, the history must return exactly the
newest version (UpdateDateTime, header DateTime, arrival) of the files
delivered so far, and no version before a day's first merge.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.format.parsing import ParseConfig, parse_source
from nem12.warehouse.history import day_versions
from nem12.warehouse.merge import merge_files
from tests.integration.test_load_and_merge import load

SHAPE = GeneratorSpec(nmis=1, days=2, channels=("E1", "B1"), variable_day_share=0.0)
T0 = datetime(2024, 3, 1, 9, 0)
NMI = SHAPE.nmi(1)
PERIOD = (SHAPE.start_date, SHAPE.start_date + timedelta(days=2))


def version(n: int, update: int, header: int) -> GeneratorSpec:
    return GeneratorSpec(
        **{
            **SHAPE.__dict__,
            "seed": 10 * (n + 1),
            "update_datetime": T0 + timedelta(days=update),
            "header_datetime": T0 + timedelta(days=header, hours=1),
        }
    )


def days_of(spec: GeneratorSpec) -> dict[tuple[str, date], list]:
    """The day rows a file holds: (suffix, date) -> its values, exact."""
    days = {}
    for parse in parse_source(generate_bytes(spec), config=ParseConfig(per_day=True)):
        for batch in parse.batches():
            for row in batch.iter_rows(named=True):
                values = [v for v in row["values"].strip("{}").split(",")]
                days[(str(row["nmi_suffix"]), row["interval_date"])] = values
    return days


def trimmed(values: list[str]) -> list[str]:
    """Decimal text without trailing zeros, to compare as written with as stored."""
    return [v.rstrip("0").rstrip(".") if "." in v else v for v in values]


def held(versions) -> dict[tuple[str, date], tuple[int, list[str]]]:
    return {
        (v.nmi_suffix, v.interval_date): (v.file_id, [format(x, "f") for x in v.interval_values])
        for v in versions
    }


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    drawn=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=4),
    data=st.data(),
)
def test_as_of_each_merge_the_history_is_the_newest_version_delivered_so_far(conn, drawn, data):
    conn.execute(
        "TRUNCATE nem12.meter_day, nem12.meter_day_version, nem12.day_staging, nem12.finding, "
        "nem12.file_ledger RESTART IDENTITY CASCADE"
    )
    specs = [version(n, *v) for n, v in enumerate(drawn)]
    order = data.draw(st.lists(st.sampled_from(range(len(specs))), min_size=1, max_size=6))
    before_any = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    moments, delivered = [], []
    for arrival, index in enumerate(order):
        file_id = load(conn, f"v{index}-{arrival}.csv", generate_bytes(specs[index]))
        merge_files(conn, [file_id])
        delivered.append((specs[index], file_id))
        moments.append((conn.execute("SELECT clock_timestamp()").fetchone()[0], list(delivered)))
    assert day_versions(conn, NMI, *PERIOD, as_of=before_any) == []
    for moment, so_far in moments:
        spec, file_id = max(
            so_far, key=lambda d: (d[0].update_datetime, d[0].header_datetime, d[1])
        )
        expected = {key: (file_id, values) for key, values in days_of(spec).items()}
        got = held(day_versions(conn, NMI, *PERIOD, as_of=moment))
        assert {k: (f, trimmed(v)) for k, (f, v) in got.items()} == {
            k: (f, trimmed(v)) for k, (f, v) in expected.items()
        }
    every = day_versions(conn, NMI, *PERIOD)
    ranks = [(spec.update_datetime, spec.header_datetime, file_id) for spec, file_id in delivered]
    winners = sum(1 for n, rank in enumerate(ranks) if all(rank > r for r in ranks[:n]))
    assert len(every) == 4 * winners  # each winning merge replaced or added all 4 days
    assert sum(v.replaced_at is None for v in every) == 4


def test_replaced_versions_older_than_the_retention_go(conn):
    first = load(conn, "a.csv", generate_bytes(version(0, 0, 0)))
    merge_files(conn, [first])
    second = load(conn, "b.csv", generate_bytes(version(1, 1, 0)))
    merge_files(conn, [second])
    assert len(day_versions(conn, NMI, *PERIOD)) == 8
    conn.execute(
        "UPDATE nem12.meter_day_version SET replaced_at = replaced_at - interval '40 days'"
    )
    third = load(conn, "c.csv", generate_bytes(version(2, 2, 0)))
    merge_files(conn, [third], history_days=30)
    versions = day_versions(conn, NMI, *PERIOD)
    assert sorted((v.file_id, v.replaced_by) for v in versions) == sorted(
        [(second, third)] * 4 + [(third, None)] * 4
    )


def test_nem12_history_prints_the_versions_and_the_one_held_as_of_a_moment(conn, capsys):
    import json

    from nem12.cli import main

    first = load(conn, "a.csv", generate_bytes(version(0, 0, 0)))
    merge_files(conn, [first])
    between = conn.execute("SELECT clock_timestamp()").fetchone()[0]
    second = load(conn, "b.csv", generate_bytes(version(1, 1, 0)))
    merge_files(conn, [second])
    args = ["history", "--dsn", conn.info.dsn, "--nmi", NMI, "--from", "2024-01-01"]
    args += ["--to", "2024-01-02", "--suffix", "E1", "--json"]
    assert main(args) == 0
    every = json.loads(capsys.readouterr().out)
    assert [(v["file_id"], v["replaced_by"]) for v in every] == [(first, second), (second, None)]
    assert main([*args, "--as-of", between.isoformat()]) == 0
    [then] = json.loads(capsys.readouterr().out)
    assert then == every[0] and isinstance(then["total"], str)


def test_a_merge_that_waited_for_the_lock_is_dated_after_the_one_it_waited_for(conn):
    import threading

    import psycopg

    spec = GeneratorSpec(nmis=1, days=1, channels=("E1",), variable_day_share=0.0)
    waiting = load(conn, "waiting.csv", generate_bytes(spec))
    with psycopg.connect(conn.info.dsn) as holder:  # another merge, holding the table
        holder.execute("SELECT pg_advisory_xact_lock(hashtext('nem12 merge'))")

        def merge_waiting() -> None:
            with psycopg.connect(conn.info.dsn, autocommit=True) as other:
                merge_files(other, [waiting])

        merging = threading.Thread(target=merge_waiting)
        merging.start()
        merging.join(timeout=0.5)
        assert merging.is_alive()  # it waits for the lock
        released = holder.execute("SELECT clock_timestamp()").fetchone()[0]
        holder.commit()
    merging.join()
    [(merged_at, changed_at)] = conn.execute(
        "SELECT d.merged_at, c.changed_at FROM nem12.meter_day d "
        "JOIN nem12.day_change c USING (nmi, nmi_suffix, interval_date)"
    ).fetchall()
    assert merged_at == changed_at and merged_at > released
