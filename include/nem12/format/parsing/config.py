"""How strict a parse is: what a caller can set."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl

from nem12.format.reading import ReadLimits


@dataclass(frozen=True)
class ParseConfig:
    """How strict parsing is: limits, severity overrides, block vs file rejection."""

    limits: ReadLimits = field(default_factory=ReadLimits)
    severity: Mapping[str, str] = field(default_factory=dict)
    reject_file_on_block_error: bool = False
    max_findings_per_rule: int = 100
    keep_records: bool = False  # build ParseResult.records, the per-record frame
    #: Yield day rows (``spec.DAY_SCHEMA``, what the warehouse stores) instead of
    #: one row per interval (``spec.READING_SCHEMA``).
    per_day: bool = False
    #: Enums for some of ``spec.STREAM_TEXT_FIELDS`` (see ``output.stream_enums``);
    #: a chunk holding a value outside them keeps the categoricals.
    stream_enums: Mapping[str, pl.Enum] = field(default_factory=dict)
