"""Each structure rule fires on the defect it names, and only then."""

from __future__ import annotations

import pytest

from nem12.devtools.generate import DEFECTS, GeneratorSpec, generate_bytes
from nem12.format.rules import RULES, RuleBook
from tests.conftest import AEMO, NEM_READER_EXTRA, parse_all

ALL_DEFECTS = [*sorted(DEFECTS), "file_empty"]


def test_every_rule_has_a_known_severity_scope_and_message():
    for rule in RULES.values():
        assert rule.severity in ("error", "warning")
        assert rule.scope in ("file", "block")
        assert rule.message


def test_a_valid_generated_file_has_no_findings():
    parsed = parse_all(generate_bytes(GeneratorSpec(days=3, variable_day_share=0.5)))
    assert parsed.result.findings == []
    assert parsed.result.status == "accepted"


@pytest.mark.parametrize("defect", ALL_DEFECTS)
def test_each_generated_defect_triggers_exactly_its_rule(defect):
    parsed = parse_all(generate_bytes(GeneratorSpec(days=3, defects=(defect,))), name="g.csv")
    assert parsed.rules() == {defect}
    rule = RULES[defect]
    expected = {
        "warning": "accepted",
        "error": "rejected" if rule.scope == "file" else "partial",
    }[rule.severity]
    assert parsed.result.status == expected
    findings = [f for f in parsed.result.findings if f.rule == defect]
    assert all(f.file == "g.csv" and f.severity == rule.severity for f in findings)
    if defect not in ("file_empty", "end_missing"):
        assert all(f.line is not None for f in findings)


def test_block_error_keeps_the_other_blocks_readings():
    spec = GeneratorSpec(nmis=2, days=3, channels=("E1", "B1"), defects=("value_negative",))
    parsed = parse_all(generate_bytes(spec))
    assert parsed.result.status == "partial"
    assert parsed.result.rejected_blocks == 1
    assert parsed.readings.height == 3 * 3 * 48


EXPECTED_INVALID = {
    "Example_NEM12_15min_200_30min_300.csv": {"value_count"},
    "Example_NEM12_15min_200_30min_400.csv": {"event_coverage"},
    "Example_NEM12_30min_200_15min_300.csv": {"value_count"},
    "Example_NEM12_30min_200_15min_400.csv": {"value_count"},
    "Example_NEM12_empty.csv": {"header_only"},
    "Example_NEM12_incomplete_interval.csv": {"value_count"},
    "Example_NEM12_missing_header.csv": {"header_missing"},
    "Example_NEM12_powercor.csv": {
        "header_missing",
        "data_after_end",
        "end_repeated",
        "interval_date_repeated",
    },
    "Example_NEM12_powercor.csv.zip": {
        "header_missing",
        "data_after_end",
        "end_repeated",
        "interval_date_repeated",
    },
    "Example_NEM12_powercor_missing_fields.csv": {
        "header_missing",
        "data_after_end",
        "end_repeated",
        "interval_date_repeated",
    },
    "Example_empty_file.csv": {"file_empty"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_INVALID))
def test_each_invalid_aemo_example_is_reported_with_the_rule_for_its_defect(name):
    parsed = parse_all(AEMO / "invalid" / name, name=name)
    assert parsed.rules("error") == EXPECTED_INVALID[name]


def test_every_invalid_example_is_covered():
    assert {p.name for p in (AEMO / "invalid").iterdir()} == set(EXPECTED_INVALID)


#: nem-reader's text examples that are not valid NEM12 interval data
EXPECTED_EXTRA_REJECTED = {
    "Example-NEM12.csv": {"event_coverage", "end_missing"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_EXTRA_REJECTED))
def test_each_further_real_file_that_is_not_valid_nem12_is_reported_by_rule(name):
    parsed = parse_all(NEM_READER_EXTRA / name, name=name)
    assert parsed.result.status == "rejected"
    assert parsed.rules("error") == EXPECTED_EXTRA_REJECTED[name]


def test_unknown_rule_override_is_refused():
    with pytest.raises(ValueError, match="unknown rule"):
        RuleBook({"no_such_rule": "error"})
