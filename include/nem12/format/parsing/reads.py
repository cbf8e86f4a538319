"""From a NEM13 chunk's records to frames of its 250 reads and 550 B2B details; no rules here.

In a NEM13 file a block is one 250 record and the 550 after it (``block`` in
``records.records_frame`` counts 250s), so an error rejects one read.
"""

from __future__ import annotations

import polars as pl

from nem12.format import spec
from nem12.format.findings import CHUNK_ENGINE
from nem12.format.parsing.explode import nem_datetime

#: Text fields of a read that may be empty in an accepted read (empty is null).
_OPTIONAL_TEXT = (
    "register_id",
    "mdm_data_stream_identifier",
    "meter_serial_number",
    "previous_reason_code",
    "previous_reason_description",
    "current_reason_code",
    "current_reason_description",
    *spec.READ_B2B_FIELDS,
)
_READS = ("previous", "current")


#: Fields kept under a raw name because a parsed column takes theirs.
_RAW_NAMED = {
    "previous_register_read": "previous_text",
    "current_register_read": "current_text",
    "previous_register_read_datetime": "previous_datetime_raw",
    "current_register_read_datetime": "current_datetime_raw",
    "quantity": "quantity_raw",
    "uom": "uom_raw",
    "next_scheduled_read_date": "nsrd_raw",
    "update_datetime": "update_raw",
    "msats_load_datetime": "msats_raw",
}


def _nem_timestamp(text: pl.Expr) -> pl.Expr:
    """YYYYMMDDHHMMSS, or YYYYMMDDHHMM (read as its minute); null if it is neither,
    or not a real time. One parse for both forms."""
    return nem_datetime(
        pl.when(text.str.contains(r"^\d{14}$"))
        .then(text)
        .when(text.str.contains(r"^\d{12}$"))
        .then(text + "00"),
        "%Y%m%d%H%M%S",
    )


def _datetime_14(text: pl.Expr) -> pl.Expr:
    return nem_datetime(pl.when(text.str.contains(r"^\d{14}$")).then(text), "%Y%m%d%H%M%S")


def _register_read(text: pl.Expr) -> pl.Expr:
    return pl.when(text.str.contains(spec.REGISTER_READ_PATTERN)).then(
        text.cast(spec.VALUE_DTYPE, strict=False)
    )


def reads_frame(records: pl.DataFrame) -> pl.DataFrame:
    """The chunk's 250 records: every field as written, and the ones read as numbers and times.

    ``shape_ok``: the record has the fields up to UOM and none beyond the 23rd;
    only such reads are judged field by field and can be accepted.
    """
    last = f"field_{spec.READ_MAX_FIELDS}"  # the rest of the line, past the 23rd field
    fields = [f"field_{i}" for i in range(spec.READ_MAX_FIELDS + 1)]
    return (
        records.lazy()
        .filter(pl.col("record_type") == "250")
        # One pass over each line (``decode`` took stray spaces off already): its
        # fields up to the 23rd (null past the line's last), the rest kept whole.
        .select("block", "line", "record_type", pl.col("raw").str.splitn(",", len(fields)))
        .unnest("raw")
        .select(
            "block",
            "line",
            "record_type",
            field_count=(
                pl.sum_horizontal(pl.col(f).is_not_null() for f in fields)
                + pl.col(last).str.count_matches(",", literal=True).fill_null(0)
            ).cast(pl.Int32),
            extra=pl.col(last).str.strip_chars(",").fill_null("") != "",
            **{
                _RAW_NAMED.get(name, name): pl.col(f"field_{index}").fill_null("")
                for name, index in spec.READ_FIELDS.items()
            },
        )
        .with_columns(
            shape_ok=(pl.col("field_count") >= spec.READ_MIN_FIELDS) & ~pl.col("extra"),
            uom=pl.col("uom_raw")
            .str.to_uppercase()
            .replace_strict(spec.UNITS_OF_MEASURE, default=None, return_dtype=pl.String),
            quantity=pl.when(pl.col("quantity_raw").str.contains(spec.QUANTITY_PATTERN)).then(
                pl.col("quantity_raw").cast(spec.VALUE_DTYPE, strict=False)
            ),
            next_scheduled_read_date=pl.when(pl.col("nsrd_raw").str.contains(r"^\d{8}$")).then(
                pl.col("nsrd_raw").str.to_date("%Y%m%d", strict=False)
            ),
            update_datetime=_nem_timestamp(pl.col("update_raw")),
            msats_load_datetime=_datetime_14(pl.col("msats_raw")),
            **{f"{read}_register_read": _register_read(pl.col(f"{read}_text")) for read in _READS},
            **{
                f"{read}_register_read_datetime": _nem_timestamp(pl.col(f"{read}_datetime_raw"))
                for read in _READS
            },
        )
        .collect(engine=CHUNK_ENGINE)
    )


