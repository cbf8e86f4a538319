"""NEM13 reads staged and merged on a real PostgreSQL: newest version of a stream's
period wins, whatever order the files come in, and no energy is counted twice."""

from __future__ import annotations

import itertools
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest

from nem12.warehouse.merge import merge_files
from tests.integration.test_load_and_merge import load

NEM = timezone(timedelta(hours=10))
HEADER = "100,NEM13,{header},MDPA,RETB"


def read(
    nmi: str = "QB00000001",
    suffix: str = "11",
    previous: tuple[str, str] = ("000100", "20240101093000"),
    current: tuple[str, str] = ("000250", "20240401101500"),
    quality: str = "A",
    quantity: str = "150",
    update: str = "20240402000000",
    reason: str = "",
) -> str:
    """One 250 record; the fields a test does not name are valid and fixed."""
    return (
        f"250,{nmi},11,1,{suffix},{suffix},M1,E,{previous[0]},{previous[1]},A,,,"
        f"{current[0]},{current[1]},{quality},{reason},,{quantity},kWh,20240701,{update},"
    )


def nem13(*reads: str, header: str = "202404020000", b2b: str | None = None) -> bytes:
    records = [HEADER.format(header=header)]
    for record in reads:
        records.append(record)
        if b2b:
            records.append(b2b)
    return ("\r\n".join([*records, "900"]) + "\r\n").encode()


def meter_reads(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT nmi, nmi_suffix, previous_register_read_text, current_register_read_text,"
        " previous_register_read_datetime, current_register_read_datetime,"
        " current_quality_method, quantity, file_id FROM nem12.meter_read"
        " ORDER BY nmi, nmi_suffix, current_register_read_datetime"
    ).fetchall()


def outcomes(counts) -> tuple[int, int, int, int]:
    return counts.inserted, counts.updated, counts.unchanged, counts.superseded


def at(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=NEM)


def test_a_nem13_file_is_staged_and_merged_with_exact_reads_as_written(conn):
    file_id = load(
        conn,
        "a.csv",
        nem13(read(), read(suffix="41", quantity="150.000"), b2b="550,N,,A,SO123"),
    )
    assert conn.execute("SELECT count(*) FROM nem12.read_staging").fetchone() == (2,)
    counts = merge_files(conn, [file_id])
    assert outcomes(counts) == (2, 0, 0, 0)
    assert meter_reads(conn) == [
        ("QB00000001", suffix, "000100", "000250", at("20240101093000"), at("20240401101500"),
         "A", Decimal(quantity), file_id)
        for suffix, quantity in (("11", "150"), ("41", "150.000"))
    ]  # fmt: skip
    row = conn.execute(
        "SELECT previous_register_read, current_register_read, current_trans_code,"
        " current_ret_service_order, next_scheduled_read_date, uom, direction_indicator"
        " FROM nem12.meter_read WHERE nmi_suffix = '11'"
    ).fetchone()
    assert row == (Decimal("100"), Decimal("250"), "A", "SO123", date(2024, 7, 1), "kWh", "E")
    assert conn.execute("SELECT count(*) FROM nem12.read_staging").fetchone() == (0,)
    assert conn.execute(
        "SELECT status, readings, inserted FROM nem12.file_ledger WHERE file_id = %s", (file_id,)
    ).fetchone() == ("loaded", 2, 2)


def test_an_actual_read_replaces_the_estimate_whose_period_it_overlaps(conn):
    estimate = read(
        current=("000300", "20240401000000"), quality="E64", quantity="200", update="20240301000000"
    )
    actual = read(current=("000250", "20240405101500"), quantity="150", update="20240406000000")
    first = load(conn, "estimate.csv", nem13(estimate, header="202403010000"))
    merge_files(conn, [first])
    second = load(conn, "actual.csv", nem13(actual, header="202404060000"))
    counts = merge_files(conn, [second])
    assert outcomes(counts) == (0, 1, 0, 0)
    assert meter_reads(conn) == [
        ("QB00000001", "11", "000100", "000250", at("20240101093000"), at("20240405101500"),
         "A", Decimal("150"), second)
    ]  # fmt: skip


