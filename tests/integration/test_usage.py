"""Usage queries on a real PostgreSQL agree exactly with a plain model of the files.

Hypothesis delivers versions of the same days (corrections, late older
versions, V days with several quality classes, another interval length) in a
random order, then asks for usage grouped by interval, day, month or quality
class, filtered by suffix, quality and period; every figure and count must
equal the sum over the newest version of each day, computed from our parser's
readings in Python.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.format.parsing import parse_source
from nem12.warehouse.merge import merge_files
from nem12.warehouse.usage import GROUPS, UsageQuery, UsageRow, usage
from tests.integration.test_load_and_merge import load

SHAPE = GeneratorSpec(
    nmis=2,
    days=3,
    channels=("E1", "B1"),
    variable_day_share=0.5,
    day_qualities=("A", "E52", "S14", "F14", "N"),
)
T0 = datetime(2024, 3, 1, 9, 0)
START = SHAPE.start_date
NEM = timezone(timedelta(hours=10))


def version(n: int, update: int, header: int, length: int) -> GeneratorSpec:
    return GeneratorSpec(
        **{
            **SHAPE.__dict__,
            "seed": 10 * (n + 1),
            "interval_length": length,
            "update_datetime": T0 + timedelta(days=update),
            "header_datetime": T0 + timedelta(days=header, hours=1),
        }
    )


def model(delivered: list[tuple[GeneratorSpec, int]], query: UsageQuery) -> list[UsageRow]:
    """The newest version of each day (UpdateDateTime, header DateTime, arrival), its
    readings summed in Python as ``query`` groups and filters them."""
    newest: dict[tuple, tuple[tuple, list[dict]]] = {}
    for spec, arrival in delivered:
        for parse in parse_source(generate_bytes(spec)):
            for batch in parse.batches():
                for row in batch.with_columns(
                    day=batch.get_column("interval_start").dt.date()
                ).iter_rows(named=True):
                    key = (str(row["nmi"]), str(row["nmi_suffix"]), row["day"])
                    rank = (spec.update_datetime, spec.header_datetime, arrival)
                    if key not in newest or newest[key][0] < rank:
                        newest[key] = (rank, [])
                    if newest[key][0] == rank:
                        newest[key][1].append(row)
    sums: dict[tuple, list] = defaultdict(lambda: [Decimal(0), 0, 0, 0])
    for (nmi, suffix, day), (_, rows) in newest.items():
        if nmi not in query.nmis or not query.date_from <= day < query.date_to:
            continue
        if query.suffixes and suffix not in query.suffixes:
            continue
        for row in rows:
            flag = str(row["quality_method"])[0]
            if query.qualities and flag not in query.qualities:
                continue
            period = {
                "interval": row["interval_start"],
                "day": day,
                "month": day.replace(day=1),
                "quality": None,
            }[query.group_by]
            group = (
                nmi,
                suffix,
                str(row["uom"]),
                period,
                flag if query.group_by == "quality" else None,
            )
            figure = sums[group]
            figure[0] += row["value"]
            figure[1] += 1
            figure[2] += flag == "E"
            figure[3] += flag in ("S", "F")
    return [UsageRow(*group, *figure) for group, figure in sorted(sums.items(), key=_order)]


def _order(item) -> tuple:
    nmi, suffix, uom, period, quality = item[0]
    return nmi, suffix, uom, str(period), quality or ""


def stored(conn, query: UsageQuery) -> list[UsageRow]:
    rows = usage(conn, query)
    return [
        UsageRow(
            r.nmi,
            r.nmi_suffix,
            r.uom,
            r.period.astimezone(NEM) if isinstance(r.period, datetime) else r.period,
            r.quality_class,
            r.energy,
            r.intervals,
            r.estimated_intervals,
            r.substituted_intervals,
        )
        for r in sorted(
            rows, key=lambda r: _order(((r.nmi, r.nmi_suffix, r.uom, r.period, r.quality_class),))
        )
    ]


versions = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 2), st.sampled_from((15, 30))),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawn=versions, data=st.data())
def test_usage_equals_the_model_of_the_delivered_files(conn, drawn, data):
    conn.execute(
        "TRUNCATE nem12.meter_day, nem12.day_staging, nem12.finding, "
        "nem12.file_ledger RESTART IDENTITY CASCADE"
    )
    specs = [version(n, *v) for n, v in enumerate(drawn)]
    order = data.draw(st.permutations(range(len(specs))))
    delivered = []
    for index in order:
        file_id = load(conn, f"v{index}.csv", generate_bytes(specs[index]))
        merge_files(conn, [file_id])
        delivered.append((specs[index], file_id))
    nmis = (SHAPE.nmi(1), SHAPE.nmi(2))  # the generator numbers NMIs from 1
    first = data.draw(st.integers(0, 2))
    query = UsageQuery(
        nmis=data.draw(st.sampled_from([nmis, nmis[:1]])),
        date_from=START + timedelta(days=first),
        date_to=START + timedelta(days=data.draw(st.integers(first + 1, 3))),
        group_by=data.draw(st.sampled_from(GROUPS)),
        suffixes=data.draw(st.sampled_from([(), ("E1",), ("B1",)])),
        qualities=data.draw(st.sampled_from([(), ("A",), ("E", "S", "F")])),
    )
    expected = model(delivered, query)
    assert stored(conn, query) == expected
    assert expected or query.qualities  # every stream has days in any period asked


def test_a_day_of_one_stream_is_its_total_with_its_counts(conn):
    spec = GeneratorSpec(nmis=1, days=1, channels=("E1",), seed=3, variable_day_share=0.0)
    load_and_merge = load(conn, "one.csv", generate_bytes(spec))
    merge_files(conn, [load_and_merge])
    total = conn.execute("SELECT total FROM nem12.meter_day").fetchone()[0]
    [row] = usage(conn, UsageQuery((spec.nmi(1),), date(2024, 1, 1), date(2024, 1, 2)))
    assert (row.energy, row.intervals, row.period, row.quality_class) == (
        total,
        48,
        date(2024, 1, 1),
        None,
    )
    assert row.as_json()["energy"] == format(total.normalize(), "f")


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"nmis": ()}, "name at least one NMI"),
        ({"group_by": "week"}, "group by one of"),
        ({"date_to": date(2024, 1, 1)}, "the period is empty"),
        ({"qualities": ("X",)}, "quality flags are"),
    ],
)
def test_a_query_that_cannot_be_answered_says_why(bad, message):
    fields = {"nmis": ("Q1",), "date_from": date(2024, 1, 1), "date_to": date(2024, 1, 2)}
    with pytest.raises(ValueError, match=message):
        UsageQuery(**{**fields, **bad})


@pytest.fixture
def one_month(conn):
    """Two NMIs' January, one version, merged."""
    spec = GeneratorSpec(nmis=2, days=31, channels=("E1", "B1"), seed=4, variable_day_share=0.2)
    merge_files(conn, [load(conn, "jan.csv", generate_bytes(spec))])
    return spec


