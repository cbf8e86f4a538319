"""From a chunk's bytes to frames of its records' fields, per record type; no rules here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache

import polars as pl

from nem12.format import spec
from nem12.format.findings import CHUNK_ENGINE
from nem12.format.parsing.result import Header
from nem12.format.reading import Chunk

F = pl.col("fields")
#: Where a stray space can be on a line: beside a comma, at either end ("stray
#: spaces around dates"); free text (a ReasonDescription) has spaces between words.
_STRAY_SPACE = r"[ \t],|,[ \t]|[ \t]\r|^[ \t]|[ \t]$"


def _without_stray_spaces(raw: pl.Expr) -> pl.Expr:
    """The line without spaces or tabs beside a comma, a CR or either end."""
    return (
        raw.str.replace_all(r"[ \t]+([,\r])", "${1}")
        .str.replace_all(r",[ \t]+", ",")
        .str.strip_chars(" \t")
    )


def decode(chunk: Chunk) -> tuple[pl.Series, bool]:
    """The chunk's lines (``raw``) without BOM, stray spaces or CRs; True if the chunk
    was read as Latin-1 (it is not UTF-8)."""
    data = chunk.data
    if chunk.first_line == 1 and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if data.endswith(b"\n"):
        data = data[:-1]
    latin1 = False
    try:
        text = pl.Series("raw", [data], pl.Binary).cast(pl.String)
    except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError):  # not UTF-8
        text, latin1 = pl.Series("raw", [data.decode("latin-1")]), True
    lines = text.str.split("\n").explode()
    if b" " in data or b"\t" in data:
        stray = lines.str.contains(_STRAY_SPACE)
        if stray.any():
            lines = (
                lines.to_frame()
                .select(pl.when(stray).then(_without_stray_spaces(pl.col("raw"))).otherwise("raw"))
                .to_series()
            )
    if b"\r" in data:
        lines = lines.str.replace_all("\r", "", literal=True)
    return lines, latin1


def split_fields(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """Add the list of fields; done per record type so big lists are split once."""
    return frame.with_columns(fields=pl.col("raw").str.split(","))


def field(i: int | pl.Expr) -> pl.Expr:
    return F.list.get(i, null_on_oob=True).str.strip_chars()


@cache
def quality_position() -> pl.Expr:
    """Index of the first field after the date that looks like a QualityMethod: the value count."""
    return (
        F.list.slice(2)
        .list.eval(
            pl.int_range(pl.len()).filter(
                pl.element().str.strip_chars().str.contains(spec.QUALITY_PATTERN)
            )
        )
        .list.first()
    )


def records_frame(
    lines: pl.Series, first_line: int, blocks: int, days: int, block_record: str = "200"
) -> pl.DataFrame:
    """One row per line: line, raw, record_type, block and day numbers continuing the file's.

    A block opens at each ``block_record`` (200 in NEM12, 250 in NEM13).
    """
    return (
        lines.to_frame()
        .lazy()
        .with_row_index("line", offset=first_line)
        .with_columns(pl.col("line").cast(pl.Int64))
        .with_columns(record_type=pl.col("raw").str.extract(r"^([^,]*)", 1))
        .with_columns(
            block=(pl.col("record_type") == block_record).cum_sum().cast(pl.Int64) + blocks,
            day=(pl.col("record_type") == "300").cum_sum().cast(pl.Int64) + days,
        )
        .collect(engine=CHUNK_ENGINE)
    )


def chunk_records(
    chunk: Chunk, blocks: int, days: int, block_record: str
) -> tuple[pl.DataFrame, bool]:
    """The chunk's ``records_frame`` of its decoded lines; True if it was read as Latin-1."""
    lines, latin1 = decode(chunk)
    return records_frame(lines, chunk.first_line, blocks, days, block_record), latin1


def last_block(records: pl.DataFrame, before: int) -> int:
    """The number of the chunk's last block: ``before`` if the chunk opens none."""
    return int(records.get_column("block").max() or before)


@dataclass(frozen=True)
class HeaderRecord:
    """The file's first record, read as a 100 header: its fields as written, and the file."""

    file: str
    line: int
    record_type: str
    version: str
    datetime: str
    from_participant: str
    to_participant: str

    @classmethod
    def of(cls, file: str, line: int, record_type: str, raw: str) -> HeaderRecord:
        fields = [f.strip() for f in raw.split(",")] + [""] * 5
        return cls(file, line, record_type, *fields[1:5])

    def header(self) -> Header:
        version = self.version.upper()
        return Header(
            version=version or None,
            datetime=header_datetime(self.datetime) if version in spec.RECORD_TYPES_OF else None,
            from_participant=self.from_participant or None,
            to_participant=self.to_participant or None,
            line=self.line,
        )


def header_datetime(text: str) -> datetime | None:
    """The header's DateTime (YYYYMMDDHHMM), None if it is not one."""
    if not re.fullmatch(r"\d{12}", text):
        return None
    try:
        return datetime.strptime(text, "%Y%m%d%H%M")
    except ValueError:
        return None


