"""Accepted 300 records as day rows (``spec.DAY_SCHEMA``): NEM12 versions data by the day.

A day's values stay one PostgreSQL array literal of the decimals as written,
so the common day costs a split and a join, never a row per interval. Only
the rare days need their intervals: those holding a value the quick test
doubts (checked value by value, as ``explode`` does) and V days, whose 400
ranges become ``interval_quality``: JSON ranges ``[{"first_interval",
"last_interval", "quality_method", "reason_code", "reason_description"}]``
covering every interval in order, kept only where some interval's quality
differs from the day's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import polars as pl

from nem12.format import spec
from nem12.format.findings import CHUNK_ENGINE
from nem12.format.output import trimmed_text
from nem12.format.parsing.explode import (
    SHORT_VALUE_BYTES,
    TEXT_DTYPES,
    day_fields,
    explode,
    text_field,
)
from nem12.format.parsing.records import F

_QUALITY = ("quality_method", "reason_code", "reason_description")


def day_rows(
    days: pl.DataFrame, events: pl.DataFrame | None, text_dtypes: Mapping[str, pl.DataType]
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """The readable days as day rows, and the bad values among them (for the values checks)."""
    if days.is_empty():
        return None, None
    values = F.list.slice(2, pl.col("intervals"))
    decimals = pl.col("decimals")
    frame = (
        days.lazy()
        .select(
            *day_fields(text_dtypes),
            "day",
            "interval_date",
            "intervals",
            raw_values=values,
            plain_line=~pl.col("raw").str.contains("[-+eE]"),
        )
        .with_columns(decimals=pl.col("raw_values").cast(pl.List(spec.VALUE_DTYPE), strict=False))
        .with_columns(
            values_ok=pl.col("plain_line")
            & (decimals.list.eval(pl.element().is_null()).list.any().not_())
            & (
                pl.col("raw_values").list.eval(pl.element().str.len_bytes()).list.max()
                <= SHORT_VALUE_BYTES
            ),
            total=decimals.list.sum(),
        )
        .with_columns(
            values=pl.when("values_ok")
            .then(pl.concat_str(pl.lit("{"), pl.col("raw_values").list.join(","), pl.lit("}")))
            .otherwise(_array_literal(decimals))
        )
        .collect(engine=CHUNK_ENGINE)
    )
    bad = None
    values_ok = frame.get_column("values_ok")
    if not values_ok.all():
        doubted = frame.get_column("day").filter(~values_ok)
        _, bad = explode(days.filter(pl.col("day").is_in(doubted.implode())), None, text_dtypes)
    # A second query: joining in the one above made a big file's per-day parse ~25%
    # slower in wall time (the same CPU) on 2 cores.
    quality = _interval_quality(days, events).lazy()
    return (
        frame.lazy()
        .join(quality, on="day", how="left", maintain_order="left")
        .select(
            *spec.STREAM_COLUMNS,
            "interval_date",
            "intervals",
            "values",
            *_QUALITY,
            "interval_quality",
            "update_datetime",
            "msats_load_datetime",
            "block",
            line_number="line",
            total="total",
            **_quality_counts(),
        )
        .collect(engine=CHUNK_ENGINE),
        bad,
    )


def _array_literal(decimals: pl.Expr) -> pl.Expr:
    """A day some value of which is not a decimal: the ones that are, NULL for the others."""
    return pl.concat_str(
        pl.lit("{"),
        decimals.list.eval(trimmed_text(pl.element()).fill_null("NULL")).list.join(","),
        pl.lit("}"),
    )


def _interval_quality(days: pl.DataFrame, events: pl.DataFrame | None) -> pl.DataFrame:
    """Per V day: its intervals' quality as ranges, and the intervals per quality class.

    The intervals are placed as ``explode`` places them (``apply_events``), so
    a range overlapping another resolves the same way in both shapes.
    """
    empty = pl.DataFrame(
        schema={
            "day": pl.Int64,
            "interval_quality": pl.String,
            **dict.fromkeys(spec.QUALITY_COUNT_COLUMNS, pl.Int32),
        }
    )
    if events is None or events.is_empty():
        return empty
    variable = days.filter(pl.col("quality_method").str.starts_with("V"))
    if variable.is_empty():
        return empty
    long, _ = explode(variable, events, TEXT_DTYPES)
    if long is None:
        return empty
    own = variable.select(
        "line",
        "day",
        *[text_field(c).alias(f"own_{c}") for c in _QUALITY],
    )
    intervals = (
        long.lazy()
        .select(
            line="line_number",
            **{c: pl.col(c).cast(pl.String) for c in _QUALITY},
        )
        .with_columns(interval=pl.int_range(1, pl.len() + 1).over("line"))
        .join(own.lazy(), on="line", how="left")
    )
    quality = pl.struct(*_QUALITY)
    runs = (
        intervals.with_columns(
            run=((quality != quality.shift(1)) | (pl.col("line") != pl.col("line").shift(1)))
            .fill_null(True)
            .cum_sum()
        )
        .group_by("run", maintain_order=True)
        .agg(
            pl.col("day").first(),
            first_interval=pl.col("interval").first(),
            last_interval=pl.col("interval").last(),
            **{c: pl.col(c).first() for c in _QUALITY},
            own=pl.all_horizontal(pl.col(c).eq_missing(pl.col(f"own_{c}")) for c in _QUALITY).all(),
        )
    )
    ranges = runs.group_by("day", maintain_order=True).agg(
        interval_quality=pl.when(pl.col("own").all())
        .then(None)
        .otherwise(
            pl.concat_str(
                pl.lit("["),
                pl.struct("first_interval", "last_interval", *_QUALITY)
                .struct.json_encode()
                .str.join(","),
                pl.lit("]"),
            )
        )
        .first()
    )
    flag = pl.col("quality_method").str.slice(0, 1)
    counts = intervals.group_by("day").agg(
        **{
            f"{name}_intervals": (flag == letter).sum().cast(pl.Int32)
            for letter, name in spec.QUALITY_CLASSES.items()
        }
    )
    return ranges.join(counts, on="day", how="left").collect(engine=CHUNK_ENGINE)


@cache
def _quality_counts() -> dict[str, pl.Expr]:
    """Per class: a V day's counts from its intervals, any other day's intervals in its flag."""
    flag = pl.col("quality_method").cast(pl.String).str.slice(0, 1)
    return {
        column: pl.coalesce(
            pl.col(column), pl.when(flag == letter).then("intervals").otherwise(0)
        ).cast(pl.Int32)
        for (letter, _), column in zip(
            spec.QUALITY_CLASSES.items(), spec.QUALITY_COUNT_COLUMNS, strict=True
        )
    }
