"""Each catalogue rule has its check (or is raised while reading), and checks run alone."""

from __future__ import annotations

from collections import Counter
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from nem12.format.parsing import Parse, ParseNotFinished, parse_source
from nem12.format.parsing.checks import (
    CHECKS,
    RAISED_BY_DRIVER,
    RAISED_BY_READING,
    file,
    header,
    interval_data,
    interval_event,
    nmi_details,
    values,
)
from nem12.format.parsing.checks.registry import FindingRow, check
from nem12.format.parsing.records import HeaderRecord
from nem12.format.rules import RULES
from tests.unit.test_parsing import nem12_text

CHECKED = {rule for _, rule in CHECKS}
COLUMNS = ["line", "block", "nmi", "record_type", "message"]


def test_every_rule_is_checked_once_or_raised_by_reading_or_the_driver():
    assert not RAISED_BY_READING & RAISED_BY_DRIVER
    assert not CHECKED & (RAISED_BY_READING | RAISED_BY_DRIVER)
    assert CHECKED | RAISED_BY_READING | RAISED_BY_DRIVER == set(RULES)


def test_the_rules_raised_elsewhere_are_named_where_they_are_raised():
    from nem12.format import reading
    from nem12.format.parsing import driver

    for module, rules in ((reading, RAISED_BY_READING), (driver, RAISED_BY_DRIVER)):
        source = Path(module.__file__).read_text()
        assert {rule for rule in rules if f'"{rule}"' not in source} == set(), module.__name__


def test_every_check_names_a_catalogue_rule_and_one_function_checks_a_rule():
    assert CHECKED <= set(RULES)
    functions = {(rule, run) for (_, rule), run in CHECKS.items()}
    by_rule = Counter(rule for rule, _ in functions)
    # record_fields: the 200, 300, 250 and 550 records have their own field counts;
    # a NEM13 250 has its own NMI, suffix, UOM and QualityMethod fields to check
    assert {rule: n for rule, n in by_rule.items() if n > 1} == {
        "record_fields": 4,
        "nmi_format": 2,
        "nmi_missing": 2,
        "nmi_suffix_missing": 2,
        "uom_invalid": 2,
        "quality_method": 2,
    }


def test_a_rule_gets_one_check_per_frame():
    with pytest.raises(ValueError, match="already has a check"):
        check("nmi_format", on="blocks")(nmi_details.nmi_format)


def rows_of(found: pl.LazyFrame) -> list[tuple]:
    return found.select(COLUMNS).collect().rows()


def test_a_file_check_reads_lines_with_the_first_900s_line():
    lines = pl.LazyFrame(
        {
            "line": [7, 8, 9],
            "raw": ["900", "", "300,20240101"],
            "record_type": ["900", "", "300"],
            "block": [2, 2, 2],
            "first_record_line": [1, 1, 1],
            "end_line": [4, 4, 4],
        }
    )
    line_rows = ["line", "record_type", "nmi", "message"]
    assert file.end_repeated(lines).select(line_rows).collect().rows() == [
        (7, "900", None, "another 900 record (the first is on line 4)")
    ]
    assert file.data_after_end(lines).select(line_rows).collect().rows() == [
        (9, "300", None, "record 300 after the 900 record on line 4")
    ]


def test_a_header_check_reads_the_first_record():
    first = HeaderRecord.of("NEM12#1#MDPA#RETB.csv", 1, "100", "100,NEM12,202401021, MDPA,RETB")
    assert header.header_datetime_invalid(first) == [
        FindingRow("header DateTime '202401021' is not YYYYMMDDHHMM", 1, "100")
    ]
    assert header.filename_participants(first) == []
    assert header.version_invalid(first) == []
    not_a_header = HeaderRecord.of("a.csv", 3, "200", "200,NMI")
    assert header.header_missing(not_a_header) == [
        FindingRow("the first record is '200', not a 100 header", 3, "200")
    ]


