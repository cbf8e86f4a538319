"""Checks of the 200 NMI data details records: fields, NMI, suffix, IntervalLength, UOM."""

from __future__ import annotations

import polars as pl

from nem12.format import spec
from nem12.format.parsing.checks.registry import check, finding_rows

#: The record has the fields up to IntervalLength; only then are the others judged.
HAS_FIELDS = pl.col("field_count") >= spec.NMI_DETAILS_MIN_FIELDS
NMI = pl.col("nmi").fill_null("")


@check("record_fields", on="blocks")
def record_fields(blocks: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        blocks.filter(~HAS_FIELDS | pl.col("extra")),
        pl.format(
            "200 record has {} fields; it needs NMI to IntervalLength and no extra values",
            pl.col("field_count"),
        ),
        "200",
    )


@check("nmi_missing", on="blocks")
def nmi_missing(blocks: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        blocks.filter(HAS_FIELDS, NMI == ""),
        pl.lit("NMI is empty: the readings cannot be attributed"),
        "200",
    )


@check("nmi_format", on="blocks")
def nmi_format(blocks: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        blocks.filter(NMI != "", ~NMI.str.contains(spec.NMI_PATTERN)),
        pl.format("NMI '{}' is not 10 characters of A-Z (no I, O) and 0-9", NMI),
        "200",
    )


@check("nmi_suffix_missing", on="blocks")
def nmi_suffix_missing(blocks: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        blocks.filter(HAS_FIELDS, pl.col("nmi_suffix").fill_null("") == ""),
        pl.lit("NMISuffix is empty: readings cannot be told apart by data stream"),
        "200",
    )


@check("interval_length", on="blocks")
def interval_length(blocks: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        blocks.filter(
            HAS_FIELDS, ~pl.col("interval_length").is_in(spec.INTERVAL_LENGTHS).fill_null(False)
        ),
        pl.format(
            "IntervalLength '{}' is not 5, 15 or 30", pl.col("interval_length_raw").fill_null("")
        ),
        "200",
    )


@check("uom_invalid", on="blocks")
def uom_invalid(blocks: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        blocks.filter(HAS_FIELDS, pl.col("uom").is_null()),
        pl.format("UOM '{}' is not an MDFF unit", pl.col("uom_raw").fill_null("")),
        "200",
    )
