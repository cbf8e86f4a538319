"""Parsing NEM12 with Polars: chunks of whole 200 blocks in, long-format readings out.

A member is read in chunks (see ``reading.iter_chunks``); each chunk becomes a
per-record frame, the structure rules run over it as Polars expressions, and
the 300 records of blocks without errors are split and exploded into one row
per interval. Memory therefore depends on the chunk size, not the file size.

Errors found late (a missing 900, say) reject a file whose earlier readings
were already yielded: consumers stage what ``FileParser.batches`` yields and
keep it only when ``FileParser.report.status`` is not ``rejected``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Literal

import polars as pl

from nem12.format import spec as mdff
from nem12.format.findings import CHUNK_ENGINE, FindingCollector
from nem12.format.reading import Chunk, Member, ReadError, ReadLimits, iter_chunks
from nem12.format.rules import Finding, RuleBook

Status = Literal["accepted", "partial", "rejected"]
F = pl.col("fields")
#: Seconds from UTC to NEM time (UTC+10); what a 400 range sets on its intervals.
_NEM_OFFSET_SECONDS = 10 * 3600
#: 500 records kept per file in the report (all are counted): bounded memory.
_B2B_KEPT = 10_000
#: A value of digits and dots this short cannot hold more digits than
#: ``mdff.VALUE_DTYPE``, so the cast alone tells whether it is well formed.
_SHORT_VALUE_BYTES = 15
_TEXT_DTYPES = {c: mdff.READING_SCHEMA[c] for c in mdff.READING_TEXT_COLUMNS}
_EVENT_COLUMNS = ("quality_method", "reason_code", "reason_description")
#: Spaces around separators and at line ends ("stray spaces around dates").
_STRAY_SPACE = re.compile(r"[ \t]+(?=[,\r\n]|$)|(?<=[,\n])[ \t]+|^[ \t]+")


@dataclass(frozen=True)
class ParseConfig:
    """How strict parsing is: limits, severity overrides, block vs file rejection."""

    limits: ReadLimits = field(default_factory=ReadLimits)
    severity: Mapping[str, str] = field(default_factory=dict)
    reject_file_on_block_error: bool = False
    max_findings_per_rule: int = 100
    keep_records: bool = False  # build FileReport.records, the per-record frame
    #: Enums for some of ``mdff.STREAM_TEXT_COLUMNS`` (see ``output.stream_enums``);
    #: a chunk holding a value outside them keeps the categoricals.
    stream_enums: Mapping[str, pl.Enum] = field(default_factory=dict)


@dataclass(frozen=True)
class _Exploding:
    """A chunk on its way to readings: the worker's result and where the chunk ends."""

    future: Future[tuple[pl.DataFrame | None, pl.DataFrame | None]] | None
    block_complete: bool
    last_block: int


class _DaysSeen:
    """The IntervalDates seen per data stream, as one bitmask per stream.

    A stream's dates are mostly a contiguous run, so a Python int used as a
    bitset costs bytes per stream where a set of dates costs kilobytes.
    """

    def __init__(self) -> None:
        self._streams: dict[tuple[str | None, str | None], list[int]] = {}

    def add(self, stream: tuple[str | None, str | None], day: int) -> bool:
        """Record ``day`` for ``stream``; True if it was seen before."""
        entry = self._streams.get(stream)
        if entry is None:
            self._streams[stream] = [day, 1]
            return False
        base, mask = entry
        if day < base:
            mask <<= base - day
            base = day
        bit = 1 << (day - base)
        entry[0], entry[1] = base, mask | bit
        return bool(mask & bit)

    def add_frame(self, keys: pl.DataFrame) -> pl.Series:
        """Record each row's (nmi, nmi_suffix, interval_date); True where seen before.

        A stream whose dates here are a run of consecutive distinct dates after
        all its earlier ones (a well-formed file) is recorded in one step; the
        other streams date by date.
        """
        day = pl.col("interval_date").cast(pl.Int32)
        runs = keys.group_by("nmi", "nmi_suffix").agg(
            first=day.min(), last=day.max(), n=pl.len(), distinct=day.n_unique()
        )
        irregular = []
        for nmi, suffix, first, last, n, distinct in runs.iter_rows():
            entry = self._streams.get((nmi, suffix))
            after_all = entry is None or first >= entry[0] + entry[1].bit_length()
            if after_all and n == distinct == last - first + 1:
                run = (1 << n) - 1
                if entry is None:
                    self._streams[(nmi, suffix)] = [first, run]
                else:
                    entry[1] |= run << (first - entry[0])
            else:
                irregular.append((nmi, suffix))
        repeated = pl.repeat(False, keys.height, dtype=pl.Boolean, eager=True).alias("repeated")
        if not irregular:
            return repeated
        rows = keys.with_row_index("row").join(
            pl.DataFrame(irregular, schema=["nmi", "nmi_suffix"], orient="row").cast(
                {"nmi": keys.schema["nmi"], "nmi_suffix": keys.schema["nmi_suffix"]}
            ),
            on=["nmi", "nmi_suffix"],
            nulls_equal=True,
            maintain_order="left",
        )
        again = [
            row
            for row, nmi, suffix, date in rows.select("row", "nmi", "nmi_suffix", day).iter_rows()
            if self.add((nmi, suffix), date)
        ]
        return repeated.scatter(again, True) if again else repeated


@dataclass
class Header:
    version: str | None = None
    datetime: datetime | None = None
    from_participant: str | None = None
    to_participant: str | None = None
    line: int | None = None