def test_nem12_usage_prints_the_figures_as_json_and_as_a_table(conn, one_month, capsys):
    from nem12.cli import main

    nmi = one_month.nmi(1)
    args = ["usage", "--dsn", conn.info.dsn, "--nmi", nmi, "--from", "2024-01-01"]
    args += ["--to", "2024-02-01", "--group-by", "month", "--suffix", "E1"]
    assert main([*args, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = usage(conn, UsageQuery((nmi,), date(2024, 1, 1), date(2024, 2, 1), "month", ("E1",)))
    assert printed == [row.as_json() for row in expected]
    assert printed[0]["period"] == "2024-01-01" and printed[0]["intervals"] == 31 * 48
    assert isinstance(printed[0]["energy"], str)
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split("\t")[:6] == [
        "nmi",
        "nmi_suffix",
        "uom",
        "period",
        "quality_class",
        "energy",
    ]
    assert lines[1].split("\t")[:6] == [nmi, "E1", "kWh", "2024-01-01", "", printed[0]["energy"]]


def test_nem12_usage_refuses_a_bad_query_in_one_line(conn, capsys):
    from nem12.cli import main

    args = ["usage", "--dsn", conn.info.dsn, "--nmi", "X", "--from", "2024-02-01"]
    assert main([*args, "--to", "2024-01-01"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "nem12: the period is empty: 2024-02-01 to 2024-01-01"
    ]


def test_the_review_app_answers_usage_as_json_behind_its_login(conn, one_month, tmp_path):
    from fastapi.testclient import TestClient

    from nem12.pipeline.review_web import create_app

    def connect():
        return psycopg.connect(conn.info.dsn, autocommit=True)

    nmi = one_month.nmi(2)
    params = {"nmi": nmi, "from": "2024-01-01", "to": "2024-01-03", "group_by": "quality"}
    client = TestClient(create_app(connect, str(tmp_path), auth=False, base=""))
    answer = client.get("/usage.json", params=params)
    assert answer.status_code == 200
    expected = usage(conn, UsageQuery((nmi,), date(2024, 1, 1), date(2024, 1, 3), "quality"))
    assert answer.json() == [row.as_json() for row in expected]
    assert {row["quality_class"] for row in answer.json()} <= set("AEFNSV")
    refused = client.get("/usage.json", params={**params, "group_by": "week"})
    assert refused.status_code == 400 and "group by one of" in refused.json()["detail"]
    guarded = TestClient(create_app(connect, str(tmp_path), auth=True, base=""))
    assert guarded.get("/usage.json", params=params).status_code == 401
