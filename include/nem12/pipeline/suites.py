"""The Great Expectations suites, built from the rule catalogue and the MDFF facts.

Each rule is defined once: its id, severity and message in ``nem12.format.rules``,
the value sets and patterns it checks in ``nem12.format.spec``. This module turns
them into GX 1.x suite dicts; the JSON in ``great_expectations/expectations/``
(what GX users and Data Docs read) is written from here by
``python -m nem12.pipeline.suites`` (``make suites``), and a unit test fails when
the committed files differ. No GX import: the suites are plain JSON dicts.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from collections.abc import Iterable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from nem12.format import spec
from nem12.format.rules import RULES
from nem12.pipeline.settings import CHECKOUT_SUITES_DIR

#: ``meta.rule`` of the expectation on the parser's findings (``error_rules``): every rule.
EVERY_RULE = "*"

#: GX failure severity of a catalogue severity.
GX_SEVERITY = {"error": "critical", "warning": "warning"}

#: The flags of a QualityMethod (A, E, F, N, S, V): the methods without a number.
QUALITY_FLAGS = tuple(method for method in spec.QUALITY_METHODS if len(method) == 1)

Condition = dict[str, Any]
Expectation = dict[str, Any]
Suite = dict[str, Any]


# --- row conditions, as GX 1.x condition objects (string conditions are deprecated) ---


def _compare(column: str, operator: str, parameter: object) -> Condition:
    return {
        "type": "comparison",
        "column": {"name": column},
        "operator": operator,
        "parameter": parameter,
    }


def _not_null(column: str) -> Condition:
    return {"type": "nullity", "column": {"name": column}, "is_null": False}


def _all(*conditions: Condition) -> Condition:
    return {"type": "and", "conditions": list(conditions)}


# --- the words and patterns of an expectation --------------------------------------


def spoken(values: Iterable[object]) -> str:
    """Values as a sentence lists them: ``5, 15 or 30``."""
    *rest, last = (str(value) for value in values)
    return f"{', '.join(rest)} or {last}" if rest else last


def non_capturing(pattern: str) -> str:
    """``pattern`` with its groups made non-capturing.

    GX matches a regex with pandas ``str.contains``, which warns about capturing groups.
    """
    return re.sub(r"(?<!\\)\((?!\?)", "(?:", pattern)


def _expect(rule: str, expectation_type: str, says: str, **kwargs: Any) -> Expectation:
    """One expectation of ``rule``; its description is the rule id, then what it checks."""
    severity = "error" if rule == EVERY_RULE else RULES[rule].severity  # *: error findings
    return {
        "type": expectation_type,
        "kwargs": copy.deepcopy(kwargs),  # expectations share no dicts: GX may change them
        "meta": {"rule": rule},
        "description": f"{rule}: {says}",
        "severity": GX_SEVERITY[severity],
    }


# --- the suites ----------------------------------------------------------------------


def records_suite() -> Suite:
    """``nem12_records``: the structure rules over the parser's per-record frame.

    The row conditions are the parser's own, so a validation fails at exactly
    the files, lines and rules where the parser finds these rules.
    """
    nmi_details = _compare("record_type", "==", "200")
    complete_nmi_details = _all(
        nmi_details, _compare("field_count", ">=", spec.NMI_DETAILS_MIN_FIELDS)
    )
    interval_data = _compare("record_type", "==", "300")
    # a QualityMethod is only where the spec puts it when the value count is right
    quality_method_in_place = _all(
        interval_data,
        _not_null("expected_value_count"),
        _compare("value_count_mismatch", "==", False),
    )
    block_records = spoken(spec.BLOCK_RECORD_TYPES)
    every_type = list(spec.ALL_RECORD_TYPES)
    expectations = [
        _expect(
            "record_type_unknown",
            "expect_column_values_to_be_in_set",
            f"every non-blank record starts with {spoken(every_type)}",
            column="record_type",
            value_set=every_type,
            row_condition=_compare("record_type", "!=", ""),
        ),
        *(
            _expect(
                "record_wrong_version",
                "expect_column_values_to_be_in_set",
                f"a {version} file holds only {spoken(types)} records",
                column="record_type",
                value_set=list(types),
                row_condition=_all(
                    _compare("version", "==", version),
                    _compare("record_type", "IN", every_type),
                ),
            )
            for version, types in spec.RECORD_TYPES_OF.items()
        ),
        _expect(
            "record_outside_block",
            "expect_column_values_to_not_be_null",
            f"a {block_records} record comes after a 200 record (its nmi is not null)",
            column="nmi",
            row_condition=_compare("record_type", "IN", list(spec.BLOCK_RECORD_TYPES)),
        ),
        _expect(
            "record_fields",
            "expect_column_values_to_be_between",
            f"a 200 record has at least the {spec.NMI_DETAILS_MIN_FIELDS} fields"
            " NMI to IntervalLength",
            column="field_count",
            min_value=spec.NMI_DETAILS_MIN_FIELDS,
            row_condition=nmi_details,
        ),
        _expect(
            "nmi_missing",
            "expect_column_value_lengths_to_be_between",
            "a 200 record's NMI is not empty",
            column="nmi",
            min_value=1,
            row_condition=complete_nmi_details,
        ),
        _expect(
            "nmi_suffix_missing",
            "expect_column_values_to_not_be_null",
            "a 200 record has an NMISuffix",
            column="nmi_suffix",
            row_condition=complete_nmi_details,
        ),
        _expect(
            "nmi_suffix_missing",
            "expect_column_value_lengths_to_be_between",
            "a 200 record's NMISuffix is not empty",
            column="nmi_suffix",
            min_value=1,
            row_condition=complete_nmi_details,
        ),
        _expect(
            "interval_length",
            "expect_column_values_to_not_be_null",
            "a 200 record's IntervalLength is a valid one"
            f" (null: not {spoken(spec.INTERVAL_LENGTHS)} in the file)",
            column="interval_length",
            row_condition=complete_nmi_details,
        ),
        _expect(
            "interval_length",
            "expect_column_values_to_be_in_set",
            f"a 200 record's IntervalLength is {spoken(spec.INTERVAL_LENGTHS)} minutes",
            column="interval_length",
            value_set=list(spec.INTERVAL_LENGTHS),
            row_condition=complete_nmi_details,
        ),
        _expect(
            "uom_invalid",
            "expect_column_values_to_not_be_null",
            "a 200 record's UOM is a unit of the MDFF list (null: it is not)",
            column="uom",
            row_condition=complete_nmi_details,
        ),
        _expect(
            "uom_invalid",
            "expect_column_values_to_be_in_set",
            "a 200 record's UOM, normalised, is one of the MDFF units",
            column="uom",
            value_set=sorted(set(spec.UNITS_OF_MEASURE.values())),
            row_condition=complete_nmi_details,
        ),
        _expect(
            "value_count",
            "expect_column_pair_values_to_be_equal",
            f"a 300 record has {spec.MINUTES_PER_DAY} / IntervalLength interval values"
            " (value_count = expected_value_count)",
            column_A="value_count",
            column_B="expected_value_count",
            ignore_row_if="either_value_is_missing",
            row_condition=interval_data,
        ),
        _expect(
            "interval_date",
            "expect_column_values_to_not_be_null",
            "a 300 record's IntervalDate is a real YYYYMMDD date (null: it is not)",
            column="interval_date",
            row_condition=_all(interval_data, _not_null("nmi")),
        ),
        _expect(
            "quality_method",
            "expect_column_values_to_not_be_null",
            "a 300 record has a QualityMethod after its interval values",
            column="quality_method",
            row_condition=quality_method_in_place,
        ),
        _expect(
            "quality_method",
            "expect_column_values_to_match_regex",
            f"a 300 record's QualityMethod is {spoken(QUALITY_FLAGS)}"
            " with an optional two-digit method",
            column="quality_method",
            regex=non_capturing(spec.QUALITY_PATTERN),
            row_condition=quality_method_in_place,
        ),
        *_nem13_expectations(),
        _expect(
            EVERY_RULE,
            "expect_column_values_to_be_null",
            "every rule of the catalogue; a record (or a file, at line 0) with an error"
            " finding of the parser, listed with the rules it breaks",
            column="error_rules",
        ),
    ]
    return _suite(
        "nem12_records",
        expectations,
        description="NEM12 and NEM13 structure rules over the per-record frame of"
        " nem12.format.parsing (one row per record); meta.rule names the rule of"
        " nem12.format.rules.RULES.",
        derived_columns={
            "value_count_mismatch": "computed by nem12.pipeline.quality.with_derived_columns"
            " before validation: value_count and expected_value_count are both known and"
            " differ (then the QualityMethod field is not where the spec puts it, and"
            " value_count reports the record)",
            "error_rules": "added by nem12.pipeline.quality.with_findings: the ids of the error"
            " findings the parser reported on the record's line (line 0: findings about the"
            " whole file), comma-separated; null when there are none",
        },
    )


def _nem13_expectations() -> list[Expectation]:
    """The 250 and 550 records' rules that a per-record frame shows."""
    read = _compare("record_type", "==", "250")
    complete_read = _all(read, _compare("field_count", ">=", spec.READ_MIN_FIELDS))
    return [
        _expect(
            "record_outside_block",
            "expect_column_values_to_not_be_null",
            "a 550 record comes after a 250 record (its nmi is not null)",
            column="nmi",
            row_condition=_all(
                _compare("version", "==", "NEM13"), _compare("record_type", "==", "550")
            ),
        ),
        _expect(
            "direction_indicator",
            "expect_column_values_to_be_in_set",
            f"a 250 record's DirectionIndicator is {spoken(spec.DIRECTION_INDICATORS)}",
            column="direction_indicator",
            value_set=list(spec.DIRECTION_INDICATORS),
            row_condition=complete_read,
        ),
        _expect(
            "uom_invalid",
            "expect_column_values_to_not_be_null",
            "a 250 record's UOM is a unit of the MDFF list (null: it is not)",
            column="uom",
            row_condition=complete_read,
        ),
    ]


def _suite(name: str, expectations: list[Expectation], **meta: Any) -> Suite:
    """A suite in the shape GX 1.x saves one."""
    return {
        "name": name,
        "id": None,
        "expectations": expectations,
        "meta": {**meta, "great_expectations_version": version("great_expectations")},
        "notes": None,
    }


def suites() -> list[Suite]:
    """Every suite the pipeline validates a run with."""
    return [records_suite()]


def suite_json(suite: Suite) -> str:
    """A suite's file content, as committed."""
    return json.dumps(suite, indent=2) + "\n"


def write_suites(suites_dir: Path = CHECKOUT_SUITES_DIR) -> list[Path]:
    """Write every suite to ``<suites_dir>/<name>.json``; returns the files written."""
    suites_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suite in suites():
        path = suites_dir / f"{suite['name']}.json"
        path.write_text(suite_json(suite), encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nem12.pipeline.suites",
        description="Write the GX expectation suites from the rule catalogue and the MDFF facts.",
    )
    parser.add_argument(
        "suites_dir",
        nargs="?",
        type=Path,
        default=CHECKOUT_SUITES_DIR,
        help="where to write them (default: the checkout's great_expectations/expectations)",
    )
    for path in write_suites(parser.parse_args(argv).suites_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
