"""Checks of the file's structure: blank and unknown lines, where 100, 900 and data records are."""

from __future__ import annotations

import polars as pl

from nem12.format import spec
from nem12.format.parsing.checks.registry import check

RECORD = pl.col("record_type")
LINE = pl.col("line")


def _records(lines: pl.LazyFrame) -> pl.LazyFrame:
    return lines.filter(pl.col("raw") != "")


def _line_rows(lines: pl.LazyFrame, message: pl.Expr) -> pl.LazyFrame:
    return lines.select("line", "record_type", nmi=pl.lit(None, pl.String), message=message)


BLANK = pl.col("raw") == ""


@check("blank_line", on="lines", when=BLANK)
def blank_line(lines: pl.LazyFrame) -> pl.LazyFrame:
    return lines.filter(BLANK).select(
        "line",
        record_type=pl.lit(None, pl.String),
        nmi=pl.lit(None, pl.String),
        message=pl.lit("blank line ignored"),
    )


SECOND_HEADER = (RECORD == "100") & (LINE != pl.col("first_record_line"))


@check("header_repeated", on="lines", when=SECOND_HEADER)
def header_repeated(lines: pl.LazyFrame) -> pl.LazyFrame:
    later = lines.filter(SECOND_HEADER)
    return _line_rows(later, pl.lit("a second 100 header"))


NEM13 = pl.col("version") == "NEM13"
#: The record types of the file's own version (NEM12 unless the header says NEM13).
OWN_TYPE = (
    pl.when(NEM13)
    .then(RECORD.is_in(spec.RECORD_TYPES_OF["NEM13"]))
    .otherwise(RECORD.is_in(spec.RECORD_TYPES_OF["NEM12"]))
)
ANY_TYPE = RECORD.is_in(spec.RECORD_TYPES + spec.NEM13_RECORD_TYPES)


@check("record_type_unknown", on="lines", when=~ANY_TYPE)
def record_type_unknown(lines: pl.LazyFrame) -> pl.LazyFrame:
    unknown = _records(lines).filter(~ANY_TYPE)
    return _line_rows(
        unknown,
        pl.format("record indicator '{}' is not an MDFF record type", RECORD.str.slice(0, 20)),
    )


@check("record_wrong_version", on="lines", when=ANY_TYPE & ~OWN_TYPE)
def record_wrong_version(lines: pl.LazyFrame) -> pl.LazyFrame:
    other = _records(lines).filter(ANY_TYPE, ~OWN_TYPE)
    return _line_rows(
        other,
        pl.format(
            "a {} record in a {} file (it belongs to {})",
            RECORD,
            pl.col("version"),
            pl.when(NEM13).then(pl.lit("NEM12")).otherwise(pl.lit("NEM13")),
        ),
    )


SECOND_END = (RECORD == "900") & (LINE != pl.col("end_line"))


@check("end_repeated", on="lines", when=SECOND_END)
def end_repeated(lines: pl.LazyFrame) -> pl.LazyFrame:
    again = lines.filter(SECOND_END)
    return _line_rows(
        again, pl.format("another 900 record (the first is on line {})", pl.col("end_line"))
    )


@check("data_after_end", on="lines", when=LINE > pl.col("end_line"))
def data_after_end(lines: pl.LazyFrame) -> pl.LazyFrame:
    after = _records(lines).filter(LINE > pl.col("end_line"), RECORD != "900")
    return _line_rows(
        after,
        pl.format(
            "record {} after the 900 record on line {}", RECORD.str.slice(0, 20), pl.col("end_line")
        ),
    )


#: A record that belongs in a block: after a 200 in NEM12, after a 250 in NEM13.
BLOCK_RECORD = pl.when(NEM13).then(RECORD == "550").otherwise(RECORD.is_in(spec.BLOCK_RECORD_TYPES))
OUTSIDE_BLOCK = BLOCK_RECORD & (pl.col("block") == 0)


@check("record_outside_block", on="lines", when=OUTSIDE_BLOCK)
def record_outside_block(lines: pl.LazyFrame) -> pl.LazyFrame:
    outside = lines.filter(OUTSIDE_BLOCK)
    opener = pl.when(NEM13).then(pl.lit("250")).otherwise(pl.lit("200"))
    return _line_rows(outside, pl.format("{} record before any {} record", RECORD, opener))