def test_an_nmi_details_check_reads_the_200_records():
    blocks = pl.LazyFrame(
        {
            "line": [2, 9],
            "block": [1, 2],
            "nmi": ["NEM1201009", "nem-1"],
            "field_count": [10, 10],
        }
    )
    assert rows_of(nmi_details.nmi_format(blocks)) == [
        (9, 2, "nem-1", "200", "NMI 'nem-1' is not 10 characters of A-Z (no I, O) and 0-9")
    ]


def test_an_interval_data_check_reads_the_300_records_with_dates_seen_earlier():
    days = pl.LazyFrame(
        {
            "line": [3, 4],
            "block": [1, 1],
            "nmi": ["NEM1201009"] * 2,
            "nmi_suffix": ["E1", "E1"],
            "interval_date": [date(2024, 1, 1), date(2024, 1, 1)],
            "seen_before": [False, True],
        }
    )
    assert rows_of(interval_data.interval_date_repeated(days)) == [
        (
            4,
            1,
            "NEM1201009",
            "300",
            "IntervalDate 20240101 of suffix E1 appears earlier in this file",
        )
    ]


def test_a_quality_flag_check_reads_300_and_400_records_alike():
    rows = pl.LazyFrame(
        {
            "line": [3, 5, 6],
            "block": [1, 1, 1],
            "nmi": ["NEM1201009"] * 3,
            "record_type": ["300", "400", "400"],
            "quality_method": ["S14", "F", "F"],
            "reason_code": ["", "76", "76"],
            "reason_description": ["", "", ""],
            "quality_checked": [True, True, False],
        }
    )
    assert rows_of(interval_data.reason_code_required(rows)) == [
        (3, 1, "NEM1201009", "300", "QualityMethod 'S14' needs a ReasonCode")
    ]
    assert rows_of(interval_data.quality_method_number(rows)) == [
        (5, 1, "NEM1201009", "400", "QualityMethod 'F' needs a two-digit method number")
    ]


def test_an_interval_event_check_reads_the_v_days_coverage():
    variable_days = pl.LazyFrame(
        {
            "line": [3, 8],
            "block": [1, 1],
            "nmi": ["NEM1201009"] * 2,
            "intervals": [48, 48],
            "covered": [None, 40],
            "range_invalid": [False, False],
        }
    )
    assert rows_of(interval_event.event_missing(variable_days)) == [
        (3, 1, "NEM1201009", "300", "QualityMethod V but no 400 records follow")
    ]


def test_a_values_check_reports_a_record_once_with_its_first_bad_value():
    bad = pl.LazyFrame(
        {
            "line_number": [3, 3, 4],
            "block": [1, 1, 1],
            "nmi": ["NEM1201009"] * 3,
            "idx": [4, 9, 0],
            "value_raw": ["-1", "-2.5", "x"],
        }
    )
    assert rows_of(values.value_negative(bad)) == [
        (
            3,
            1,
            "NEM1201009",
            "300",
            "interval 5 value '-1' is negative (2 such values in the record)",
        )
    ]
    assert rows_of(values.value_not_numeric(bad)) == [
        (
            4,
            1,
            "NEM1201009",
            "300",
            "interval 1 value 'x' is not a decimal number (1 such values in the record)",
        )
    ]


def broken(*_):
    raise ZeroDivisionError("a bug in a check")


def test_a_bug_in_a_check_propagates_instead_of_becoming_a_finding(monkeypatch):
    monkeypatch.setitem(CHECKS, ("blocks", "nmi_format"), broken)
    (parse,) = parse_source(nem12_text().encode(), name="small.csv")
    with pytest.raises(ZeroDivisionError, match="a bug in a check"):
        list(parse.batches())
    with pytest.raises(ParseNotFinished):
        _ = parse.result


def test_the_result_cannot_be_read_before_the_batches_are_exhausted():
    (parse,) = parse_source(nem12_text().encode(), name="small.csv")
    assert isinstance(parse, Parse)
    with pytest.raises(ParseNotFinished, match=r"small\.csv"):
        _ = parse.result
    batches = parse.batches()
    next(batches)
    with pytest.raises(ParseNotFinished):
        _ = parse.result
    list(batches)
    assert parse.result.status == "accepted"
