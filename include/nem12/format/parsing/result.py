"""What a parse tells about one file once its readings are all out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import polars as pl

from nem12.format.rules import Finding

Status = Literal["accepted", "partial", "rejected"]


class ParseNotFinished(RuntimeError):
    """``Parse.result`` read before ``Parse.batches()`` was exhausted."""


@dataclass
class Header:
    """The file's 100 record."""

    version: str | None = None
    datetime: datetime | None = None
    from_participant: str | None = None
    to_participant: str | None = None
    line: int | None = None


@dataclass
class ParseResult:
    """What one file held and what was wrong with it."""

    file: str
    status: Status
    findings: list[Finding]
    header: Header
    blocks: int
    rejected_blocks: int
    readings: int
    b2b: list[dict[str, object]]
    records: pl.DataFrame | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]
