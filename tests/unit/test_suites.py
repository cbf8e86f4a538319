"""The GX suites are written from the rule catalogue and the MDFF facts, never by hand.

No GX import: the suites are checked as JSON (``test_quality.py`` runs them).
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from nem12.format import spec
from nem12.format.rules import RULES
from nem12.pipeline.quality import SUITES_DIR
from nem12.pipeline.suites import (
    EVERY_RULE,
    GX_SEVERITY,
    QUALITY_FLAGS,
    main,
    non_capturing,
    spoken,
    suite_json,
    suites,
)

SUITES = suites()
EXPECTATIONS = [e for suite in SUITES for e in suite["expectations"]]

#: Where each value set and pattern of the suite comes from, by (rule, kwarg).
SPEC_FACTS = {
    ("record_type_unknown", "value_set"): list(spec.ALL_RECORD_TYPES),
    # one expectation per version; the NEM13 one is the last
    ("record_wrong_version", "value_set"): list(spec.RECORD_TYPES_OF["NEM13"]),
    ("direction_indicator", "value_set"): list(spec.DIRECTION_INDICATORS),
    ("interval_length", "value_set"): list(spec.INTERVAL_LENGTHS),
    ("uom_invalid", "value_set"): sorted(set(spec.UNITS_OF_MEASURE.values())),
    ("quality_method", "regex"): non_capturing(spec.QUALITY_PATTERN),
}


def _conditions(condition: dict | None) -> list[dict]:
    """The comparisons and nullity tests of a row condition, ``and`` groups flattened."""
    if condition is None:
        return []
    if condition["type"] == "and":
        return [c for part in condition["conditions"] for c in _conditions(part)]
    return [condition]


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s["name"])
def test_the_committed_suite_is_the_generated_one(suite: dict):
    path = SUITES_DIR / f"{suite['name']}.json"
    assert path.is_file(), f"{path} is missing: run `make suites`"
    assert path.read_text(encoding="utf-8") == suite_json(suite), (
        f"{path} differs from what nem12.pipeline.suites generates: run `make suites`"
        " (edit the generator, the rule catalogue or the spec facts, not the JSON)"
    )


def test_the_suites_folder_holds_only_generated_suites():
    committed = {path.name for path in SUITES_DIR.glob("*.json")}
    generated = {f"{suite['name']}.json" for suite in SUITES}
    assert committed == generated, "a suite nem12.pipeline.suites does not write: remove it"


def test_every_value_set_and_pattern_is_the_spec_fact_it_comes_from():
    found = {}
    for expectation in EXPECTATIONS:
        for key in ("value_set", "regex"):
            if key in expectation["kwargs"]:
                found[expectation["meta"]["rule"], key] = expectation["kwargs"][key]
    assert found == SPEC_FACTS
    assert found["record_type_unknown", "value_set"] == list(spec.ALL_RECORD_TYPES)
    assert found["interval_length", "value_set"] == list(spec.INTERVAL_LENGTHS)
    assert set(found["uom_invalid", "value_set"]) == set(spec.UNITS_OF_MEASURE.values())


def test_the_quality_method_regex_is_the_spec_pattern_without_capturing_groups():
    regex = next(e["kwargs"]["regex"] for e in EXPECTATIONS if "regex" in e["kwargs"])
    assert re.compile(regex).groups == 0  # pandas str.contains warns about capturing groups
    assert regex.replace("(?:", "(") == spec.QUALITY_PATTERN
    samples = [*spec.QUALITY_METHODS, "", "X", "a", "E5", "E123", "AA", " A", "V01 "]
    assert [bool(re.search(regex, s)) for s in samples] == [
        bool(re.search(spec.QUALITY_PATTERN, s)) for s in samples
    ]


def test_row_condition_constants_are_spec_facts():
    compared: dict[tuple[str, str], list] = {}
    for expectation in EXPECTATIONS:
        for c in _conditions(expectation["kwargs"].get("row_condition")):
            if c["type"] == "comparison":
                compared.setdefault((c["column"]["name"], c["operator"]), []).append(c["parameter"])
    assert {tuple(p) for p in compared["record_type", "IN"]} == {
        spec.BLOCK_RECORD_TYPES,
        spec.ALL_RECORD_TYPES,
    }
    assert set(compared["field_count", ">="]) == {
        spec.NMI_DETAILS_MIN_FIELDS,
        spec.READ_MIN_FIELDS,
    }
    assert set(compared["record_type", "=="]) <= set(spec.ALL_RECORD_TYPES)
    assert set(compared["version", "=="]) == set(spec.RECORD_TYPES_OF)
    [record_fields] = [e for e in EXPECTATIONS if e["meta"]["rule"] == "record_fields"]
    assert record_fields["kwargs"]["min_value"] == spec.NMI_DETAILS_MIN_FIELDS


def test_every_expectation_names_a_catalogue_rule_with_its_severity():
    for expectation in EXPECTATIONS:
        rule = expectation["meta"]["rule"]
        assert rule in RULES or rule == EVERY_RULE, rule
        assert expectation["description"].startswith(f"{rule}: ")
        severity = RULES[rule].severity if rule in RULES else "error"
        assert expectation["severity"] == GX_SEVERITY[severity]
    [every] = [e for e in EXPECTATIONS if e["meta"]["rule"] == EVERY_RULE]
    assert every["kwargs"] == {"column": "error_rules"}


def test_the_catalogue_messages_quote_the_facts_the_suite_checks():
    """Messages and descriptions speak of the same sets, both from the spec facts."""
    described = {e["meta"]["rule"]: e["description"] for e in EXPECTATIONS}
    message = {rule_id: RULES[rule_id].message for rule_id in described if rule_id in RULES}
    assert ", ".join(spec.RECORD_TYPES) in message["record_type_unknown"]
    assert spoken(spec.ALL_RECORD_TYPES) in described["record_type_unknown"]
    assert "/".join(spec.BLOCK_RECORD_TYPES) in message["record_outside_block"]
    assert spoken(spec.INTERVAL_LENGTHS) in message["interval_length"]
    assert spoken(spec.INTERVAL_LENGTHS) in described["interval_length"]
    assert f"{spec.MINUTES_PER_DAY} / IntervalLength" in message["value_count"]
    assert f"{spec.MINUTES_PER_DAY} / IntervalLength" in described["value_count"]
    flags = f"{spoken(QUALITY_FLAGS)} with an optional two-digit method"
    assert flags in message["quality_method"] and flags in described["quality_method"]


def test_suites_do_not_share_dicts_between_expectations():
    conditions = [
        id(e["kwargs"]["row_condition"]) for e in EXPECTATIONS if "row_condition" in e["kwargs"]
    ]
    assert len(conditions) == len(set(conditions))


def test_the_command_writes_every_suite(tmp_path, capsys):
    assert main([str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed == [str(tmp_path / "out" / f"{suite['name']}.json") for suite in SUITES]
    for suite, path in zip(SUITES, printed, strict=True):
        assert Path(path).read_text(encoding="utf-8") == suite_json(suite)


def test_spoken_lists_values_as_a_sentence():
    assert spoken([5, 15, 30]) == "5, 15 or 30"
    assert spoken(["A"]) == "A"


def test_non_capturing_keeps_escaped_parentheses_and_other_groups():
    assert non_capturing(r"^\(a(b)(?:c)(?P<d>d)\)$") == r"^\(a(?:b)(?:c)(?P<d>d)\)$"


@pytest.mark.parametrize("suite", SUITES, ids=lambda s: s["name"])
def test_the_code_a_suite_names_exists(suite: dict):
    """The suite's notes name modules and functions; they must outlive refactoring."""
    names = set(re.findall(r"\bnem12(?:\.\w+)+", json.dumps(suite["meta"])))
    assert names
    for name in names:
        module, _, attribute = name.rpartition(".")
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            assert hasattr(importlib.import_module(module), attribute), name
