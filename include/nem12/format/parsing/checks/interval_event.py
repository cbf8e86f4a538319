"""Checks of the 400 interval event records: where they are, their ranges, how they cover V days."""

from __future__ import annotations

import polars as pl

from nem12.format.parsing.checks.registry import check, finding_rows

N = pl.col("intervals")


@check("event_unexpected", on="events")
def event_unexpected(events: pl.LazyFrame) -> pl.LazyFrame:
    q300 = pl.col("q300")
    unexpected = (pl.col("anchor") != "300") | (
        pl.col("shape_ok").fill_null(False) & ~q300.str.starts_with("V")
    )
    return finding_rows(
        events.filter(unexpected, pl.col("block") > 0),
        pl.format(
            "400 record follows a {} record{}",
            pl.col("anchor").fill_null("?"),
            pl.when(q300.is_not_null())
            .then(pl.format(" with QualityMethod {}", q300))
            .otherwise(pl.lit("")),
        ),
    )


@check("event_range", on="events")
def event_range(events: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        events.filter(pl.col("expected"), ~pl.col("range_ok")),
        pl.format(
            "interval range {}-{} is not within 1..{}",
            pl.col("start_raw").fill_null(""),
            pl.col("end_raw").fill_null(""),
            N,
        ),
    )


@check("event_quality", on="events")
def event_quality(events: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        events.filter(pl.col("expected"), ~pl.col("quality_ok")),
        pl.format(
            "400 QualityMethod '{}' is not valid here",
            pl.col("quality_method").fill_null("").str.slice(0, 20),
        ),
    )


@check("event_missing", on="variable_days")
def event_missing(variable_days: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        variable_days.filter(pl.col("covered").is_null(), ~pl.col("range_invalid")),
        pl.lit("QualityMethod V but no 400 records follow"),
        "300",
    )


@check("event_coverage", on="variable_days")
def event_coverage(variable_days: pl.LazyFrame) -> pl.LazyFrame:
    wrong = (
        (pl.col("covered") != N)
        | (pl.col("first_start") != 1)
        | (pl.col("last_end") != N)
        | (pl.col("gaps") > 0)
    )
    return finding_rows(
        variable_days.filter(pl.col("covered").is_not_null(), ~pl.col("range_invalid"), wrong),
        pl.format(
            "400 records cover {} interval slots from {} to {} with {} gaps or "
            "overlaps; the day has {}",
            pl.col("covered"),
            pl.col("first_start"),
            pl.col("last_end"),
            pl.col("gaps"),
            N,
        ),
        "300",
    )
