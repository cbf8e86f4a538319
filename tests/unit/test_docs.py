"""The README stays true to the code it documents."""

from __future__ import annotations

from pathlib import Path

from nem12.reading import ReadLimits
from nem12.rules import RULES

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_readme_lists_every_rule_with_its_severity_and_scope():
    for rule in RULES.values():
        assert f"| `{rule.id}` | {rule.severity} | {rule.scope} |" in README


def test_readme_documents_every_limit_variable():
    for variable in (
        "NEM12_MAX_MEMBER_BYTES",
        "NEM12_MAX_RATIO",
        "NEM12_MAX_DEPTH",
        "NEM12_MAX_MEMBERS",
        "NEM12_MAX_LINE_BYTES",
        "NEM12_CHUNK_BYTES",
    ):
        assert variable in README
        assert ReadLimits.from_env({variable: "7"}) != ReadLimits()
