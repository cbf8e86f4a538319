"""The README stays true to the code it documents."""

from __future__ import annotations

from pathlib import Path

from nem12.format.rules import RULES
from nem12.pipeline.settings import variables

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_readme_lists_every_rule_with_its_severity_and_scope():
    for rule in RULES.values():
        assert f"| `{rule.id}` | {rule.severity} | {rule.scope} |" in README


def test_readme_documents_every_setting():
    for variable in variables():
        assert f"| `{variable}` |" in README, variable