def read_qualities(reads: pl.DataFrame) -> pl.DataFrame:
    """Each readable read's two quality fields as rows (``which``: Previous or Current),
    in the columns the quality checks of 300 and 400 records read."""
    rows = []
    for read in _READS:
        quality = pl.col(f"{read}_quality_method")
        rows.append(
            reads.filter(pl.col("shape_ok")).select(
                "line",
                "block",
                "nmi",
                "record_type",
                which=pl.lit(read.capitalize()),
                quality_method=quality,
                reason_code=pl.col(f"{read}_reason_code"),
                reason_description=pl.col(f"{read}_reason_description"),
                quality_ok=quality.str.contains(spec.READ_QUALITY_PATTERN),
            )
        )
    return pl.concat(rows).with_columns(quality_checked=pl.col("quality_ok"))


def _nth_of_block() -> pl.Expr:
    """1 for a block's first row, 2 for its second...: blocks only ascend within a
    chunk, so this needs no grouping (``over`` was most of the 550 frame's cost)."""
    block = pl.col("block")
    row = pl.int_range(pl.len())
    return row - pl.when(block.ne_missing(block.shift())).then(row).forward_fill() + 1


def read_b2b_frame(records: pl.DataFrame) -> pl.DataFrame:
    """The chunk's 550 records after a 250: their fields, and which 550 of the read each is."""
    raw = pl.col("raw")
    split = raw.str.splitn(",", spec.READ_B2B_MAX_FIELDS + 1).struct
    rest = split.field(f"field_{spec.READ_B2B_MAX_FIELDS}")
    return (
        records.lazy()
        .filter(pl.col("record_type") == "550", pl.col("block") > 0)
        .select(
            "block",
            "line",
            "record_type",
            field_count=(raw.str.count_matches(",", literal=True) + 1).cast(pl.Int32),
            extra=rest.str.strip_chars(",").fill_null("") != "",
            **{
                name: split.field(f"field_{index}").str.strip_chars().fill_null("")
                for name, index in spec.READ_B2B_FIELDS.items()
            },
        )
        .with_columns(nth=_nth_of_block())
        .collect(engine=CHUNK_ENGINE)
    )


def accepted_reads(
    reads: pl.DataFrame, b2b: pl.DataFrame, rejected_blocks: set[int]
) -> pl.DataFrame:
    """The reads no error rejected, with their first 550, in ``spec.READ_SCHEMA``."""
    first_b2b = b2b.filter(pl.col("nth") == 1).select("block", *spec.READ_B2B_FIELDS)
    kept = reads.filter(pl.col("shape_ok"))
    if rejected_blocks:
        kept = kept.filter(~pl.col("block").is_in(list(rejected_blocks)))
    texts = {
        "previous_register_read_text": pl.col("previous_text"),
        "current_register_read_text": pl.col("current_text"),
        "line_number": pl.col("line"),
    }
    return (
        kept.join(first_b2b, on="block", how="left", maintain_order="left")
        .with_columns(
            pl.when(pl.col(c) != "").then(pl.col(c)).alias(c)
            for c in _OPTIONAL_TEXT
            if c in spec.READ_SCHEMA
        )
        .select(
            (texts[c] if c in texts else pl.col(c)).cast(dtype).alias(c)
            for c, dtype in spec.READ_SCHEMA.items()
        )
    )


def read_keys(reads: pl.DataFrame) -> pl.DataFrame:
    """What makes a read the same read: nmi, nmi_suffix, CurrentRegisterReadDateTime
    (as written, so an unreadable one is compared as text)."""
    return reads.select("nmi", "nmi_suffix", "current_datetime_raw")


def read_record_frame(file: str, records: pl.DataFrame, reads: pl.DataFrame) -> pl.DataFrame:
    """One row per record, as ``records.record_frame`` has it for NEM12, for the
    record-level validation report: a 550 carries the NMI of the 250 it follows."""
    by_block = reads.select("block", "nmi", "nmi_suffix", "direction_indicator", "uom")
    quality = reads.select("line", quality_method="current_quality_method")
    return (
        records.select(
            "line",
            "record_type",
            "block",
            field_count=pl.col("raw").str.count_matches(",", literal=True).cast(pl.Int32) + 1,
        )
        .join(by_block, on="block", how="left", maintain_order="left")
        .join(quality, on="line", how="left", maintain_order="left")
        .select(
            pl.lit(file).alias("file"),
            pl.lit("NEM13").alias("version"),
            "line",
            "record_type",
            "field_count",
            pl.when(pl.col("nmi") != "").then("nmi").alias("nmi"),
            pl.when(pl.col("nmi_suffix") != "").then("nmi_suffix").alias("nmi_suffix"),
            interval_length=pl.lit(None, pl.Int16),
            uom="uom",
            interval_date=pl.lit(None, pl.Date),
            quality_method="quality_method",
            value_count=pl.lit(None, pl.Int32),
            expected_value_count=pl.lit(None, pl.Int32),
            direction_indicator="direction_indicator",
        )
    )
