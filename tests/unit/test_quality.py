"""The GX record suite, run for real on an ephemeral context, agrees with the parser.

GX's import takes seconds, so the validations run once per module: one run of
a valid file, one run of many defective and real files together.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import polars as pl
import pytest

from nem12.devtools.generate import DEFECTS, GeneratorSpec, generate_bytes
from nem12.format import spec
from nem12.format.parsing import ParseConfig, parse_source
from nem12.format.rules import RULES
from nem12.pipeline.quality import (
    SUITES_DIR,
    RecordValidation,
    load_suite_files,
    records_expectation_rules,
    validate_records,
)
from nem12.pipeline.suites import EVERY_RULE, suites
from tests.conftest import AEMO, parse_all

KEEP = ParseConfig(keep_records=True)
COVERED = records_expectation_rules()
#: Rules the brief asks the suite to express, at least.
REQUIRED = {
    "record_type_unknown",
    "interval_length",
    "uom_invalid",
    "nmi_suffix_missing",
    "value_count",
    "interval_date",
    "quality_method",
}
#: Where the generator puts these defects (first 200 is line 2, its first 300 line 3).
DEFECT_LINES = {
    "interval_length": 2,
    "uom_invalid": 2,
    "nmi_suffix_missing": 2,
    "quality_method": 3,
    "interval_date": 3,
    "value_count": 3,
    "record_type_unknown": 4,
}
AEMO_INVALID = sorted(p for p in (AEMO / "invalid").iterdir() if p.is_file())
AEMO_EXAMPLES = sorted(p for p in (AEMO / "unzipped").iterdir() if p.is_file())


@dataclass
class Run:
    """One validate_records call and what the parser found in the same files."""

    validation: RecordValidation
    docs_dir: Path
    files: set[str]
    parser: set[tuple[str, int | None, str]]  # (file, line, rule) for the covered rules

    def failures_of(self, file: str) -> set[tuple[int | None, str]]:
        return {(f["line"], f["rule"]) for f in self.validation.failures if f["file"] == file}


def _records(sources: list[tuple[object, str | None]]) -> tuple[pl.DataFrame, set, set[str]]:
    frames, parser, files = [], set(), set()
    for source, name in sources:
        for report in parse_all(source, name=name, config=KEEP).results:
            assert report.file not in files, report.file  # (file, line) must be unique
            files.add(report.file)
            if report.records is not None:
                frames.append(report.records)
            parser |= {(f.file, f.line, f.rule) for f in report.findings if f.rule in COVERED}
    return pl.concat(frames), parser, files


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    records, parser, files = _records([(generate_bytes(GeneratorSpec(days=2)), "valid.csv")])
    docs = tmp_path_factory.mktemp("docs_valid")
    return Run(validate_records(records, "valid-run", docs), docs, files, parser)


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """Every generated defect, the AEMO invalid examples and real examples: one call."""
    sources: list[tuple[object, str | None]] = [
        (generate_bytes(GeneratorSpec(days=2, defects=(d,))), f"{d}.csv") for d in sorted(DEFECTS)
    ]
    sources += [(generate_bytes(GeneratorSpec(days=2, interval_length=5)), "valid_5min.csv")]
    sources += [(path, None) for path in AEMO_INVALID + AEMO_EXAMPLES]
    records, parser, files = _records(sources)
    docs = tmp_path_factory.mktemp("docs_mixed")
    return Run(validate_records(records, "scheduled__2026-11-22T13:00", docs), docs, files, parser)


# --- the suite as JSON (no GX import needed) ---------------------------------------


def test_suite_rules_are_catalogue_rules_with_their_severity():
    loaded = load_suite_files()
    assert loaded == suites()  # the pipeline runs the generated suites
    assert [s["name"] for s in loaded] == ["nem12_records"]
    assert REQUIRED <= COVERED
    for expectation in loaded[0]["expectations"]:
        if expectation["meta"]["rule"] == EVERY_RULE:  # every rule, via the parser's findings
            assert expectation["kwargs"] == {"column": "error_rules"}
            continue
        rule = RULES[expectation["meta"]["rule"]]
        assert expectation["description"].startswith(f"{rule.id}: ")
        assert expectation["severity"] == {"error": "critical", "warning": "warning"}[rule.severity]


def test_suite_sets_and_patterns_are_the_specification_facts_of_mdff():
    by_rule: dict[str, list[dict]] = {}
    for expectation in json.loads((SUITES_DIR / "nem12_records.json").read_text())["expectations"]:
        by_rule.setdefault(expectation["meta"]["rule"], []).append(expectation["kwargs"])

    def kwarg(rule: str, key: str) -> object:
        return next(k[key] for k in by_rule[rule] if key in k)

    assert kwarg("record_type_unknown", "value_set") == list(spec.ALL_RECORD_TYPES)
    assert kwarg("interval_length", "value_set") == list(spec.INTERVAL_LENGTHS)
    assert set(kwarg("uom_invalid", "value_set")) == set(spec.UNITS_OF_MEASURE.values())
    # the parser's pattern with a non-capturing group (pandas warns about capturing ones)
    assert spec.QUALITY_PATTERN == r"^[AEFNSV](\d\d)?$"
    assert kwarg("quality_method", "regex") == r"^[AEFNSV](?:\d\d)?$"


# --- (a) a valid file -------------------------------------------------------------


def test_a_valid_generated_file_passes_every_expectation(valid_run: Run):
    v = valid_run.validation
    assert v.success
    assert v.failures == []
    expectations = len(load_suite_files()[0]["expectations"])
    assert v.statistics["evaluated_expectations"] == expectations
    assert v.statistics["successful_expectations"] == expectations
    assert v.statistics["failed_records"] == 0


# --- (b) AEMO's invalid examples ------------------------------------------------


def test_aemo_wrong_value_count_is_reported_with_file_rule_and_line(mixed_run: Run):
    assert not mixed_run.validation.success
    failure = next(
        f
        for f in mixed_run.validation.failures
        if f["file"] == "Example_NEM12_15min_200_30min_300.csv"
    )
    assert failure["rule"] == "value_count"
    assert failure["line"] == 3
    assert failure["expectation"] == (
        "expect_column_pair_values_to_be_equal(value_count, expected_value_count)"
    )
    assert failure["message"] == (
        "number of interval values does not equal 1440 / IntervalLength "
        "(value_count=48, expected_value_count=96)"
    )


@pytest.mark.parametrize("path", AEMO_INVALID + AEMO_EXAMPLES, ids=lambda p: p.name)
def test_aemo_examples_fail_exactly_where_the_parser_finds_the_covered_rules(
    mixed_run: Run, path: Path
):
    files = {f for f in mixed_run.files if f.split("!")[0] == path.name}
    assert files
    for file in files:
        parser = {(line, rule) for f, line, rule in mixed_run.parser if f == file}
        assert mixed_run.failures_of(file) == parser, file


# --- (c) generated defects -------------------------------------------------------


@pytest.mark.parametrize("rule", sorted(DEFECT_LINES))
def test_a_generated_defect_fails_exactly_its_rule_at_its_line(mixed_run: Run, rule: str):
    assert mixed_run.failures_of(f"{rule}.csv") == {(DEFECT_LINES[rule], rule)}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_every_generated_defect_fails_as_the_parser_says_for_the_covered_rules(
    mixed_run: Run, defect: str
):
    """Covered rules fire where the parser finds them; other defects give no failure."""
    file = f"{defect}.csv"
    parser = {(line, rule) for f, line, rule in mixed_run.parser if f == file}
    assert mixed_run.failures_of(file) == parser
    if defect in COVERED:
        assert parser, defect


def test_failures_are_plain_records_a_reviewer_can_read(mixed_run: Run):
    for failure in mixed_run.validation.failures:
        assert set(failure) == {"file", "line", "rule", "expectation", "message"}
        assert isinstance(failure["file"], str) and failure["file"]
        assert isinstance(failure["line"], int)
        assert failure["message"].startswith(RULES[failure["rule"]].message)
        assert failure["expectation"].startswith("expect_")


# --- (d) the Data Docs report -------------------------------------------------------


def _text(path: Path) -> str:
    return re.sub(r"\s+", " ", path.read_text(encoding="utf-8"))


def test_data_docs_index_links_the_run_page_naming_files_rules_and_lines(mixed_run: Run):
    v = mixed_run.validation
    assert v.report_path == mixed_run.docs_dir.resolve() / "index.html"
    index = _text(v.report_path)
    assert "nem12_records" in index
    [page] = v.result_pages
    assert page.is_file() and page.is_relative_to(mixed_run.docs_dir.resolve())
    # the index links the run's page, the run name percent-encoded (":" -> "%3A")
    assert quote(page.relative_to(v.report_path.parent).as_posix()) in index
    html = _text(page)
    for rule in COVERED:
        assert f"{rule}: " in html, rule
    for file in ("Example_NEM12_15min_200_30min_300.csv", "interval_length.csv", "uom_invalid.csv"):
        assert file in html
    assert "scheduled__2026-11-22T13:00" in html
    assert (mixed_run.docs_dir / "expectations" / "nem12_records.html").is_file()


# --- (e) one call, many files -------------------------------------------------------


def test_one_call_reports_every_defective_file(mixed_run: Run):
    failing = {f["file"] for f in mixed_run.validation.failures}
    assert {f"{rule}.csv" for rule in DEFECT_LINES} <= failing
    assert {
        "Example_NEM12_15min_200_30min_300.csv",
        "Example_NEM12_30min_200_15min_300.csv",
        "Example_NEM12_incomplete_interval.csv",
    } <= failing
    assert "valid_5min.csv" not in failing
    assert len(mixed_run.validation.result_pages) == 1  # one validation for the whole run
    assert mixed_run.validation.statistics["failed_records"] == len(
        {(f["file"], f["line"]) for f in mixed_run.validation.failures}
    )


# --- a broken suite is an error, not a data failure ---------------------------------


def test_a_suite_naming_a_missing_column_raises(tmp_path: Path):
    suite = load_suite_files()[0]
    suite["expectations"] = [
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "no_such_column"},
            "meta": {"rule": "nmi_missing"},
        }
    ]
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "broken.json").write_text(json.dumps(suite))
    records, _, _ = _records([(generate_bytes(GeneratorSpec(days=1)), "one.csv")])
    expected = r'expect_column_values_to_not_be_null: .*"no_such_column"'
    with pytest.raises(RuntimeError, match=expected):
        validate_records(records, "broken", tmp_path / "docs", suites_dir=tmp_path / "suites")


def test_with_findings_the_report_lists_every_error_of_the_parser(tmp_path):
    """Rules the suite cannot express (a missing 900, a negative value) still appear."""
    from nem12.pipeline.quality import with_findings

    frames = []
    for defect in ("end_missing", "value_negative"):
        data = generate_bytes(GeneratorSpec(days=2, defects=(defect,)))
        for parse in parse_source(
            data, name=f"{defect}.csv", config=ParseConfig(keep_records=True)
        ):
            list(parse.batches())
            frames.append(with_findings(parse.result.records, parse.result.findings))
    result = validate_records(
        pl.concat(frames, how="diagonal_relaxed"), "findings", tmp_path / "docs"
    )
    listed = {(f["file"], f["line"], f["rule"]) for f in result.failures}
    assert ("end_missing.csv", 0, "end_missing") in listed
    assert ("value_negative.csv", 3, "value_negative") in listed