def blocks_frame(records: pl.DataFrame) -> pl.DataFrame:
    """The chunk's 200 records: the data stream's fields as written and as read."""
    return (
        records.lazy()
        .filter(pl.col("record_type") == "200")
        .pipe(split_fields)
        .select(
            "block",
            "line",
            *[field(i).alias(c) for c, i in spec.STREAM_TEXT_FIELDS.items()],
            nmi_configuration=field(2),
            mdm_data_stream_identifier=field(5),
            uom_raw=field(7),
            interval_length_raw=field(8),
            next_scheduled_read_date=field(9),
            field_count=F.list.len(),
            extra=F.list.slice(10).list.eval(pl.element().str.strip_chars() != "").list.any(),
        )
        .with_columns(
            interval_length=pl.col("interval_length_raw").cast(pl.Int16, strict=False),
            uom=pl.col("uom_raw")
            .str.to_uppercase()
            .replace_strict(spec.UNITS_OF_MEASURE, default=None, return_dtype=pl.String),
        )
        .collect(engine=CHUNK_ENGINE)
    )


def usable_blocks(new: pl.DataFrame, open_block: pl.DataFrame | None) -> pl.DataFrame:
    """The blocks the chunk's 300s may belong to: the open one and the new ones.

    An IntervalLength that is not 5, 15 or 30 becomes null, so its days have no shape.
    """
    new = new.with_columns(
        interval_length=pl.when(pl.col("interval_length").is_in(spec.INTERVAL_LENGTHS)).then(
            pl.col("interval_length")
        )
    )
    if open_block is not None:
        new = pl.concat([open_block, new], how="vertical_relaxed")
    return new


def holds(records: pl.DataFrame, record_type: str) -> bool:
    """Whether the chunk has a record of ``record_type``: one comparison, which spares
    the frames of the record types a chunk lacks (most files have no 400 or 500)."""
    return bool((records.get_column("record_type") == record_type).any())


def b2b_frame(records: pl.DataFrame, blocks: pl.DataFrame) -> pl.DataFrame | None:
    """The chunk's 500 B2B details records, with the NMI of their block; None if it has none."""
    if not holds(records, "500"):
        return None
    return (
        records.lazy()
        .filter(pl.col("record_type") == "500", pl.col("block") > 0)
        .pipe(split_fields)
        .select(
            "block",
            "line",
            trans_code=field(1),
            ret_service_order=field(2),
            read_datetime=field(3),
            index_read=field(4),
        )
        .join(
            blocks.lazy().select("block", "nmi", "nmi_suffix"),
            on="block",
            how="left",
            maintain_order="left",
        )
        .drop("block")
        .collect(engine=CHUNK_ENGINE)
    )


