"""Checks of NEM13's 250 basic meter data and 550 B2B details records (``reads`` frames).

Rules a 250 shares with NEM12 (NMI, suffix, UOM, quality fields, timestamps)
keep their ids; the quality fields are checked by the 300/400 checks over
``read_qualities``, the timestamps by the 300 checks over ``reads``.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from nem12.format import spec
from nem12.format.parsing.checks.registry import check, finding_rows

SHAPED = pl.col("shape_ok")
NMI = pl.col("nmi")
READS = ("previous", "current")


@check("record_fields", on="reads", when=~SHAPED)
def record_fields(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        reads.filter(~SHAPED),
        pl.format(
            "250 record has {} fields; it needs NMI to UOM ({}) and at most {}",
            pl.col("field_count"),
            pl.lit(spec.READ_MIN_FIELDS),
            pl.lit(spec.READ_MAX_FIELDS),
        ),
    )


NO_NMI = SHAPED & (NMI == "")


@check("nmi_missing", on="reads", when=NO_NMI)
def nmi_missing(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(reads.filter(NO_NMI), pl.lit("NMI is empty: the read cannot be attributed"))


BAD_NMI = SHAPED & (NMI != "") & ~NMI.str.contains(spec.NMI_PATTERN)


@check("nmi_format", on="reads", when=BAD_NMI)
def nmi_format(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        reads.filter(BAD_NMI),
        pl.format("NMI '{}' is not 10 characters of A-Z (no I, O) and 0-9", NMI),
    )


NO_SUFFIX = SHAPED & (pl.col("nmi_suffix") == "")


@check("nmi_suffix_missing", on="reads", when=NO_SUFFIX)
def nmi_suffix_missing(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        reads.filter(NO_SUFFIX),
        pl.lit("NMISuffix is empty: the read cannot be told apart by data stream"),
    )


DIRECTION = pl.col("direction_indicator")
BAD_DIRECTION = SHAPED & ~DIRECTION.is_in(list(spec.DIRECTION_INDICATORS))


@check("direction_indicator", on="reads", when=BAD_DIRECTION)
def direction_indicator(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        reads.filter(BAD_DIRECTION),
        pl.format("DirectionIndicator '{}' is not I or E", DIRECTION.str.slice(0, 20)),
    )


BAD_UOM = SHAPED & pl.col("uom").is_null()


@check("uom_invalid", on="reads", when=BAD_UOM)
def uom_invalid(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        reads.filter(BAD_UOM),
        pl.format("UOM '{}' is not an MDFF unit", pl.col("uom_raw").str.slice(0, 20)),
    )


def _either_read(failing: Callable[[str], pl.Expr]) -> pl.Expr:
    """Where the previous or the current read of a readable 250 fails: a check's ``when``."""
    return SHAPED & (failing("previous") | failing("current"))


def _each_read(
    reads: pl.LazyFrame, failing: Callable[[str], pl.Expr], message: str, raw: str
) -> pl.LazyFrame:
    """Findings for the previous and the current read where ``failing(read)`` holds;
    the message names the read and quotes its field as written (``raw``)."""
    found = []
    for read in READS:
        text = pl.col(raw.format(read=read))
        found.append(
            finding_rows(
                reads.filter(SHAPED, failing(read)),
                pl.format(message, pl.lit(read.capitalize()), text.str.slice(0, 24)),
            )
        )
    return pl.concat(found)


def _unreadable(read: str) -> pl.Expr:
    return pl.col(f"{read}_register_read").is_null()


@check("register_read_invalid", on="reads", when=_either_read(_unreadable))
def register_read_invalid(reads: pl.LazyFrame) -> pl.LazyFrame:
    return _each_read(
        reads,
        _unreadable,
        "{}RegisterRead '{}' is not a register read (digits, optional decimals)",
        "{read}_text",
    )


def _no_datetime(read: str) -> pl.Expr:
    return pl.col(f"{read}_register_read_datetime").is_null()


@check("read_datetime_invalid", on="reads", when=_either_read(_no_datetime))
def read_datetime_invalid(reads: pl.LazyFrame) -> pl.LazyFrame:
    return _each_read(
        reads,
        _no_datetime,
        "{}RegisterReadDateTime '{}' is not YYYYMMDDHHMMSS",
        "{read}_datetime_raw",
    )


def _twelve_digits(read: str) -> pl.Expr:
    return pl.col(f"{read}_datetime_raw").str.contains(r"^\d{12}$")


def _twelve_bytes(read: str) -> pl.Expr:
    return pl.col(f"{read}_datetime_raw").str.len_bytes() == 12


@check("read_datetime_nonstandard", on="reads", when=_either_read(_twelve_bytes))
def read_datetime_nonstandard(reads: pl.LazyFrame) -> pl.LazyFrame:
    return _each_read(
        reads,
        _twelve_digits,
        "{}RegisterReadDateTime '{}' has 12 digits, read as YYYYMMDDHHMM",
        "{read}_datetime_raw",
    )


@check("quality_method", on="read_qualities", when=~pl.col("quality_ok"))
def read_quality_method(qualities: pl.LazyFrame) -> pl.LazyFrame:
    quality = pl.col("quality_method")
    return finding_rows(
        qualities.filter(~pl.col("quality_ok")),
        pl.format(
            "{}QualityMethod '{}' is not A, E, F or S with an optional two-digit method{}",
            pl.col("which"),
            quality.str.slice(0, 20),
            pl.when(quality.str.slice(0, 1).is_in(["V", "N"]))
            .then(pl.lit(" (V and N are for interval data, not NEM13)"))
            .otherwise(pl.lit("")),
        ),
    )


PERIOD_REVERSED = SHAPED & (
    pl.col("previous_register_read_datetime") >= pl.col("current_register_read_datetime")
)


