"""Checks of the 300 records' interval values, read where the worker explodes them.

One finding per 300 record: its first bad value and how many it holds.
"""

from __future__ import annotations

import polars as pl

from nem12.format.parsing.checks.registry import check, finding_rows

NEGATIVE = pl.col("value_raw").str.contains(r"^-(\d+\.?\d*|\.\d+)$")


def _per_record(values: pl.LazyFrame, negative: bool, what: str) -> pl.LazyFrame:
    """The records holding bad values of one kind (negative or not), with the first and count."""
    first = (
        values.filter(NEGATIVE == negative)
        .group_by("line_number", maintain_order=True)
        .agg(
            pl.col("block").first(),
            pl.col("nmi").first().cast(pl.String),
            pl.col("idx").first(),
            pl.col("value_raw").first().alias("value"),
            count=pl.len(),
        )
        .rename({"line_number": "line"})
    )
    return finding_rows(
        first,
        pl.format(
            "interval {} value '{}' is {} ({} such values in the record)",
            pl.col("idx") + 1,
            pl.col("value").str.slice(0, 20),
            pl.lit(what),
            pl.col("count"),
        ),
        "300",
    )


@check("value_negative", on="values")
def value_negative(values: pl.LazyFrame) -> pl.LazyFrame:
    return _per_record(values, True, "negative")


@check("value_not_numeric", on="values")
def value_not_numeric(values: pl.LazyFrame) -> pl.LazyFrame:
    return _per_record(values, False, "not a decimal number")