def test_an_older_version_arriving_late_changes_nothing(conn):
    newer = load(conn, "newer.csv", nem13(read(quantity="151", update="20240410000000")))
    merge_files(conn, [newer])
    older = load(conn, "older.csv", nem13(read(quantity="150", update="20240402000000")))
    assert outcomes(merge_files(conn, [older])) == (0, 0, 0, 1)
    assert [r[-2:] for r in meter_reads(conn)] == [(Decimal("151"), newer)]


def test_the_same_read_again_is_unchanged_and_moves_the_version_forward(conn):
    first = load(conn, "first.csv", nem13(read()))
    merge_files(conn, [first])
    again = load(conn, "again.csv", nem13(read(update="20240403000000")))
    assert outcomes(merge_files(conn, [again])) == (0, 0, 1, 0)
    assert [r[-1] for r in meter_reads(conn)] == [again]


#: A stream's deliveries: an estimate, its actual at another datetime, the next
#: read, a correction of the actual, and a late older estimate for the next period.
DELIVERIES = {
    "estimate": read(current=("000300", "20240401000000"), quality="E64", quantity="200",
                     update="20240301000000"),
    "actual": read(current=("000250", "20240405101500"), quantity="150",
                   update="20240406000000"),
    "next": read(previous=("000250", "20240405101500"), current=("000400", "20240705090000"),
                 quantity="150", update="20240706000000"),
    "corrected": read(current=("000251", "20240405101500"), quantity="151",
                      update="20240410000000"),
    "late_estimate": read(previous=("000250", "20240405101500"),
                          current=("000390", "20240701000000"), quality="E64",
                          quantity="140", update="20240405120000"),
}  # fmt: skip
FINAL = [
    ("QB00000001", "11", "000100", "000251", at("20240101093000"), at("20240405101500"),
     "A", Decimal("151")),
    ("QB00000001", "11", "000250", "000400", at("20240405101500"), at("20240705090000"),
     "A", Decimal("150")),
]  # fmt: skip


@pytest.mark.parametrize(
    "order", list(itertools.permutations(DELIVERIES))[::11], ids=lambda o: ">".join(o)
)
def test_the_current_reads_do_not_depend_on_the_order_files_arrive_in(conn, order):
    for name in order:
        merge_files(conn, [load(conn, f"{name}.csv", nem13(DELIVERIES[name]))])
    assert [r[:-1] for r in meter_reads(conn)] == FINAL
    total = conn.execute("SELECT sum(quantity) FROM nem12.meter_read").fetchone()[0]
    assert total == Decimal("301")


def test_all_deliveries_in_one_merge_give_the_same_reads(conn):
    ids = [load(conn, f"{name}.csv", nem13(DELIVERIES[name])) for name in DELIVERIES]
    counts = merge_files(conn, ids)
    assert counts.readings == len(DELIVERIES)
    assert counts.superseded == 3
    assert [r[:-1] for r in meter_reads(conn)] == FINAL


def test_the_daily_view_spreads_a_quantity_over_the_days_of_its_period(conn):
    quarter = read(
        previous=("000100", "20240101120000"), current=("000196", "20240105120000"), quantity="96"
    )
    merge_files(conn, [load(conn, "q.csv", nem13(quarter))])
    days = conn.execute(
        "SELECT read_date, quantity FROM nem12.meter_read_daily ORDER BY read_date"
    ).fetchall()
    assert days == [
        (date(2024, 1, 1), Decimal("12")),
        (date(2024, 1, 2), Decimal("24")),
        (date(2024, 1, 3), Decimal("24")),
        (date(2024, 1, 4), Decimal("24")),
        (date(2024, 1, 5), Decimal("12")),
    ]


def test_a_rejected_read_is_not_staged_and_the_others_are(conn):
    bad = read(nmi="QB00000002", current=("000250", "20230101000000"))  # before its previous
    file_id = load(conn, "mixed.csv", nem13(read(), bad))
    counts = merge_files(conn, [file_id])
    assert outcomes(counts) == (1, 0, 0, 0)
    assert [r[0] for r in meter_reads(conn)] == ["QB00000001"]
    assert conn.execute(
        "SELECT status FROM nem12.file_ledger WHERE file_id = %s", (file_id,)
    ).fetchone() == ("partial",)
