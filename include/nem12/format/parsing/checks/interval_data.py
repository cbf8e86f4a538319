"""Checks of the 300 interval data records: shape, IntervalDate, quality fields, timestamps.

The quality flag checks also read the 400 events and NEM13's read qualities
(``quality_checked`` rows of each); the timestamp checks also read NEM13's 250s.
"""

from __future__ import annotations

import polars as pl

from nem12.format import spec
from nem12.format.parsing.checks.registry import check, finding_rows
from nem12.format.parsing.records import quality_position

N = pl.col("intervals")
DATE = pl.col("interval_date")
UPDATE = pl.col("update_raw").fill_null("")
MSATS = pl.col("msats_raw").fill_null("")
SHAPED = pl.col("shape_ok")
#: A day of a known IntervalLength that cannot be read.
MISSHAPEN = N.is_not_null() & ~SHAPED


def _misshapen(days: pl.LazyFrame) -> pl.LazyFrame:
    """Days of a known IntervalLength that cannot be read, with where a QualityMethod is."""
    return days.filter(MISSHAPEN).with_columns(first_quality=quality_position())


def _quality_after_values(days: pl.LazyFrame) -> pl.LazyFrame:
    """Misshapen days whose value count is not to blame."""
    first = pl.col("first_quality")
    return _misshapen(days).filter(first.is_null() | (first == N))


@check("value_count", on="days", when=MISSHAPEN)
def value_count(days: pl.LazyFrame) -> pl.LazyFrame:
    first = pl.col("first_quality")
    return finding_rows(
        _misshapen(days).filter(first.is_not_null(), first != N),
        pl.format(
            "300 record has {} interval values; IntervalLength {} needs {}",
            first,
            pl.col("interval_length"),
            N,
        ),
        "300",
    )


@check("quality_method", on="days", when=MISSHAPEN)
def quality_method(days: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        _quality_after_values(days).filter(~pl.col("quality_ok")),
        pl.format(
            "QualityMethod '{}' after {} values is not valid (or the value count is wrong)",
            pl.col("quality_method").fill_null("").str.slice(0, 20),
            N,
        ),
        "300",
    )


@check("record_fields", on="days", when=MISSHAPEN)
def record_fields(days: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        _quality_after_values(days).filter(pl.col("quality_ok")),
        pl.format(
            "300 record has {} fields; IntervalLength {} allows at most {}",
            pl.col("filled"),
            pl.col("interval_length"),
            N + 7,
        ),
        "300",
    )


DATE_RAW = pl.col("date_raw").fill_null("")
BAD_DATE = DATE.is_null() | ~DATE_RAW.str.contains(r"^\d{8}$")


@check("interval_date", on="days", when=BAD_DATE)
def interval_date(days: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        days.filter(BAD_DATE),
        pl.format("IntervalDate '{}' is not a real date", DATE_RAW),
        "300",
    )


# --- quality flags, on 300 days and 400 events ------------------------------------
FLAG = pl.col("quality_method").str.slice(0, 1)
REASON = pl.col("reason_code").fill_null("")
REASON_NUMBER = REASON.cast(pl.Int32, strict=False)


def _flagged(rows: pl.LazyFrame, condition: pl.Expr, message: pl.Expr) -> pl.LazyFrame:
    return finding_rows(rows.filter(pl.col("quality_checked"), condition), message)


NO_METHOD = FLAG.is_in(spec.FLAGS_NEEDING_METHOD) & (pl.col("quality_method").str.slice(1) == "")


@check("quality_method_number", on=("days", "events", "read_qualities"), when=NO_METHOD)
def quality_method_number(rows: pl.LazyFrame) -> pl.LazyFrame:
    return _flagged(
        rows,
        NO_METHOD,
        pl.format("QualityMethod '{}' needs a two-digit method number", pl.col("quality_method")),
    )


NO_REASON = FLAG.is_in(spec.FLAGS_NEEDING_REASON) & (REASON == "")


@check("reason_code_required", on=("days", "events", "read_qualities"), when=NO_REASON)
def reason_code_required(rows: pl.LazyFrame) -> pl.LazyFrame:
    return _flagged(
        rows,
        NO_REASON,
        pl.format("QualityMethod '{}' needs a ReasonCode", pl.col("quality_method")),
    )


UNKNOWN_REASON = (REASON != "") & ~REASON_NUMBER.is_in(list(spec.REASON_CODES)).fill_null(False)


@check("reason_code_invalid", on=("days", "events", "read_qualities"), when=UNKNOWN_REASON)
def reason_code_invalid(rows: pl.LazyFrame) -> pl.LazyFrame:
    return _flagged(
        rows,
        UNKNOWN_REASON,
        pl.format("ReasonCode '{}' is not an MDFF reason code", REASON.str.slice(0, 20)),
    )


