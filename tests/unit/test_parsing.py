"""Exact readings from small hand-written files, and the quirks of real files."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from itertools import pairwise

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nem12.format.parsing import ParseConfig
from nem12.format.parsing.state import DaysSeen
from nem12.format.reading import ReadLimits
from tests.conftest import parse_all

NEM = timezone(timedelta(hours=10))
DAY1 = ["0.5", ".048", "1", "12.25"] + ["0"] * 44
DAY2 = [f"{i}.1" for i in range(1, 49)]
Q1 = ["2.000"] * 48


def nem12_text(*, day1: list[str] = DAY1, eol: str = "\n") -> str:
    lines = [
        "100,NEM12,202401020304,MDPA,RETB",
        "200,NEM1201009,E1Q1,1,E1,N1,METSER123,kWh,30,20240301",
        f"300,20240101,{','.join(day1)},A,,,20240102030405,20240102040506",
        f"300,20240102,{','.join(DAY2)},V,,,20240102030405,",
        "400,1,10,A,,",
        "400,11,48,S14,76,",
        "500,O,S01,20240102000000,123.4",
        "200,NEM1201009,E1Q1,2,Q1,,METSER123,KVARH,30,",
        f"300,20240101,{','.join(Q1)},F14,76,,20240102030405,",
        "900",
    ]
    return eol.join(lines) + eol


def test_one_row_per_interval_with_exact_values_and_nem_time():
    parsed = parse_all(nem12_text().encode(), name="small.csv")
    assert parsed.result.status == "accepted"
    assert parsed.result.findings == []
    readings = parsed.readings
    assert readings.height == 3 * 48
    e1 = readings.filter(pl.col("nmi_suffix") == "E1").sort("interval_start")
    first = e1.row(0, named=True)
    assert first == {
        "nmi": "NEM1201009",
        "nmi_suffix": "E1",
        "register_id": "1",
        "meter_serial_number": "METSER123",
        "uom": "kWh",
        "interval_length": 30,
        "interval_start": datetime(2024, 1, 1, 0, 0, tzinfo=NEM),
        "value": Decimal("0.5"),
        "quality_method": "A",
        "reason_code": None,
        "reason_description": None,
        "update_datetime": datetime(2024, 1, 2, 3, 4, 5, tzinfo=NEM),
        "msats_load_datetime": datetime(2024, 1, 2, 4, 5, 6, tzinfo=NEM),
        "line_number": 3,
    }
    assert e1.get_column("value").head(4).to_list() == [
        Decimal("0.5"),
        Decimal("0.048"),
        Decimal("1"),
        Decimal("12.25"),
    ]
    assert e1.get_column("interval_start").item(47) == datetime(2024, 1, 1, 23, 30, tzinfo=NEM)
    assert e1.get_column("interval_start").item(48) == datetime(2024, 1, 2, 0, 0, tzinfo=NEM)


def test_variable_day_takes_each_interval_quality_from_its_400_range():
    readings = parse_all(nem12_text().encode()).readings
    day2 = readings.filter(
        pl.col("nmi_suffix") == "E1",
        pl.col("interval_start").dt.date() == datetime(2024, 1, 2).date(),
    ).sort("interval_start")
    assert day2.get_column("quality_method").to_list() == ["A"] * 10 + ["S14"] * 38
    assert day2.get_column("reason_code").to_list() == [None] * 10 + ["76"] * 38
    assert day2.get_column("line_number").unique().to_list() == [4]
    assert day2.get_column("msats_load_datetime").null_count() == 48


def test_units_are_normalised_and_empty_fields_are_null():
    readings = parse_all(nem12_text().encode()).readings
    q1 = readings.filter(pl.col("nmi_suffix") == "Q1")
    assert q1.get_column("uom").unique().to_list() == ["kVArh"]
    assert q1.get_column("quality_method").unique().to_list() == ["F14"]
    assert q1.get_column("value").unique().to_list() == [Decimal("2")]


def test_header_and_b2b_details_are_kept():
    report = parse_all(nem12_text().encode()).result
    assert report.header.version == "NEM12"
    assert report.header.datetime == datetime(2024, 1, 2, 3, 4)
    assert (report.header.from_participant, report.header.to_participant) == ("MDPA", "RETB")
    assert report.b2b == [
        {
            "line": 7,
            "trans_code": "O",
            "ret_service_order": "S01",
            "read_datetime": "20240102000000",
            "index_read": "123.4",
            "nmi": "NEM1201009",
            "nmi_suffix": "E1",
        }
    ]


def _quirky(text: str) -> bytes:
    lines = text.split("\n")
    lines[1] = lines[1].replace("kWh", "kwh") + ",,,,"
    lines[2] = lines[2].replace("300,20240101,", "300, 20240101 ,")
    return "\n".join(lines).encode()


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda t: b"\xef\xbb\xbf" + t.encode(), id="utf8-bom"),
        pytest.param(lambda t: t.replace("\n", "\r\n").encode(), id="crlf"),
        pytest.param(lambda t: t.rstrip("\n").encode(), id="no-final-newline"),
        pytest.param(_quirky, id="padding-commas-lowercase-unit-stray-spaces"),
    ],
)
def test_quirks_of_real_files_give_the_same_readings(variant):
    clean = parse_all(nem12_text().encode()).readings
    parsed = parse_all(variant(nem12_text()))
    assert parsed.result.status == "accepted"
    assert parsed.rules("error") == set()
    assert parsed.readings.equals(clean)


def test_padding_commas_after_a_300_record_are_ignored_but_a_stray_field_is_reported():
    last_field = ",20240102040506\n"  # MSATSLoadDateTime closes line 3
    padded = nem12_text().replace(last_field, ",20240102040506,,,,\n", 1)
    assert parse_all(padded.encode()).readings.equals(parse_all(nem12_text().encode()).readings)
    stray = parse_all(nem12_text().replace(last_field, ",20240102040506,,X,\n", 1).encode())
    assert stray.result.status == "partial"
    assert [(f.rule, f.line, f.message) for f in stray.result.findings] == [
        ("record_fields", 3, "300 record has 57 fields; IntervalLength 30 allows at most 55")
    ]


def test_blank_first_line_is_skipped_with_a_warning():
    clean = parse_all(nem12_text().encode()).readings
    parsed = parse_all(("\r\n" + nem12_text(eol="\r\n")).encode())
    assert parsed.result.status == "accepted"
    assert parsed.rules() == {"blank_line"}
    shifted = clean.with_columns(pl.col("line_number") + 1)
    assert parsed.readings.equals(shifted)


def test_small_chunks_give_the_same_readings_as_one_chunk():
    text = nem12_text().encode() * 1
    tiny = ParseConfig(limits=ReadLimits(chunk_bytes=300))
    assert parse_all(text, config=tiny).readings.equals(parse_all(text).readings)


def test_a_block_with_an_error_is_dropped_and_the_others_kept():
    bad_day = ["1"] * 47 + ["-3"]
    parsed = parse_all(nem12_text(day1=bad_day).encode(), name="f.csv")
    assert parsed.result.status == "partial"
    assert [f.as_line() for f in parsed.result.errors] == [
        "f.csv:3: error value_negative: interval 48 value '-3' is negative "
        "(1 such values in the record) [NMI NEM1201009]"
    ]
    assert parsed.readings.get_column("nmi_suffix").unique().to_list() == ["Q1"]


def test_reject_whole_file_on_block_error_when_configured():
    bad_day = ["1"] * 47 + ["x"]
    strict = ParseConfig(reject_file_on_block_error=True)
    parsed = parse_all(nem12_text(day1=bad_day).encode(), config=strict)
    assert parsed.result.status == "rejected"
    assert parsed.readings.height == 0


def test_severity_override_turns_a_warning_into_an_error():
    text = nem12_text().replace("NEM1201009", "NMI1").encode()
    assert parse_all(text).result.status == "accepted"
    strict = ParseConfig(severity={"nmi_format": "error"})
    assert parse_all(text, config=strict).result.status == "rejected"


def test_values_with_more_digits_than_exact_decimal_holds_are_errors_not_rounded():
    long_value = ["1.123456789012345"] + ["0"] * 47
    parsed = parse_all(nem12_text(day1=long_value).encode())
    assert "value_not_numeric" in parsed.rules("error")
    assert parsed.readings.filter(pl.col("nmi_suffix") == "E1").height == 0


@pytest.mark.parametrize(
    "value",
    ["1e3", "1E3", "+1", "1.5e-3", "\u0661", "1..2", ".", "0000000000000000000000001"],
)
def test_values_a_decimal_cast_would_take_or_drop_are_not_numeric(value):
    parsed = parse_all(nem12_text(day1=["1"] * 47 + [value]).encode())
    assert "value_not_numeric" in parsed.rules("error")
    assert parsed.readings.filter(pl.col("nmi_suffix") == "E1").height == 0


def test_plain_values_of_every_length_are_read_exactly():
    day1 = ["1.", ".5", "0", "12345678901234", "1.12345678901234", "0.00000000000001"] + ["7"] * 42
    parsed = parse_all(nem12_text(day1=day1).encode())
    assert parsed.result.status == "accepted"
    values = parsed.readings.filter(pl.col("nmi_suffix") == "E1").get_column("value")
    assert [str(v.normalize()) for v in values.head(6)] == [
        "1",
        "0.5",
        "0",
        "12345678901234",
        "1.12345678901234",
        "1E-14",
    ]


def test_twelve_digit_update_datetime_is_read_with_a_warning():
    text = nem12_text().replace("20240102030405", "202401020304").encode()
    parsed = parse_all(text)
    assert parsed.rules() == {"update_datetime_nonstandard"}
    assert parsed.readings.get_column("update_datetime").unique().to_list() == [
        datetime(2024, 1, 2, 3, 4, tzinfo=NEM)
    ]


def test_per_record_frame_holds_key_fields_and_value_counts():
    config = ParseConfig(keep_records=True)
    report = parse_all(nem12_text(day1=["1"] * 47).encode(), name="r.csv", config=config).result
    records = report.records
    assert records is not None
    assert records.get_column("record_type").to_list() == [
        "100",
        "200",
        "300",
        "300",
        "400",
        "400",
        "500",
        "200",
        "300",
        "900",
    ]
    day1 = records.row(2, named=True)
    assert (day1["file"], day1["line"], day1["nmi"], day1["nmi_suffix"]) == (
        "r.csv",
        3,
        "NEM1201009",
        "E1",
    )
    assert (day1["value_count"], day1["expected_value_count"]) == (47, 48)
    assert records.row(3, named=True)["value_count"] == 48


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from([("NMI0000001", "E1"), ("NMI0000001", "B1"), ("NMI0000002", None)]),
            st.integers(19_000, 19_040),
        ),
        max_size=60,
    ),
    cuts=st.lists(st.integers(0, 60), max_size=4),
)
def test_days_seen_by_chunk_agrees_with_date_by_date(rows, cuts):
    """Runs of consecutive dates take a shortcut; any order, repeat or gap must
    still flag exactly the rows a date-by-date check flags."""
    one_by_one = DaysSeen()
    expected = [one_by_one.add(stream, day) for stream, day in rows]
    by_chunk = DaysSeen()
    got: list[bool] = []
    bounds = sorted({0, len(rows), *(c for c in cuts if c < len(rows))})
    for start, end in pairwise(bounds):
        chunk = rows[start:end]
        keys = pl.DataFrame(
            {
                "nmi": [stream[0] for stream, _ in chunk],
                "nmi_suffix": [stream[1] for stream, _ in chunk],
                "interval_date": [date.fromordinal(719_163 + day) for _, day in chunk],
            },
            schema={"nmi": pl.String, "nmi_suffix": pl.String, "interval_date": pl.Date},
        )
        got += by_chunk.add_frame(keys).to_list()
    assert got == expected


def test_dates_out_of_order_in_a_stream_are_a_warning_and_all_readings_kept():
    values = ",".join(DAY2)
    days = [f"300,202401{d:02},{values},A,,,20240104030405," for d in (3, 2, 1)]
    header, stream = "100,NEM12,202401020304,MDPA,RETB", "200,NEM1201009,E1,1,E1,N1,M1,kWh,30,"
    text = "\n".join([header, stream, *days, "900"])
    parsed = parse_all(text.encode(), name="order.csv")
    assert parsed.result.status == "accepted"
    assert [f.as_line() for f in parsed.result.findings] == [
        f"order.csv:{line}: warning interval_date_order: IntervalDate 202401{day:02} comes after "
        "a later date of the same stream [NMI NEM1201009]"
        for line, day in ((4, 2), (5, 1))
    ]
    assert parsed.readings.height == 3 * 48
