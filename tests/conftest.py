"""Shared helpers: parse a source completely and look at what came out."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from nem12.format.parsing import ParseConfig, ParseResult, parse_source
from nem12.format.spec import READING_SCHEMA

FIXTURES = Path(__file__).parent / "fixtures"
AEMO = FIXTURES / "aemo"
#: nem-reader's text examples that shared/nem12-examples does not hold (see its README)
NEM_READER_EXTRA = FIXTURES / "nem-reader-extra"


def pytest_unconfigure(config: pytest.Config) -> None:
    """pgserver says goodbye from an exit hook, after pytest closed the streams its
    log lines would go to (each printed as a 'Logging error' traceback)."""
    logging.getLogger("pgserver").disabled = True


@dataclass
class Parsed:
    """Every file's parse result and the readings of the files not rejected."""

    results: list[ParseResult]
    readings: pl.DataFrame

    @property
    def result(self) -> ParseResult:
        assert len(self.results) == 1, [r.file for r in self.results]
        return self.results[0]

    def rules(self, severity: str | None = None) -> set[str]:
        return {
            f.rule
            for r in self.results
            for f in r.findings
            if severity is None or f.severity == severity
        }


def parse_all(source, name: str | None = None, config: ParseConfig | None = None) -> Parsed:
    results: list[ParseResult] = []
    kept: list[pl.DataFrame] = []
    for parse in parse_source(source, name=name, config=config):
        batches = list(parse.batches())
        results.append(parse.result)
        if parse.result.status != "rejected":
            kept.extend(batches)
    readings = (pl.concat(kept) if kept else pl.DataFrame(schema=READING_SCHEMA)).with_columns(
        pl.col(pl.Categorical, pl.Enum).cast(pl.String)
    )
    return Parsed(results, readings)


@pytest.fixture
def parse():
    return parse_all