@dataclass
class FileReport:
    """What one file held and what was wrong with it."""

    file: str
    status: Status
    findings: list[Finding]
    header: Header
    blocks: int
    rejected_blocks: int
    readings: int
    b2b: list[dict[str, object]]
    records: pl.DataFrame | None = None

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]


def _split(frame: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """Add the list of fields; done per record type so big lists are split once."""
    return frame.with_columns(fields=pl.col("raw").str.split(","))


def _field(i: int | pl.Expr) -> pl.Expr:
    return F.list.get(i, null_on_oob=True).str.strip_chars()


def _nem_datetime(raw: pl.Expr, fmt: str) -> pl.Expr:
    return raw.str.to_datetime(fmt, strict=False, time_unit="us").dt.replace_time_zone(
        mdff.NEM_TIME_ZONE
    )


class FileParser:
    """Parses one member; iterate ``batches()`` then read ``report``."""

    def __init__(self, member: Member, config: ParseConfig | None = None) -> None:
        self.member = member
        self.config = config or ParseConfig()
        self.collector = FindingCollector(
            member.name,
            RuleBook(self.config.severity),
            self.config.max_findings_per_rule,
            self.config.reject_file_on_block_error,
        )
        self.header = Header()
        self._records = 0
        self._blocks = 0
        self._days = 0
        self._end_line: int | None = None
        self._stop = False
        self._read_failed = False
        self.bytes_read = 0
        self._open_block: pl.DataFrame | None = None
        self._pending: list[pl.DataFrame] = []
        self._seen_dates = _DaysSeen()
        self._b2b: list[dict[str, object]] = []
        self.b2b_records = 0
        self._record_frames: list[pl.DataFrame] = []
        self._readings = 0
        self._decoded_latin1 = False
        self.report: FileReport | None = None

    # --- driving ---------------------------------------------------------------
    def batches(self) -> Iterator[pl.DataFrame]:
        """Accepted readings, batch by batch, in READING_SCHEMA.

        Two stages overlap: this thread runs the rules on chunk k+1 while a
        worker explodes chunk k into readings (Polars releases the GIL).
        Batches are released in file order.
        """
        for warning in self.member.warnings:
            self.collector.add(warning.rule, warning.message)
        waiting: deque[_Exploding] = deque()
        try:
            with (
                self.member.open() as stream,
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="nem12-explode") as pool,
            ):
                for chunk in iter_chunks(stream, self.config.limits):
                    if self._stop:
                        break
                    self.bytes_read += len(chunk.data)
                    work = self._chunk(chunk)
                    future = None
                    if work is not None:
                        future = pool.submit(_explode, *work, self._text_dtypes(work[0]))
                    waiting.append(_Exploding(future, chunk.block_complete, self._blocks))
                    while len(waiting) > 1:
                        yield from self._release(waiting.popleft())
                while waiting:
                    yield from self._release(waiting.popleft())
        except ReadError as exc:
            self._read_failed = True
            self.collector.add(exc.rule, exc.message, line=exc.line)
        except (Exception, pl.exceptions.PanicException) as exc:
            # A defect of ours, of Polars (a panic) or an input no rule foresaw:
            # reject this file, say why, and let the other files of the run go on.
            self._read_failed = True
            self.collector.add(
                "input_unreadable", f"cannot parse: {type(exc).__name__}: {exc}"[:500]
            )
        self._finish()

    def _release(self, exploding: _Exploding) -> Iterator[pl.DataFrame]:
        """Yield a chunk's readings once its blocks are complete and not rejected."""
        readings, bad_values = (
            (None, None) if exploding.future is None else exploding.future.result()
        )
        if bad_values is not None:
            self._report_values(bad_values)
        if readings is not None and readings.is_empty():
            readings = None
        if readings is not None and not exploding.block_complete:
            last = exploding.last_block
            self._pending.append(readings.filter(pl.col("block") == last))
            readings = readings.filter(pl.col("block") != last)
        if exploding.block_complete and self._pending:
            held = _concat_readings(self._pending)
            self._pending = []
            readings = held if readings is None else _concat_readings([held, readings])
        if readings is None or self.collector.file_rejected:
            return
        rejected = self.collector.rejected_blocks
        if rejected:
            readings = readings.filter(~pl.col("block").is_in(list(rejected)))
        if readings.is_empty():
            return
        self._readings += readings.height
        yield readings.drop("block")

    def _finish(self) -> None:
        c = self.collector
        if self._records == 0:
            if not c.file_rejected:
                c.add("file_empty", "the file holds no records")
        elif not self._stop and not self._read_failed:
            if self._end_line is None:
                c.add("end_missing", "no 900 end-of-data record: the file may be truncated")
            if self._blocks == 0 and self.header.line is not None:
                c.add(
                    "header_only",
                    "the file holds a header but no 200/300 data records",
                    line=self.header.line,
                    record_type="100",
                )
        findings = c.finish()
        if c.file_rejected or (self._blocks and len(c.rejected_blocks) >= self._blocks):
            status: Status = "rejected"
        elif c.rejected_blocks:
            status = "partial"
        else:
            status = "accepted"
        if status == "rejected":
            self._readings = 0
        self.report = FileReport(
            file=self.member.name,
            status=status,
            findings=findings,
            header=self.header,
            blocks=self._blocks,
            rejected_blocks=len(c.rejected_blocks),
            readings=self._readings,
            b2b=self._b2b,
            records=(
                pl.concat(self._record_frames, how="vertical_relaxed")
                if self._record_frames
                else None
            ),
        )

    def _text_dtypes(self, days: pl.DataFrame) -> dict[str, pl.DataType]:
        """The readings' text dtypes for this chunk: the configured Enums if they fit."""
        enums = self.config.stream_enums
        if not enums:
            return _TEXT_DTYPES
        try:
            days.select(pl.col(c).replace("", None).cast(enum) for c, enum in enums.items())
        except pl.exceptions.InvalidOperationError:
            return _TEXT_DTYPES
        return {**_TEXT_DTYPES, **enums}

    # --- one chunk -------------------------------------------------------------
    def _decode(self, chunk: Chunk) -> str:
        data = chunk.data
        if chunk.first_line == 1 and data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
            if not self._decoded_latin1:
                self._decoded_latin1 = True
                self.collector.add("encoding", "bytes that are not UTF-8 were read as Latin-1")
        if text.endswith("\n"):
            text = text[:-1]
        if " " in text or "\t" in text:
            text = _STRAY_SPACE.sub("", text)
        return text.replace("\r", "") if "\r" in text else text

    def _chunk(self, chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame | None] | None:
        """Run the rules on a chunk; return its good days and 400 ranges to explode."""
        text = self._decode(chunk)
        records = (
            pl.LazyFrame({"raw": [text]})
            .select(pl.col("raw").str.split("\n"))
            .explode("raw")
            .with_row_index("line", offset=chunk.first_line)
            .with_columns(pl.col("line").cast(pl.Int64))
            .with_columns(record_type=pl.col("raw").str.extract(r"^([^,]*)", 1))
            .with_columns(
                block=(pl.col("record_type") == "200").cum_sum().cast(pl.Int64) + self._blocks,
                day=(pl.col("record_type") == "300").cum_sum().cast(pl.Int64) + self._days,
            )
            .collect(engine=CHUNK_ENGINE)
        )
        self._check_file_structure(records)
        if self._stop:
            return None
        blocks = self._blocks_frame(records)
        self._blocks = int(records.get_column("block").max() or self._blocks)
        self._days = int(records.get_column("day").max() or self._days)
        self._collect_b2b(records, blocks)
        days = self._check_days(records, blocks)
        events = self._check_events(records, days)
        if self.config.keep_records:
            self._record_frames.append(self._record_frame(records, blocks, days))
        if days.is_empty() or self.collector.file_rejected:
            return None
        rejected = self.collector.rejected_blocks
        days = days.filter(pl.col("shape_ok"), ~pl.col("block").is_in(list(rejected)))
        return days, events

    def _record_frame(
        self, records: pl.DataFrame, blocks: pl.DataFrame, days: pl.DataFrame
    ) -> pl.DataFrame:
        """One row per record with its key fields, for record-level validation reports."""
        found = days.select(
            "line",
            "interval_date",
            "quality_method",
            value_count=pl.when(pl.col("shape_ok"))
            .then(pl.col("intervals"))
            .otherwise(
                F.list.slice(2)
                .list.eval(
                    pl.int_range(pl.len()).filter(
                        pl.element().str.strip_chars().str.contains(mdff.QUALITY_PATTERN)
                    )
                )
                .list.first()
            )
            .cast(pl.Int32),
        )
        return (
            records.select(
                "line",
                "record_type",
                "block",
                field_count=pl.col("raw").str.count_matches(",", literal=True).cast(pl.Int32) + 1,
            )
            .join(
                blocks.select("block", "nmi", "nmi_suffix", "interval_length", "uom"),
                on="block",
                how="left",
                maintain_order="left",
            )
            .join(found, on="line", how="left", maintain_order="left")
            .select(
                pl.lit(self.member.name).alias("file"),
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
                expected_value_count=(mdff.MINUTES_PER_DAY // pl.col("interval_length")).cast(
                    pl.Int32
                ),
            )
        )

    # --- file structure: 100, 900, unknown and blank lines ------------------------
    def _check_file_structure(self, records: pl.DataFrame) -> None:
        c = self.collector
        blank = records.filter(pl.col("raw") == "")
        if not blank.is_empty():
            c.add_frame(
                "blank_line",
                blank.select(
                    "line",
                    record_type=pl.lit(None, pl.String),
                    nmi=pl.lit(None, pl.String),
                    message=pl.lit("blank line ignored"),
                ),
            )
        rows = records.filter(pl.col("raw") != "")
        if rows.is_empty():
            return
        if self._records == 0:
            first = rows.row(0, named=True)
            if first["record_type"] != "100":
                c.add(
                    "header_missing",
                    f"the first record is {first['record_type']!r}, not a 100 header",
                    line=first["line"],
                    record_type=first["record_type"],
                )
        self._records += rows.height
        headers = rows.filter(pl.col("record_type") == "100")
        for header in headers.iter_rows(named=True):
            if self.header.line is None and header["line"] == rows.item(0, "line"):
                self._read_header(header)
            else:
                c.add(
                    "header_repeated", "a second 100 header", line=header["line"], record_type="100"
                )
        if self._stop:
            return
        known = mdff.RECORD_TYPES
        unknown = rows.filter(~pl.col("record_type").is_in(known))
        if not unknown.is_empty():
            c.add_frame(
                "record_type_unknown",
                unknown.select(
                    "line",
                    "record_type",
                    nmi=pl.lit(None, pl.String),
                    message=pl.format(
                        "record indicator '{}' is not a NEM12 record type{}",
                        pl.col("record_type").str.slice(0, 20),
                        pl.when(pl.col("record_type").is_in(mdff.NEM13_RECORD_TYPES))
                        .then(pl.lit(" (it is a NEM13 record)"))
                        .otherwise(pl.lit("")),
                    ),
                ),
            )
        ends = rows.filter(pl.col("record_type") == "900").get_column("line").to_list()
        for line in ends:
            if self._end_line is None:
                self._end_line = line
            else:
                c.add(
                    "end_repeated",
                    f"another 900 record (the first is on line {self._end_line})",
                    line=line,
                    record_type="900",
                )
        if self._end_line is not None:
            after = rows.filter(
                (pl.col("line") > self._end_line) & (pl.col("record_type") != "900")
            )
            if not after.is_empty():
                c.add_frame(
                    "data_after_end",
                    after.select(
                        "line",
                        "record_type",
                        nmi=pl.lit(None, pl.String),
                        message=pl.format(
                            "record {} after the 900 record on line {}",
                            pl.col("record_type").str.slice(0, 20),
                            pl.lit(self._end_line),
                        ),
                    ),
                )
        outside = rows.filter(
            pl.col("record_type").is_in(["300", "400", "500"]) & (pl.col("block") == 0)
        )
        if not outside.is_empty():
            c.add_frame(
                "record_outside_block",
                outside.select(
                    "line",
                    "record_type",
                    nmi=pl.lit(None, pl.String),
                    message=pl.format("{} record before any 200 record", pl.col("record_type")),
                ),
            )

    def _read_header(self, row: dict[str, object]) -> None:
        c = self.collector
        fields = [f.strip() for f in str(row["raw"]).split(",")]
        fields += [""] * (5 - len(fields))
        line = int(row["line"])  # type: ignore[arg-type]
        version = fields[1].upper()
        self.header = Header(
            version=version or None,
            line=line,
            from_participant=fields[3] or None,
            to_participant=fields[4] or None,
        )
        if version == "NEM13":
            c.add(
                "version_unsupported",
                "VersionHeader NEM13: accumulation data is not yet supported",
                line=line,
                record_type="100",
            )
            self._stop = True
            return
        if version != "NEM12":
            c.add(
                "version_invalid",
                f"VersionHeader {fields[1][:20]!r} is not NEM12",
                line=line,
                record_type="100",
            )
            self._stop = True
            return
        try:
            if not re.fullmatch(r"\d{12}", fields[2]):
                raise ValueError
            self.header.datetime = datetime.strptime(fields[2], "%Y%m%d%H%M")
        except ValueError:
            c.add(
                "header_datetime",
                f"header DateTime {fields[2][:20]!r} is not YYYYMMDDHHMM",
                line=line,
                record_type="100",
            )
        self._check_file_name()

    def _check_file_name(self) -> None:
        """NEM12#<FileID>#<From>#<To>: compare the participants with the header's."""
        base = PurePosixPath(self.member.name.replace("!", "/")).name
        parts = base.split("#")
        if len(parts) != 4 or parts[0].upper() not in ("NEM12", "NEM13"):
            return
        to_name = parts[3].split(".")[0]
        pairs = [(parts[2], self.header.from_participant), (to_name, self.header.to_participant)]
        if any(header and named.upper() != header.upper() for named, header in pairs):
            self.collector.add(
                "filename_participants",
                f"file name says From {parts[2]} To {to_name}; header says From "
                f"{self.header.from_participant} To {self.header.to_participant}",
                line=self.header.line,
                record_type="100",
            )

    # --- 200 blocks -------------------------------------------------------------
    def _blocks_frame(self, records: pl.DataFrame) -> pl.DataFrame:
        new = (
            _split(records.filter(pl.col("record_type") == "200"))
            .select(
                "block",
                "line",
                *[_field(i).alias(c) for c, i in mdff.STREAM_TEXT_FIELDS.items()],
                nmi_configuration=_field(2),
                mdm_data_stream_identifier=_field(5),
                uom_raw=_field(7),
                interval_length_raw=_field(8),
                next_scheduled_read_date=_field(9),
                field_count=F.list.len(),
                extra=F.list.slice(10).list.eval(pl.element().str.strip_chars() != "").list.any(),
            )
            .with_columns(
                interval_length=pl.col("interval_length_raw").cast(pl.Int16, strict=False),
                uom=pl.col("uom_raw")
                .str.to_uppercase()
                .replace_strict(mdff.UNITS_OF_MEASURE, default=None, return_dtype=pl.String),
            )
        )
        self._check_blocks(new)
        new = new.with_columns(
            interval_length=pl.when(pl.col("interval_length").is_in(mdff.INTERVAL_LENGTHS)).then(
                pl.col("interval_length")
            )
        )
        if self._open_block is not None:
            new = pl.concat([self._open_block, new], how="vertical_relaxed")
        if not new.is_empty():
            self._open_block = new.tail(1)
        return new

    def _check_blocks(self, blocks: pl.DataFrame) -> None:
        c = self.collector
        base = blocks.lazy().select(
            "line",
            "block",
            "nmi",
            record_type=pl.lit("200"),
            il="interval_length",
            il_raw="interval_length_raw",
            uom="uom",
            uom_raw="uom_raw",
            nmi_suffix="nmi_suffix",
            field_count="field_count",
            extra="extra",
        )
        checks = {
            "record_fields": (
                (pl.col("field_count") < 9) | pl.col("extra"),
                pl.format(
                    "200 record has {} fields; it needs NMI to IntervalLength and no extra values",
                    pl.col("field_count"),
                ),
            ),
            "nmi_missing": (
                (pl.col("field_count") >= 9) & (pl.col("nmi").fill_null("") == ""),
                pl.lit("NMI is empty: the readings cannot be attributed"),
            ),
            "nmi_format": (
                (pl.col("nmi").fill_null("") != "")
                & ~pl.col("nmi").fill_null("").str.contains(mdff.NMI_PATTERN),
                pl.format(
                    "NMI '{}' is not 10 characters of A-Z (no I, O) and 0-9",
                    pl.col("nmi").fill_null(""),
                ),
            ),
            "nmi_suffix_missing": (
                (pl.col("field_count") >= 9) & (pl.col("nmi_suffix").fill_null("") == ""),
                pl.lit("NMISuffix is empty: readings cannot be told apart by data stream"),
            ),
            "interval_length": (
                (pl.col("field_count") >= 9)
                & ~pl.col("il").is_in(mdff.INTERVAL_LENGTHS).fill_null(False),
                pl.format("IntervalLength '{}' is not 5, 15 or 30", pl.col("il_raw").fill_null("")),
            ),
            "uom_invalid": (
                (pl.col("field_count") >= 9) & pl.col("uom").is_null(),
                pl.format("UOM '{}' is not an MDFF unit", pl.col("uom_raw").fill_null("")),
            ),
        }
        for rule, (condition, message) in checks.items():
            c.add_frame(
                rule,
                base.filter(condition).select(
                    "line", "record_type", "nmi", "block", message=message
                ),
            )

    def _collect_b2b(self, records: pl.DataFrame, blocks: pl.DataFrame) -> None:
        b2b = _split(records.filter(pl.col("record_type") == "500", pl.col("block") > 0))
        if b2b.is_empty():
            return
        b2b = b2b.select(
            "block",
            "line",
            trans_code=_field(1),
            ret_service_order=_field(2),
            read_datetime=_field(3),
            index_read=_field(4),
        ).join(
            blocks.select("block", "nmi", "nmi_suffix"),
            on="block",
            how="left",
            maintain_order="left",
        )
        self.b2b_records += b2b.height
        room = _B2B_KEPT - len(self._b2b)
        if room > 0:
            self._b2b.extend(b2b.drop("block").head(room).to_dicts())

    # --- 300 days -----------------------------------------------------------------
    def _check_days(self, records: pl.DataFrame, blocks: pl.DataFrame) -> pl.DataFrame:
        c = self.collector
        n = pl.col("intervals")
        raw = pl.col("raw")
        # Fields up to the last non-empty one: padding is trailing commas (spaces are gone).
        last_filled = F.list.len() - (
            raw.str.len_bytes() - raw.str.strip_chars_end(",").str.len_bytes()
        )
        days = (
            records.lazy()
            .filter(pl.col("record_type") == "300", pl.col("block") > 0)
            .pipe(_split)
            .join(
                blocks.lazy().select("block", *mdff.STREAM_COLUMNS),
                on="block",
                how="left",
                maintain_order="left",
            )
            .with_columns(
                intervals=(mdff.MINUTES_PER_DAY // pl.col("interval_length")).cast(pl.Int32)
            )
            .with_columns(
                filled=last_filled.cast(pl.Int32),
                date_raw=_field(1),
                quality_method=_field(n + 2),
                reason_code=_field(n + 3),
                reason_description=_field(n + 4),
                update_raw=_field(n + 5),
                msats_raw=_field(n + 6),
            )
            .with_columns(
                interval_date=pl.col("date_raw").str.to_date("%Y%m%d", strict=False),
                quality_ok=pl.col("quality_method")
                .fill_null("")
                .str.contains(mdff.QUALITY_PATTERN),
            )
            .with_columns(
                shape_ok=n.is_not_null() & pl.col("quality_ok") & (pl.col("filled") <= n + 7),
            )
            .collect(engine=CHUNK_ENGINE)
        )
        if days.is_empty():
            return days
        shape = days.filter(n.is_not_null() & ~pl.col("shape_ok"))
        if not shape.is_empty():
            self._report_shape(shape)
        checks = {
            "interval_date": (
                pl.col("interval_date").is_null()
                | ~pl.col("date_raw").fill_null("").str.contains(r"^\d{8}$"),
                pl.format("IntervalDate '{}' is not a real date", pl.col("date_raw").fill_null("")),
            ),
        }
        for rule, (condition, message) in checks.items():
            c.add_frame(
                rule,
                days.lazy()
                .filter(condition)
                .select("line", "block", "nmi", record_type=pl.lit("300"), message=message),
            )
        ok = days.filter(pl.col("shape_ok"))
        self._check_quality(
            ok.select(
                "line",
                "block",
                "nmi",
                "quality_method",
                "reason_code",
                "reason_description",
                record_type=pl.lit("300"),
            )
        )
        self._check_update_times(ok)
        self._check_repeats(days.filter(pl.col("interval_date").is_not_null()))
        return days

    def _report_shape(self, shape: pl.DataFrame) -> None:
        """Tell a wrong value count from a bad QualityMethod or stray trailing fields."""
        n = pl.col("intervals")
        found = shape.with_columns(
            first_quality=F.list.slice(2)
            .list.eval(
                pl.int_range(pl.len()).filter(
                    pl.element().str.strip_chars().str.contains(mdff.QUALITY_PATTERN)
                )
            )
            .list.first(),
        )
        value_count = found.filter(
            pl.col("first_quality").is_not_null() & (pl.col("first_quality") != n)
        )
        self.collector.add_frame(
            "value_count",
            value_count.select(
                "line",
                "block",
                "nmi",
                record_type=pl.lit("300"),
                message=pl.format(
                    "300 record has {} interval values; IntervalLength {} needs {}",
                    pl.col("first_quality"),
                    pl.col("interval_length"),
                    n,
                ),
            ),
        )
        rest = found.filter(pl.col("first_quality").is_null() | (pl.col("first_quality") == n))
        bad_quality = rest.filter(~pl.col("quality_ok"))
        self.collector.add_frame(
            "quality_method",
            bad_quality.select(
                "line",
                "block",
                "nmi",
                record_type=pl.lit("300"),
                message=pl.format(
                    "QualityMethod '{}' after {} values is not valid (or the value count is wrong)",
                    pl.col("quality_method").fill_null("").str.slice(0, 20),
                    n,
                ),
            ),
        )
        extra = rest.filter(pl.col("quality_ok"))
        self.collector.add_frame(
            "record_fields",
            extra.select(
                "line",
                "block",
                "nmi",
                record_type=pl.lit("300"),
                message=pl.format(
                    "300 record has {} fields; IntervalLength {} allows at most {}",
                    pl.col("filled"),
                    pl.col("interval_length"),
                    n + 7,
                ),
            ),
        )

    def _check_quality(self, rows: pl.DataFrame) -> None:
        """Flag rules shared by 300 and 400 records."""
        flag = pl.col("quality_method").str.slice(0, 1)
        method = pl.col("quality_method").str.slice(1)
        reason = pl.col("reason_code").fill_null("")
        description = pl.col("reason_description").fill_null("")
        code = reason.cast(pl.Int32, strict=False)
        checks = {
            "quality_method_number": (
                flag.is_in(mdff.FLAGS_NEEDING_METHOD) & (method == ""),
                pl.format(
                    "QualityMethod '{}' needs a two-digit method number", pl.col("quality_method")
                ),
            ),
            "reason_code_required": (
                flag.is_in(mdff.FLAGS_NEEDING_REASON) & (reason == ""),
                pl.format("QualityMethod '{}' needs a ReasonCode", pl.col("quality_method")),
            ),
            "reason_code_invalid": (
                (reason != "") & ~code.is_in(list(mdff.REASON_CODES)).fill_null(False),
                pl.format("ReasonCode '{}' is not an MDFF reason code", reason.str.slice(0, 20)),
            ),
            "reason_code_on_variable": (
                (flag == "V") & (reason != ""),
                pl.format("QualityMethod V with ReasonCode '{}'", reason.str.slice(0, 20)),
            ),
            "reason_description_required": (
                (code == 0) & (description == ""),
                pl.lit("ReasonCode 0 (free text) without a ReasonDescription"),
            ),
        }
        for rule, (condition, message) in checks.items():
            self.collector.add_frame(
                rule,
                rows.lazy()
                .filter(condition)
                .select("line", "block", "nmi", "record_type", message=message),
            )

    def _check_update_times(self, days: pl.DataFrame) -> None:
        update = pl.col("update_raw").fill_null("")
        msats = pl.col("msats_raw").fill_null("")
        c = self.collector
        rows = days.lazy().select(
            "line", "block", "nmi", "update_raw", "msats_raw", record_type=pl.lit("300")
        )
        parsed14 = update.str.to_datetime("%Y%m%d%H%M%S", strict=False)
        parsed12 = update.str.to_datetime("%Y%m%d%H%M", strict=False)
        valid14 = update.str.contains(r"^\d{14}$") & parsed14.is_not_null()
        valid12 = update.str.contains(r"^\d{12}$") & parsed12.is_not_null()
        c.add_frame(
            "update_datetime_invalid",
            rows.filter((update != "") & ~valid14 & ~valid12).select(
                "line",
                "block",
                "nmi",
                "record_type",
                message=pl.format(
                    "UpdateDateTime '{}' is not YYYYMMDDHHMMSS", update.str.slice(0, 20)
                ),
            ),
        )
        c.add_frame(
            "update_datetime_nonstandard",
            rows.filter((update == "") | valid12).select(
                "line",
                "block",
                "nmi",
                "record_type",
                message=pl.when(update == "")
                .then(pl.lit("UpdateDateTime is empty: this version sorts oldest"))
                .otherwise(
                    pl.format("UpdateDateTime '{}' has 12 digits, read as YYYYMMDDHHMM", update)
                ),
            ),
        )
        msats_ok = (
            msats.str.contains(r"^\d{14}$")
            & msats.str.to_datetime("%Y%m%d%H%M%S", strict=False).is_not_null()
        )
        c.add_frame(
            "msats_datetime_invalid",
            rows.filter((msats != "") & ~msats_ok).select(
                "line",
                "block",
                "nmi",
                "record_type",
                message=pl.format(
                    "MSATSLoadDateTime '{}' is not YYYYMMDDHHMMSS", msats.str.slice(0, 20)
                ),
            ),
        )

    def _check_repeats(self, days: pl.DataFrame) -> None:
        """A stream's IntervalDate seen before in this file (dates kept per stream)."""
        # One chunk: Polars 2.1 panics filtering a multi-chunk frame by a shift and formatting.
        keys = days.select("line", "block", "nmi", "nmi_suffix", "interval_date").rechunk()
        repeated = self._seen_dates.add_frame(keys)
        self.collector.add_frame(
            "interval_date_repeated",
            keys.lazy()
            .with_columns(repeated=repeated)
            .filter("repeated")
            .select(
                "line",
                "block",
                "nmi",
                record_type=pl.lit("300"),
                message=pl.format(
                    "IntervalDate {} of suffix {} appears earlier in this file",
                    pl.col("interval_date").dt.strftime("%Y%m%d"),
                    pl.col("nmi_suffix").fill_null(""),
                ),
            ),
        )
        out_of_order = keys.lazy().filter(
            pl.col("interval_date") < pl.col("interval_date").shift(1).over("block")
        )
        self.collector.add_frame(
            "interval_date_order",
            out_of_order.select(
                "line",
                "block",
                "nmi",
                record_type=pl.lit("300"),
                message=pl.format(
                    "IntervalDate {} comes after a later date of the same stream",
                    pl.col("interval_date").dt.strftime("%Y%m%d"),
                ),
            ),
        )

    # --- 400 events -------------------------------------------------------------
    def _check_events(self, records: pl.DataFrame, days: pl.DataFrame) -> pl.DataFrame | None:
        """Check 400 records; return the interval-level quality of V days."""
        anchor = (
            pl.when(pl.col("record_type").is_in(["200", "300", "500"]))
            .then(pl.col("record_type"))
            .forward_fill()
        )
        rows = _split(records.with_columns(anchor=anchor).filter(pl.col("record_type") == "400"))
        variable = days.filter(pl.col("quality_method").str.starts_with("V"))
        if rows.is_empty() and variable.is_empty():
            return None
        c = self.collector
        day_info = days.select("day", "intervals", "nmi", "shape_ok", q300="quality_method")
        variable = variable.filter(pl.col("shape_ok"))
        events = rows.select(
            "line",
            "block",
            "day",
            "anchor",
            record_type=pl.lit("400"),
            start=_field(1).cast(pl.Int32, strict=False),
            end=_field(2).cast(pl.Int32, strict=False),
            start_raw=_field(1),
            end_raw=_field(2),
            quality_method=_field(3),
            reason_code=_field(4),
            reason_description=_field(5),
        ).join(day_info, on="day", how="left", maintain_order="left")
        unexpected = events.filter(
            (pl.col("anchor") != "300")
            | (pl.col("shape_ok").fill_null(False) & ~pl.col("q300").str.starts_with("V"))
        )
        c.add_frame(
            "event_unexpected",
            unexpected.lazy()
            .filter(pl.col("block") > 0)
            .select(
                "line",
                "block",
                "nmi",
                "record_type",
                message=pl.format(
                    "400 record follows a {} record{}",
                    pl.col("anchor").fill_null("?"),
                    pl.when(pl.col("q300").is_not_null())
                    .then(pl.format(" with QualityMethod {}", pl.col("q300")))
                    .otherwise(pl.lit("")),
                ),
            ),
        )
        events = events.filter(
            pl.col("q300").str.starts_with("V"), pl.col("shape_ok"), pl.col("anchor") == "300"
        )
        n = pl.col("intervals")
        bad_range = (
            pl.col("start").is_null()
            | pl.col("end").is_null()
            | (pl.col("start") < 1)
            | (pl.col("end") > n)
            | (pl.col("start") > pl.col("end"))
        )
        c.add_frame(
            "event_range",
            events.lazy()
            .filter(bad_range)
            .select(
                "line",
                "block",
                "nmi",
                "record_type",
                message=pl.format(
                    "interval range {}-{} is not within 1..{}",
                    pl.col("start_raw").fill_null(""),
                    pl.col("end_raw").fill_null(""),
                    n,
                ),
            ),
        )
        quality_ok = pl.col("quality_method").fill_null("").str.contains(mdff.QUALITY_PATTERN) & (
            pl.col("quality_method").str.slice(0, 1) != "V"
        )
        c.add_frame(
            "event_quality",
            events.lazy()
            .filter(~quality_ok)
            .select(
                "line",
                "block",
                "nmi",
                "record_type",
                message=pl.format(
                    "400 QualityMethod '{}' is not valid here",
                    pl.col("quality_method").fill_null("").str.slice(0, 20),
                ),
            ),
        )
        self._check_quality(events.filter(quality_ok))
        good = events.filter(~bad_range)
        coverage = (
            good.sort("day", "start")
            .group_by("day", maintain_order=True)
            .agg(
                pl.col("line").first(),
                pl.col("block").first(),
                pl.col("nmi").first(),
                n.first(),
                covered=(pl.col("end") - pl.col("start") + 1).sum(),
                first_start=pl.col("start").first(),
                last_end=pl.col("end").max(),
                gaps=((pl.col("start") - pl.col("end").shift(1)) != 1).sum(),
            )
        )
        variable_days = variable.select("day", "line", "block", "nmi", "intervals").join(
            coverage.select("day", "covered", "first_start", "last_end", "gaps"),
            on="day",
            how="left",
            maintain_order="left",
        )
        missing = variable_days.filter(pl.col("covered").is_null())
        invalid_days = set(events.filter(bad_range).get_column("day").to_list())
        c.add_frame(
            "event_missing",
            missing.lazy()
            .filter(~pl.col("day").is_in(list(invalid_days)))
            .select(
                "line",
                "block",
                "nmi",
                record_type=pl.lit("300"),
                message=pl.lit("QualityMethod V but no 400 records follow"),
            ),
        )
        wrong = variable_days.filter(
            pl.col("covered").is_not_null(),
            ~pl.col("day").is_in(list(invalid_days)),
            (pl.col("covered") != n)
            | (pl.col("first_start") != 1)
            | (pl.col("last_end") != n)
            | (pl.col("gaps") > 0),
        )
        c.add_frame(
            "event_coverage",
            wrong.lazy().select(
                "line",
                "block",
                "nmi",
                record_type=pl.lit("300"),
                message=pl.format(
                    "400 records cover {} interval slots from {} to {} with {} gaps or "
                    "overlaps; the day has {}",
                    pl.col("covered"),
                    pl.col("first_start"),
                    pl.col("last_end"),
                    pl.col("gaps"),
                    n,
                ),
            ),
        )
        return good.select(
            "day",
            "start",
            "end",
            "quality_method",
            reason_code=pl.when(pl.col("reason_code") != "").then("reason_code"),
            reason_description=pl.when(pl.col("reason_description") != "").then(
                "reason_description"
            ),
        )

    # --- readings ---------------------------------------------------------------
    def _report_values(self, bad: pl.DataFrame) -> None:
        """One finding per 300 record with bad values: the first one and how many."""
        negative = pl.col("value_raw").str.contains(r"^-(\d+\.?\d*|\.\d+)$")
        per_record = (
            bad.with_columns(negative=negative)
            .group_by("line_number", "negative", maintain_order=True)
            .agg(
                pl.col("block").first(),
                pl.col("nmi").first().cast(pl.String),
                pl.col("idx").first(),
                pl.col("value_raw").first().alias("value"),
                count=pl.len(),
            )
            .rename({"line_number": "line"})
        )
        for rule, is_negative, what in (
            ("value_negative", True, "negative"),
            ("value_not_numeric", False, "not a decimal number"),
        ):
            rows = per_record.filter(pl.col("negative") == is_negative)
            self.collector.add_frame(
                rule,
                rows.select(
                    "line",
                    "block",
                    "nmi",
                    record_type=pl.lit("300"),
                    message=pl.format(
                        "interval {} value '{}' is {} ({} such values in the record)",
                        pl.col("idx") + 1,
                        pl.col("value").str.slice(0, 20),
                        pl.lit(what),
                        pl.col("count"),
                    ),
                ),
            )


def parse_source(
    source, name: str | None = None, config: ParseConfig | None = None
) -> Iterator[FileParser]:
    """One FileParser per MDFF file in ``source`` (path, bytes or stream)."""
    from nem12.format.reading import iter_members

    config = config or ParseConfig()
    for member in iter_members(source, name=name, limits=config.limits):
        yield FileParser(member, config)


def _explode(
    days: pl.DataFrame, events: pl.DataFrame | None, text_dtypes: Mapping[str, pl.DataType]
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """Split and explode the accepted 300 records into one row per interval.

    Everything per day (text fields, timestamps) is prepared on the small
    day frame and repeated by the explode; text is categorical so that
    repeating costs 4-byte codes. One fused query does the per-value work.
    """
    if days.is_empty():
        return None, None
    update = pl.col("update_raw").fill_null("")
    # per day, its intervals' starts in microseconds, exploded alongside the values
    day_start = (pl.col("interval_date").cast(pl.Int64) * 86_400 - _NEM_OFFSET_SECONDS) * 1_000_000
    step = pl.col("interval_length").cast(pl.Int64) * 60_000_000
    long = (
        days.lazy()
        .select(
            pl.col("block").cast(pl.Int32),
            "line",
            "interval_length",
            (~pl.col("raw").str.contains("[-+eE]")).alias("plain_line"),
            *[
                (
                    pl.when(pl.col(c) != "").then(pl.col(c))
                    if c in mdff.OPTIONAL_TEXT_COLUMNS
                    else pl.col(c)
                )
                .cast(text_dtypes[c])
                .alias(c)
                for c in mdff.READING_TEXT_COLUMNS
            ],
            update_datetime=pl.when(update.str.len_bytes() == 12)
            .then(_nem_datetime(update, "%Y%m%d%H%M"))
            .otherwise(_nem_datetime(update, "%Y%m%d%H%M%S")),
            msats_load_datetime=_nem_datetime(pl.col("msats_raw").fill_null(""), "%Y%m%d%H%M%S"),
            value=F.list.slice(2, pl.col("intervals")),
            interval_start=pl.int_ranges(
                day_start, day_start + pl.col("intervals").cast(pl.Int64) * step, step
            ),
        )
        .explode("value", "interval_start")
        .with_columns(decimal=pl.col("value").cast(mdff.VALUE_DTYPE, strict=False))
        .select(
            *mdff.STREAM_COLUMNS,
            interval_start=pl.col("interval_start").cast(pl.Datetime("us", mdff.NEM_TIME_ZONE)),
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
            & (pl.col("value").str.len_bytes() <= _SHORT_VALUE_BYTES)
            & pl.col("decimal").is_not_null(),
            value_raw="value",
        )
        .collect(engine=CHUNK_ENGINE)
    )
    if events is not None and not events.is_empty():
        long = _apply_events(long, days, events)
    bad = None
    if not long.get_column("value_ok").all():
        start = pl.col("interval_start")
        minute_of_day = start.dt.hour().cast(pl.Int32) * 60 + start.dt.minute()
        bad = long.filter(
            ~pl.col("value_ok"),
            ~pl.col("value_raw").str.contains(mdff.VALUE_PATTERN) | pl.col("value").is_null(),
        ).with_columns(idx=minute_of_day // pl.col("interval_length"))
        if bad.is_empty():
            bad = None
    return long.drop("value_ok", "value_raw"), bad


def _concat_readings(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Concatenate chunks' readings; chunks that kept different text dtypes fall back."""
    if any(frame.schema != frames[0].schema for frame in frames):
        frames = [frame.cast(_TEXT_DTYPES) for frame in frames]  # type: ignore[arg-type]
    return pl.concat(frames)


def _apply_events(long: pl.DataFrame, days: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
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
            *[pl.col(c).cast(mdff.READING_SCHEMA[c]) for c in _EVENT_COLUMNS],
        )
    )
    if placed.is_empty():
        return long
    positions = placed.get_column("position")
    return long.with_columns(
        long.get_column(c).scatter(positions, placed.get_column(c)) for c in _EVENT_COLUMNS
    )
