"""Every hostile or broken input in tests/fixtures/hostile is caught with its finding."""

from __future__ import annotations

import json

import psutil
import pytest

from tests.conftest import FIXTURES, parse_all

CORPUS = FIXTURES / "hostile"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())


def test_the_corpus_has_at_least_40_cases_and_all_are_listed():
    files = {p.name for p in CORPUS.iterdir()} - {"manifest.json", "make_corpus.py"}
    assert files == set(MANIFEST)
    assert len(MANIFEST) >= 40


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_each_case_gets_its_finding_and_status(name):
    expected = MANIFEST[name]
    before = psutil.Process().memory_info().rss
    parsed = parse_all(CORPUS / name, name=name)
    grown = psutil.Process().memory_info().rss - before
    assert expected["rule"] in parsed.rules(), [
        f.as_line() for r in parsed.results for f in r.findings
    ][:5]
    statuses = {r.status for r in parsed.results}
    if expected["status"] == "rejected":
        assert statuses == {"rejected"}
        assert parsed.readings.height == parsed.reads.height == 0
    elif expected["status"] == "partial":
        assert statuses == {"partial"}
        assert parsed.readings.height + parsed.reads.height > 0
    else:
        assert statuses == {"accepted"}
    assert grown < 600_000_000, "memory stays bounded"