def days_frame(records: pl.DataFrame, blocks: pl.DataFrame) -> pl.DataFrame:
    """The chunk's 300 records in blocks, split at the value count their IntervalLength gives.

    ``shape_ok`` says the record has that many values, a QualityMethod after them
    and no more fields than allowed: only such days are read into readings, and
    only their quality fields are checked (``quality_checked``).
    """
    n = pl.col("intervals")
    raw = pl.col("raw")
    # Fields up to the last non-empty one: padding is trailing commas (spaces are gone).
    last_filled = F.list.len() - (
        raw.str.len_bytes() - raw.str.strip_chars_end(",").str.len_bytes()
    )
    return (
        records.lazy()
        .filter(pl.col("record_type") == "300", pl.col("block") > 0)
        .pipe(split_fields)
        .join(
            blocks.lazy().select("block", *spec.STREAM_COLUMNS),
            on="block",
            how="left",
            maintain_order="left",
        )
        .with_columns(intervals=(spec.MINUTES_PER_DAY // pl.col("interval_length")).cast(pl.Int32))
        .with_columns(
            filled=last_filled.cast(pl.Int32),
            date_raw=field(1),
            quality_method=field(n + 2),
            reason_code=field(n + 3),
            reason_description=field(n + 4),
            update_raw=field(n + 5),
            msats_raw=field(n + 6),
        )
        .with_columns(
            interval_date=pl.col("date_raw").str.to_date("%Y%m%d", strict=False),
            quality_ok=pl.col("quality_method").fill_null("").str.contains(spec.QUALITY_PATTERN),
        )
        .with_columns(
            shape_ok=n.is_not_null() & pl.col("quality_ok") & (pl.col("filled") <= n + 7),
        )
        .with_columns(quality_checked=pl.col("shape_ok"))
        .collect(engine=CHUNK_ENGINE)
    )


def events_frame(records: pl.DataFrame, days: pl.DataFrame) -> pl.DataFrame | None:
    """The chunk's 400 records with the day they follow; None if it has neither 400s nor V days.

    ``expected``: the 400 follows a readable 300 with QualityMethod V;
    ``range_ok``: its intervals lie within the day; ``quality_ok``: its QualityMethod
    is one a 400 may have; ``quality_checked``: its quality fields are checked.
    """
    anchor = (
        pl.when(pl.col("record_type").is_in(["200", "300", "500"]))
        .then(pl.col("record_type"))
        .forward_fill()
    )
    if (
        not holds(records, "400")
        and not days.get_column("quality_method").str.starts_with("V").any()
    ):
        return None
    rows = (
        records.lazy()
        .with_columns(anchor=anchor)
        .filter(pl.col("record_type") == "400")
        .pipe(split_fields)
    )
    day_info = days.lazy().select("day", "intervals", "nmi", "shape_ok", q300="quality_method")
    n = pl.col("intervals")
    bad_range = (
        pl.col("start").is_null()
        | pl.col("end").is_null()
        | (pl.col("start") < 1)
        | (pl.col("end") > n)
        | (pl.col("start") > pl.col("end"))
    )
    quality = pl.col("quality_method")
    return (
        rows.select(
            "line",
            "block",
            "day",
            "anchor",
            record_type=pl.lit("400"),
            start=field(1).cast(pl.Int32, strict=False),
            end=field(2).cast(pl.Int32, strict=False),
            start_raw=field(1),
            end_raw=field(2),
            quality_method=field(3),
            reason_code=field(4),
            reason_description=field(5),
        )
        .join(day_info, on="day", how="left", maintain_order="left")
        .with_columns(
            expected=(
                pl.col("q300").str.starts_with("V")
                & pl.col("shape_ok")
                & (pl.col("anchor") == "300")
            ).fill_null(False),
            range_ok=~bad_range,
            quality_ok=quality.fill_null("").str.contains(spec.QUALITY_PATTERN)
            & (quality.str.slice(0, 1) != "V"),
        )
        .with_columns(quality_checked=pl.col("expected") & pl.col("quality_ok"))
        .collect(engine=CHUNK_ENGINE)
    )


def variable_days(days: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """The readable V days with how their expected 400 ranges cover them.

    ``covered`` (slots covered), ``first_start``, ``last_end`` and ``gaps`` are null
    for a day without such ranges; ``range_invalid`` marks a day one of whose
    ranges is not within the day (its coverage is not judged).
    """
    expected = events.filter(pl.col("expected"))
    good = expected.filter(pl.col("range_ok"))
    coverage = (
        good.sort("day", "start")
        .group_by("day", maintain_order=True)
        .agg(
            covered=(pl.col("end") - pl.col("start") + 1).sum(),
            first_start=pl.col("start").first(),
            last_end=pl.col("end").max(),
            gaps=((pl.col("start") - pl.col("end").shift(1)) != 1).sum(),
        )
    )
    invalid = expected.filter(~pl.col("range_ok")).get_column("day").unique().to_list()
    return (
        days.lazy()
        .filter(pl.col("quality_method").str.starts_with("V"), pl.col("shape_ok"))
        .select("day", "line", "block", "nmi", "intervals")
        .join(coverage.lazy(), on="day", how="left", maintain_order="left")
        .with_columns(range_invalid=pl.col("day").is_in(invalid))
        .collect(engine=CHUNK_ENGINE)
    )


def event_qualities(events: pl.DataFrame) -> pl.DataFrame:
    """The expected, well-placed 400 ranges: what ``explode`` gives their intervals."""
    return events.filter(pl.col("expected"), pl.col("range_ok")).select(
        "day",
        "start",
        "end",
        "quality_method",
        reason_code=pl.when(pl.col("reason_code") != "").then("reason_code"),
        reason_description=pl.when(pl.col("reason_description") != "").then("reason_description"),
    )


def record_frame(
    file: str, records: pl.DataFrame, blocks: pl.DataFrame, days: pl.DataFrame
) -> pl.DataFrame:
    """One row per record with its key fields, for record-level validation reports."""
    found = days.lazy().select(
        "line",
        "interval_date",
        "quality_method",
        value_count=pl.when(pl.col("shape_ok"))
        .then(pl.col("intervals"))
        .otherwise(quality_position())
        .cast(pl.Int32),
    )
    return (
        records.lazy()
        .select(
            "line",
            "record_type",
            "block",
            field_count=pl.col("raw").str.count_matches(",", literal=True).cast(pl.Int32) + 1,
        )
        .join(
            blocks.lazy().select("block", "nmi", "nmi_suffix", "interval_length", "uom"),
            on="block",
            how="left",
            maintain_order="left",
        )
        .join(found, on="line", how="left", maintain_order="left")
        .select(
            pl.lit(file).alias("file"),
            pl.lit("NEM12").alias("version"),
            "line",
            "record_type",
            "field_count",
            "nmi",
            "nmi_suffix",
            "interval_length",
            "uom",
            "interval_date",
            "quality_method",
            "value_count",
            expected_value_count=(spec.MINUTES_PER_DAY // pl.col("interval_length")).cast(pl.Int32),
            direction_indicator=pl.lit(None, pl.String),
        )
        .collect(engine=CHUNK_ENGINE)
    )