VARIABLE_REASON = (FLAG == "V") & (REASON != "")


@check("reason_code_on_variable", on=("days", "events"), when=VARIABLE_REASON)
def reason_code_on_variable(rows: pl.LazyFrame) -> pl.LazyFrame:
    return _flagged(
        rows,
        VARIABLE_REASON,
        pl.format("QualityMethod V with ReasonCode '{}'", REASON.str.slice(0, 20)),
    )


NO_DESCRIPTION = (REASON_NUMBER == 0) & (pl.col("reason_description").fill_null("") == "")


@check("reason_description_required", on=("days", "events", "read_qualities"), when=NO_DESCRIPTION)
def reason_description_required(rows: pl.LazyFrame) -> pl.LazyFrame:
    return _flagged(
        rows,
        NO_DESCRIPTION,
        pl.lit("ReasonCode 0 (free text) without a ReasonDescription"),
    )


# --- UpdateDateTime and MSATSLoadDateTime, of readable days -------------------------
def _valid(text: pl.Expr, digits: int, fmt: str) -> pl.Expr:
    return (
        text.str.contains(rf"^\d{{{digits}}}$")
        & text.str.to_datetime(fmt, strict=False).is_not_null()
    )


UPDATE_14 = _valid(UPDATE, 14, "%Y%m%d%H%M%S")
UPDATE_12 = _valid(UPDATE, 12, "%Y%m%d%H%M")
BAD_UPDATE = SHAPED & (UPDATE != "") & ~UPDATE_14 & ~UPDATE_12
# A 250's timestamps are read already (``reads.reads_frame``, null unless valid as
# above), so its conditions test those instead of parsing again.
READ_UPDATE = pl.col("update_datetime")
READ_MSATS = pl.col("msats_load_datetime")


@check(
    "update_datetime_invalid",
    on=("days", "reads"),
    when={"days": BAD_UPDATE, "reads": SHAPED & (UPDATE != "") & READ_UPDATE.is_null()},
)
def update_datetime_invalid(days: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        days.filter(BAD_UPDATE),
        pl.format("UpdateDateTime '{}' is not YYYYMMDDHHMMSS", UPDATE.str.slice(0, 20)),
    )


NONSTANDARD_UPDATE = SHAPED & ((UPDATE == "") | UPDATE_12)


@check(
    "update_datetime_nonstandard",
    on=("days", "reads"),
    when={
        "days": NONSTANDARD_UPDATE,
        "reads": SHAPED
        & ((UPDATE == "") | ((UPDATE.str.len_bytes() == 12) & READ_UPDATE.is_not_null())),
    },
)
def update_datetime_nonstandard(days: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        days.filter(NONSTANDARD_UPDATE),
        pl.when(UPDATE == "")
        .then(pl.lit("UpdateDateTime is empty: this version sorts oldest"))
        .otherwise(pl.format("UpdateDateTime '{}' has 12 digits, read as YYYYMMDDHHMM", UPDATE)),
    )


BAD_MSATS = SHAPED & (MSATS != "") & ~_valid(MSATS, 14, "%Y%m%d%H%M%S")


@check(
    "msats_datetime_invalid",
    on=("days", "reads"),
    when={"days": BAD_MSATS, "reads": SHAPED & (MSATS != "") & READ_MSATS.is_null()},
)
def msats_datetime_invalid(days: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        days.filter(BAD_MSATS),
        pl.format("MSATSLoadDateTime '{}' is not YYYYMMDDHHMMSS", MSATS.str.slice(0, 20)),
    )


# --- IntervalDates of a data stream -------------------------------------------------
REPEATED_DATE = DATE.is_not_null() & pl.col("seen_before")


@check("interval_date_repeated", on="days", when=REPEATED_DATE)
def interval_date_repeated(days: pl.LazyFrame) -> pl.LazyFrame:
    """A stream's IntervalDate seen before in this file (``seen_before``, kept by the driver)."""
    return finding_rows(
        days.filter(REPEATED_DATE),
        pl.format(
            "IntervalDate {} of suffix {} appears earlier in this file",
            DATE.dt.strftime("%Y%m%d"),
            pl.col("nmi_suffix").fill_null(""),
        ),
        "300",
    )


@check("interval_date_order", on="days")
def interval_date_order(days: pl.LazyFrame) -> pl.LazyFrame:
    dated = days.filter(DATE.is_not_null())
    return finding_rows(
        dated.filter(DATE < DATE.shift(1).over("block")),
        pl.format(
            "IntervalDate {} comes after a later date of the same stream",
            DATE.dt.strftime("%Y%m%d"),
        ),
        "300",
    )
