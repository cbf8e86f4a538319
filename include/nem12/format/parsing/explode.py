"""Exploding accepted 300 records into readings: one row per interval, in READING_SCHEMA."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from nem12.format import spec
from nem12.format.findings import CHUNK_ENGINE
from nem12.format.parsing.records import F

#: Seconds from UTC to NEM time (UTC+10); what a 400 range sets on its intervals.
_NEM_OFFSET_SECONDS = 10 * 3600
#: A value of digits and dots this short cannot hold more digits than
#: ``spec.VALUE_DTYPE``, so the cast alone tells whether it is well formed.
SHORT_VALUE_BYTES = 15
TEXT_DTYPES = {c: spec.READING_SCHEMA[c] for c in spec.READING_TEXT_COLUMNS}
_EVENT_COLUMNS = ("quality_method", "reason_code", "reason_description")


def text_dtypes(days: pl.DataFrame, enums: Mapping[str, pl.Enum]) -> dict[str, pl.DataType]:
    """The readings' text dtypes for this chunk: the configured Enums if they fit."""
    if not enums:
        return TEXT_DTYPES
    try:
        days.select(pl.col(c).replace("", None).cast(enum) for c, enum in enums.items())
    except pl.exceptions.InvalidOperationError:
        return TEXT_DTYPES
    return {**TEXT_DTYPES, **enums}


def nem_datetime(raw: pl.Expr, fmt: str) -> pl.Expr:
    return raw.str.to_datetime(fmt, strict=False, time_unit="us").dt.replace_time_zone(
        spec.NEM_TIME_ZONE
    )


def text_field(column: str) -> pl.Expr:
    """A text field; empty is null for those that may be empty."""
    if column in spec.OPTIONAL_TEXT_COLUMNS:
        return pl.when(pl.col(column) != "").then(pl.col(column))
    return pl.col(column)


def day_fields(text_dtypes: Mapping[str, pl.DataType]) -> list[pl.Expr]:
    """What every reading of a day shares, computed once on the day frame."""
    update = pl.col("update_raw").fill_null("")
    return [
        pl.col("block").cast(pl.Int32),
        "line",
        "interval_length",
        *[
            (
                pl.when(pl.col(c) != "").then(pl.col(c))
                if c in spec.OPTIONAL_TEXT_COLUMNS
                else pl.col(c)
            )
            .cast(text_dtypes[c])
            .alias(c)
            for c in spec.READING_TEXT_COLUMNS
        ],
        pl.when(update.str.len_bytes() == 12)
        .then(nem_datetime(update, "%Y%m%d%H%M"))
        .otherwise(nem_datetime(update, "%Y%m%d%H%M%S"))
        .alias("update_datetime"),
        nem_datetime(pl.col("msats_raw").fill_null(""), "%Y%m%d%H%M%S").alias(
            "msats_load_datetime"
        ),
    ]


def explode(
    days: pl.DataFrame, events: pl.DataFrame | None, text_dtypes: Mapping[str, pl.DataType]
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """Split and explode the accepted 300 records into one row per interval.

    Everything per day (text fields, timestamps) is prepared on the small
    day frame and repeated by the explode; text is categorical so that
    repeating costs 4-byte codes. One fused query does the per-value work.
    """
    if days.is_empty():
        return None, None
    # per day, its intervals' starts in microseconds, exploded alongside the values
    day_start = (pl.col("interval_date").cast(pl.Int64) * 86_400 - _NEM_OFFSET_SECONDS) * 1_000_000
    step = pl.col("interval_length").cast(pl.Int64) * 60_000_000
    long = (
        days.lazy()
        .select(
            *day_fields(text_dtypes),
            (~pl.col("raw").str.contains("[-+eE]")).alias("plain_line"),
            value=F.list.slice(2, pl.col("intervals")),
            interval_start=pl.int_ranges(
                day_start, day_start + pl.col("intervals").cast(pl.Int64) * step, step
            ),
        )
        .explode("value", "interval_start")
        .with_columns(decimal=pl.col("value").cast(spec.VALUE_DTYPE, strict=False))
        .select(
            *spec.STREAM_COLUMNS,
            interval_start=pl.col("interval_start").cast(pl.Datetime("us", spec.NEM_TIME_ZONE)),
            value="decimal",
            quality_method="quality_method",
            reason_code="reason_code",
            reason_description="reason_description",
            update_datetime="update_datetime",
            msats_load_datetime="msats_load_datetime",
            line_number="line",
            block="block",
            # The cast also takes signs and exponents: a line holding any is
            # checked value by value against VALUE_PATTERN below.
            value_ok=pl.col("plain_line")
            & (pl.col("value").str.len_bytes() <= SHORT_VALUE_BYTES)
            & pl.col("decimal").is_not_null(),
            value_raw="value",
        )
        .collect(engine=CHUNK_ENGINE)
    )
    if events is not None and not events.is_empty():
        long = apply_events(long, days, events)
    bad = None
    if not long.get_column("value_ok").all():
        start = pl.col("interval_start")
        minute_of_day = start.dt.hour().cast(pl.Int32) * 60 + start.dt.minute()
        bad = long.filter(
            ~pl.col("value_ok"),
            ~pl.col("value_raw").str.contains(spec.VALUE_PATTERN) | pl.col("value").is_null(),
        ).with_columns(idx=minute_of_day // pl.col("interval_length"))
        if bad.is_empty():
            bad = None
    return long.drop("value_ok", "value_raw"), bad


def concat_readings(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate chunks' readings; chunks that kept different text dtypes fall back."""
    if any(frame.schema != frames[0].schema for frame in frames):
        frames = [frame.cast(TEXT_DTYPES) for frame in frames]  # type: ignore[arg-type]
    return pl.concat(frames)


def apply_events(long: pl.DataFrame, days: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """Give each interval of a V day the quality of the 400 range holding it.

    ``long`` holds each day's intervals contiguously in day order, so an
    interval's row is its day's offset plus its index: the 400 ranges are
    scattered straight into place, costing only the V days' intervals.
    """
    offsets = days.select("day", offset=pl.col("intervals").cum_sum() - pl.col("intervals"))
    placed = (
        events.join(offsets, on="day", how="inner")
        .with_columns(idx=pl.int_ranges(pl.col("start") - 1, pl.col("end")))
        .explode("idx")
        .select(
            (pl.col("offset") + pl.col("idx")).cast(pl.Int64).alias("position"),
            *[pl.col(c).cast(spec.READING_SCHEMA[c]) for c in _EVENT_COLUMNS],
        )
    )
    if placed.is_empty():
        return long
    positions = placed.get_column("position")
    return long.with_columns(
        long.get_column(c).scatter(positions, placed.get_column(c)) for c in _EVENT_COLUMNS
    )