@check("read_period_order", on="reads", when=PERIOD_REVERSED)
def read_period_order(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        reads.filter(PERIOD_REVERSED),
        pl.format(
            "PreviousRegisterReadDateTime {} is not before CurrentRegisterReadDateTime {}",
            pl.col("previous_datetime_raw"),
            pl.col("current_datetime_raw"),
        ),
    )


PREVIOUS_QUALITY = pl.col("previous_quality_method")
PREVIOUS_ESTIMATED = SHAPED & PREVIOUS_QUALITY.str.starts_with("E")


@check("previous_read_estimated", on="reads", when=PREVIOUS_ESTIMATED)
def previous_read_estimated(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        reads.filter(PREVIOUS_ESTIMATED),
        pl.format("PreviousQualityMethod '{}': an estimate as the previous read", PREVIOUS_QUALITY),
    )


QUANTITY = pl.col("quantity")
WRITTEN_QUANTITY = pl.col("quantity_raw").str.slice(0, 24)


NO_QUANTITY = SHAPED & QUANTITY.is_null()


@check("quantity_invalid", on="reads", when=NO_QUANTITY)
def quantity_invalid(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        reads.filter(NO_QUANTITY),
        pl.format("Quantity '{}' is not a decimal number", WRITTEN_QUANTITY),
    )


NEGATIVE_QUANTITY = SHAPED & (QUANTITY < 0)


@check("quantity_negative", on="reads", when=NEGATIVE_QUANTITY)
def quantity_negative(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        reads.filter(NEGATIVE_QUANTITY),
        pl.format("Quantity {} is negative", WRITTEN_QUANTITY),
    )


def _dial_rollover() -> pl.Expr:
    """10 to the number of whole digits of the current read: where its dial rolls over."""
    digits = pl.col("current_text").str.split(".").list.first().str.len_chars()
    return pl.lit(10, pl.Int64).pow(digits.cast(pl.Int64)).cast(spec.VALUE_DTYPE)


ADVANCE = pl.col("current_register_read") - pl.col("previous_register_read")
#: Cheap to test on a clean chunk: the rollover is worked out only where it fails.
QUANTITY_NOT_ADVANCE = SHAPED & pl.col("uom").is_in(spec.ENERGY_UNITS) & (QUANTITY != ADVANCE)


@check("quantity_mismatch", on="reads", when=QUANTITY_NOT_ADVANCE)
def quantity_mismatch(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        reads.filter(QUANTITY_NOT_ADVANCE, QUANTITY != ADVANCE + _dial_rollover()),
        pl.format(
            "Quantity {} differs from CurrentRegisterRead {} - PreviousRegisterRead {}"
            " (a multiplier or a rollover the dial's digits do not explain?)",
            WRITTEN_QUANTITY,
            pl.col("current_text"),
            pl.col("previous_text"),
        ),
    )


NEXT_READ_DATE = pl.col("nsrd_raw")
BAD_NEXT_READ_DATE = SHAPED & (NEXT_READ_DATE != "") & pl.col("next_scheduled_read_date").is_null()


@check("next_read_date_invalid", on="reads", when=BAD_NEXT_READ_DATE)
def next_read_date_invalid(reads: pl.LazyFrame) -> pl.LazyFrame:
    return finding_rows(
        reads.filter(BAD_NEXT_READ_DATE),
        pl.format("NextScheduledReadDate '{}' is not a real date", NEXT_READ_DATE.str.slice(0, 20)),
    )


REPEATED = SHAPED & pl.col("repeated")


@check("read_repeated", on="reads", when=REPEATED)
def read_repeated(reads: pl.LazyFrame) -> pl.LazyFrame:
    """A key seen before in this file (``repeated``, kept by the driver across chunks)."""
    return finding_rows(
        reads.filter(REPEATED),
        pl.format(
            "a read of suffix {} at {} appears earlier in this file",
            pl.col("nmi_suffix"),
            pl.col("current_datetime_raw"),
        ),
    )


# --- 550 B2B details --------------------------------------------------------------
def _b2b_rows(b2b: pl.LazyFrame, message: pl.Expr) -> pl.LazyFrame:
    return b2b.select("line", "block", "record_type", nmi=pl.lit(None, pl.String), message=message)


@check("record_fields", on="read_b2b", when=pl.col("extra"))
def b2b_record_fields(b2b: pl.LazyFrame) -> pl.LazyFrame:
    return _b2b_rows(
        b2b.filter(pl.col("extra")),
        pl.format(
            "550 record has {} fields; it has at most {}",
            pl.col("field_count"),
            pl.lit(spec.READ_B2B_MAX_FIELDS),
        ),
    )


def _bad_trans_code(read: str) -> pl.Expr:
    code = pl.col(f"{read.lower()}_trans_code")
    return (code != "") & ~code.is_in(spec.TRANS_CODES)


@check(
    "trans_code_invalid",
    on="read_b2b",
    when=_bad_trans_code("Previous") | _bad_trans_code("Current"),
)
def trans_code_invalid(b2b: pl.LazyFrame) -> pl.LazyFrame:
    found = []
    for read in ("Previous", "Current"):
        code = pl.col(f"{read.lower()}_trans_code")
        found.append(
            _b2b_rows(
                b2b.filter(_bad_trans_code(read)),
                pl.format("{}TransCode '{}' is not a transaction code", pl.lit(read), code),
            )
        )
    return pl.concat(found)


@check("b2b_repeated", on="read_b2b", when=pl.col("nth") > 1)
def b2b_repeated(b2b: pl.LazyFrame) -> pl.LazyFrame:
    return _b2b_rows(
        b2b.filter(pl.col("nth") > 1),
        pl.format("550 number {} after one 250; only the first is kept", pl.col("nth")),
    )
