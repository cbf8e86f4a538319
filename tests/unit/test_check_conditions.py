"""A check's ``when`` holds for every row it finds: the driver skips it on chunks none meets."""

from __future__ import annotations

import io

import polars as pl
import pytest

from nem12.devtools.generate import (
    DEFECTS,
    NEM13_DEFECTS,
    GeneratorSpec,
    Nem13Spec,
    generate_bytes,
)
from nem12.format.parsing import driver, parse_source
from nem12.format.parsing.checks.registry import CHECKS, WHEN

CASES = [
    *[(f"nem12 {d}", GeneratorSpec(nmis=2, days=3, seed=4, defects=(d,))) for d in sorted(DEFECTS)],
    *[(f"nem13 {d}", Nem13Spec(defects=(d,))) for d in sorted(NEM13_DEFECTS)],
]


def frames_checked(data: bytes, monkeypatch) -> list[tuple[str, pl.LazyFrame]]:
    """The frames the driver gives its checks while parsing ``data``."""
    seen: list[tuple[str, pl.LazyFrame]] = []
    run = driver.Parse._run

    def keep(self, frame, rows):
        if isinstance(rows, pl.LazyFrame):
            seen.append((frame, rows))
        return run(self, frame, rows)

    monkeypatch.setattr(driver.Parse, "_run", keep)
    for parse in parse_source(io.BytesIO(data), name="NEM12#1#FROM#TO.csv"):
        list(parse.batches())
    return seen


def test_the_lines_and_days_checks_say_when_they_can_find():
    gated = {frame for frame, _ in WHEN}
    assert {"lines", "days"} <= gated


def test_every_nem13_check_says_when_it_can_find():
    nem13 = {"reads", "read_qualities", "read_b2b"}
    ungated = sorted(key for key in CHECKS if key[0] in nem13 and key not in WHEN)
    assert ungated == []


@pytest.mark.parametrize("name,spec", CASES, ids=[name for name, _ in CASES])
def test_no_check_finds_a_row_its_when_rules_out(name, spec, monkeypatch):
    for frame, rows in frames_checked(generate_bytes(spec), monkeypatch):
        for (on, rule), when in WHEN.items():
            if on != frame:
                continue
            found = CHECKS[(on, rule)](rows).collect()
            if found.height:
                met = rows.filter(when).select("line").collect().get_column("line")
                assert found.get_column("line").is_in(met.implode()).all(), (rule, name)
