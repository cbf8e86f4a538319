"""Corrections as a property: any delivery order of any versions ends at the newest one.

Hypothesis draws versions of the same readings (UpdateDateTime and header
DateTime varied, ties included), delivers them in a random order, some twice,
merging after each delivery or in batches; the table must then equal the
newest-version model exactly: by (UpdateDateTime, header DateTime, arrival).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.format.parsing import parse_source
from nem12.warehouse.merge import merge_files
from tests.integration.test_load_and_merge import load, table

SHAPE = GeneratorSpec(nmis=1, days=2, channels=("E1", "B1"), variable_day_share=0.0)
T0 = datetime(2024, 3, 1, 9, 0)

versions = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 2)),  # (update offset, header offset) in days
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(versions=versions, data=st.data())
def test_table_equals_the_newest_version_model(conn, versions, data, fault_tally):
    conn.execute(
        "TRUNCATE nem12.meter_day, nem12.day_staging, nem12.finding, "
        "nem12.file_ledger RESTART IDENTITY CASCADE"
    )
    specs = [
        GeneratorSpec(
            **{
                **SHAPE.__dict__,
                "seed": 10 * (n + 1),
                "update_datetime": T0 + timedelta(days=u),
                "header_datetime": T0 + timedelta(days=h, hours=1),
            }
        )
        for n, (u, h) in enumerate(versions)
    ]
    order = data.draw(
        st.lists(
            st.sampled_from(range(len(specs))), min_size=len(specs), max_size=2 * len(specs)
        ).filter(lambda o: set(o) == set(range(len(specs))))
    )
    batch = data.draw(st.integers(1, 3))
    arrivals, pending = [], []
    for arrival, index in enumerate(order):
        file_id = load(conn, f"v{index}-{arrival}.csv", generate_bytes(specs[index]))
        arrivals.append((index, file_id))
        pending.append(file_id)
        if len(pending) == batch:
            merge_files(conn, pending)
            pending = []
    if pending:
        merge_files(conn, pending)

    newest = max(
        arrivals, key=lambda a: (specs[a[0]].update_datetime, specs[a[0]].header_datetime, a[1])
    )[0]
    expected = pl.concat(
        batch for parse in parse_source(generate_bytes(specs[newest])) for batch in parse.batches()
    )
    want = {
        (r["nmi"], r["nmi_suffix"], r["interval_start"]): r["value"]
        for r in expected.iter_rows(named=True)
    }
    got = {key: row[0] for key, row in table(conn).items()}
    assert got == want
    redelivered = len(order) - len(specs)  # deliveries of a version already delivered
    late = sum(  # versions arriving after a newer one
        1
        for i, (a, _) in enumerate(arrivals)
        if any(
            (specs[b].update_datetime, specs[b].header_datetime)
            > (specs[a].update_datetime, specs[a].header_datetime)
            for b, _ in arrivals[:i]
        )
    )
    figures = fault_tally.record(
        "corrections in random order, some twice", redelivered + late, set(want), conn
    )
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)
