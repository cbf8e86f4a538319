"""The driver: chunks in, readings and findings out, the file's status decided once at its end.

Two stages overlap: this thread builds a chunk's frames and runs its checks
while a worker explodes the previous chunk into readings (Polars releases the
GIL). The member's last chunk, with nothing after it to overlap, is exploded by
this thread, so a file of one chunk starts no worker. Readings are released in
file order; those of a block a chunk leaves open wait for the chunk that completes it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import polars as pl

from nem12.format import spec
from nem12.format.findings import CHECK_OPTIMIZATIONS, CHUNK_ENGINE, FindingCollector
from nem12.format.parsing import reads as reads_of
from nem12.format.parsing import records as rec
from nem12.format.parsing.checks import Frame, checks_on
from nem12.format.parsing.checks.registry import Check
from nem12.format.parsing.config import ParseConfig
from nem12.format.parsing.days import day_rows
from nem12.format.parsing.explode import concat_readings, explode, text_dtypes
from nem12.format.parsing.result import ParseNotFinished, ParseResult, Status
from nem12.format.parsing.state import KeysSeen, ParseState
from nem12.format.reading import Chunk, Member, ReadError, iter_chunks, iter_members
from nem12.format.rules import RuleBook

Exploded = tuple[pl.DataFrame | None, pl.DataFrame | None]


@dataclass(frozen=True)
class _Exploding:
    """A chunk on its way to readings: the worker's result and where the chunk ends."""

    future: Future[Exploded] | None
    block_complete: bool
    last_block: int


class Parse:
    """The parse of one NEM12 member: iterate ``batches()``, then read ``result``."""

    #: The VersionHeader this parser reads; another one ends the reading at the header.
    version = "NEM12"

    def __init__(self, member: Member, config: ParseConfig | None = None) -> None:
        self.member = member
        self.config = config or ParseConfig()
        self.collector = FindingCollector(
            member.name,
            RuleBook(self.config.severity),
            self.config.max_findings_per_rule,
            self.config.reject_file_on_block_error,
        )
        self.state = ParseState()
        self._pending: list[pl.DataFrame] = []  # readings of the block the last chunk left open
        self._result: ParseResult | None = None

    @property
    def bytes_read(self) -> int:
        return self.state.bytes_read

    @property
    def result(self) -> ParseResult:
        """What the file held; known once ``batches()`` is exhausted."""
        if self._result is None:
            raise ParseNotFinished(
                f"{self.member.name}: the result is known once batches() is exhausted"
            )
        return self._result

    def batches(self) -> Iterator[pl.DataFrame]:
        """Accepted readings, batch by batch, in READING_SCHEMA (DAY_SCHEMA if ``per_day``).

        A file rejected at its end (a missing 900, say) has had batches yielded:
        keep them only if ``result.status`` is not ``rejected``.
        """
        for warning in self.member.warnings:
            self.collector.add(warning.rule, warning.message)
        waiting: deque[_Exploding] = deque()
        pool: ThreadPoolExecutor | None = None
        try:
            with self.member.open() as stream, ExitStack() as stack:
                for chunk in iter_chunks(stream, self.config.limits):
                    if self.state.stop:
                        break
                    self.state.bytes_read += len(chunk.data)
                    work = self._chunk(chunk)
                    future = None
                    if work is not None:
                        days, events = work
                        enums = text_dtypes(days, self.config.stream_enums)
                        rows = day_rows if self.config.per_day else explode
                        if chunk.last:  # no chunk follows to overlap with: explode it here
                            future = Future()
                            future.set_result(rows(days, events, enums))
                        else:
                            pool = pool or stack.enter_context(
                                ThreadPoolExecutor(1, thread_name_prefix="nem12-explode")
                            )
                            future = pool.submit(rows, days, events, enums)
                    waiting.append(_Exploding(future, chunk.block_complete, self.state.blocks))
                    while len(waiting) > 1:
                        yield from self._release(waiting.popleft())
                while waiting:
                    yield from self._release(waiting.popleft())
        except ReadError as exc:
            self.state.read_failed = True
            self.collector.add(exc.rule, exc.message, line=exc.line)
        self._result = self._finish()

    # --- one chunk -------------------------------------------------------------
    def _chunk(self, chunk: Chunk) -> tuple[pl.DataFrame, pl.DataFrame | None] | None:
        """Check a chunk; return its readable days and 400 ranges to explode."""
        state = self.state
        records = self._records(chunk, state.days)
        if records is None:
            return None
        blocks = self._blocks(records)
        days = rec.days_frame(records, blocks)
        if not days.is_empty():
            days = days.hstack([state.days_seen.seen_before(days).alias("seen_before")])
            self._run("days", days.lazy())
        events = rec.events_frame(records, days)
        if events is not None:
            self._run("events", events.lazy())
            self._run("variable_days", rec.variable_days(days, events).lazy())
            events = rec.event_qualities(events)
        if self.config.keep_records:
            state.record_frames.append(rec.record_frame(self.member.name, records, blocks, days))
        if days.is_empty() or self.collector.file_rejected:
            return None
        rejected = self.collector.rejected_blocks
        days = days.filter(pl.col("shape_ok"), ~pl.col("block").is_in(list(rejected)))
        return days, events

    def _records(self, chunk: Chunk, days: int) -> pl.DataFrame | None:
        """The chunk's lines as records, their header and line checks run; None once
        the header ends the reading."""
        block_record = spec.BLOCK_RECORD_OF[self.version]
        records, latin1 = rec.chunk_records(chunk, self.state.blocks, days, block_record)
        return self._checked_lines(records, latin1)

    def _checked_lines(self, records: pl.DataFrame, latin1: bool) -> pl.DataFrame | None:
        """Run the header and line checks of a chunk's records (``latin1``: its bytes
        were not UTF-8); None once the header ends the reading."""
        state = self.state
        if latin1 and not state.decoded_latin1:
            state.decoded_latin1 = True
            self.collector.add("encoding", "bytes that are not UTF-8 were read as Latin-1")
        first = self._note_lines(records)
        if first is not None:
            self._check_header(first)
        if state.stop:
            return None
        self._run("lines", records.lazy().with_columns(self._line_context()))
        return records

    def _note_lines(self, records: pl.DataFrame) -> rec.HeaderRecord | None:
        """Count the chunk's records and note the first 900; the file's first record if here."""
        state = self.state
        filled = records.get_column("raw") != ""
        count = int(filled.sum())
        if count == 0:
            return None
        first = None
        if state.records == 0:
            row = records.row(int(filled.arg_max()), named=True)  # the first filled line
            state.first_record_line = row["line"]
            first = rec.HeaderRecord.of(
                self.member.name, row["line"], row["record_type"], row["raw"]
            )
        state.records += count
        if state.end_line is None:
            ends = records.get_column("line").filter(records.get_column("record_type") == "900")
            state.end_line = ends.first() if len(ends) else None
        return first

    def _check_header(self, first: rec.HeaderRecord) -> None:
        """Check the file's first record; a version other than this parser's ends the reading."""
        self._run("header", first)
        if first.record_type == "100":
            self.state.header = first.header()
            self.state.stop = self.state.header.version != self.version

    def _blocks(self, records: pl.DataFrame) -> pl.DataFrame:
        """Check the chunk's 200 records; the blocks its records belong to, B2B details kept."""
        state = self.state
        new_blocks = rec.blocks_frame(records)
        self._run("blocks", new_blocks.lazy())
        blocks = rec.usable_blocks(new_blocks, state.open_block)
        if not blocks.is_empty():
            state.open_block = blocks.tail(1)
        state.blocks = rec.last_block(records, state.blocks)
        state.days = int(records.get_column("day").max() or state.days)
        b2b = rec.b2b_frame(records, blocks)
        if b2b is not None and not b2b.is_empty():
            state.keep_b2b(b2b)
        return blocks

    def _line_context(self) -> list[pl.Expr]:
        """What the lines checks need of the file before this chunk."""
        return [
            pl.lit(self.state.first_record_line, pl.Int64).alias("first_record_line"),
            pl.lit(self.state.end_line, pl.Int64).alias("end_line"),
            pl.lit(self.version).alias("version"),
        ]

    def _run(self, frame: Frame, rows: pl.LazyFrame | rec.HeaderRecord) -> None:
        """Run the checks of ``frame`` on ``rows`` but those whose ``when`` no row meets;
        frame checks wait to run in one batch."""
        checks = checks_on(frame)
        if isinstance(rows, pl.LazyFrame):
            checks = _may_find(rows, checks)
        for rule, run, _ in checks:
            found = run(rows)
            if isinstance(found, list):
                for row in found:
                    self.collector.add(
                        rule, row.message, line=row.line, record_type=row.record_type
                    )
            else:
                self.collector.add_frame(rule, found)

    # --- readings ----------------------------------------------------------------
    def _release(self, exploding: _Exploding) -> Iterator[pl.DataFrame]:
        """Yield a chunk's readings once its blocks are complete and not rejected."""
        readings, bad_values = (
            (None, None) if exploding.future is None else exploding.future.result()
        )
        if bad_values is not None:
            self._run("values", bad_values.lazy())
        if readings is not None and readings.is_empty():
            readings = None
        if readings is not None and not exploding.block_complete:
            last = exploding.last_block
            self._pending.append(readings.filter(pl.col("block") == last))
            readings = readings.filter(pl.col("block") != last)
        if exploding.block_complete and self._pending:
            held = concat_readings(self._pending)
            self._pending = []
            readings = held if readings is None else concat_readings([held, readings])
        if readings is None or self.collector.file_rejected:
            return
        rejected = self.collector.rejected_blocks
        if rejected:
            readings = readings.filter(~pl.col("block").is_in(list(rejected)))
        if readings.is_empty():
            return
        self.state.readings += (
            int(readings.get_column("intervals").sum()) if self.config.per_day else readings.height
        )
        yield readings.drop("block")

    # --- the end -----------------------------------------------------------------
    _data_records = "200/300"

    def _finish(self) -> ParseResult:
        state, c = self.state, self.collector
        if state.records == 0:
            if not c.file_rejected:
                c.add("file_empty", "the file holds no records")
        elif not state.stop and not state.read_failed:
            if state.end_line is None:
                c.add("end_missing", "no 900 end-of-data record: the file may be truncated")
            if state.blocks == 0 and state.header.line is not None:
                c.add(
                    "header_only",
                    f"the file holds a header but no {self._data_records} data records",
                    line=state.header.line,
                    record_type="100",
                )
        findings = c.finish()
        if c.file_rejected or (state.blocks and len(c.rejected_blocks) >= state.blocks):
            status: Status = "rejected"
        elif c.rejected_blocks:
            status = "partial"
        else:
            status = "accepted"
        return ParseResult(
            file=self.member.name,
            status=status,
            findings=findings,
            header=state.header,
            blocks=state.blocks,
            rejected_blocks=len(c.rejected_blocks),
            readings=0 if status == "rejected" else state.readings,
            b2b=state.b2b,
            records=(
                pl.concat(state.record_frames, how="vertical_relaxed")
                if state.record_frames
                else None
            ),
        )


@dataclass(frozen=True)
class _ReadFrames:
    """A NEM13 chunk's frames, built before its checks run: records, 250s and 550s."""

    size: int
    records: pl.DataFrame
    latin1: bool
    reads: pl.DataFrame
    b2b: pl.DataFrame


class _ReadFramer:
    """Builds each chunk's frames in file order, numbering blocks (250s) on from the
    chunk before; one worker thread calls it, ahead of the checks of the chunk before."""

    def __init__(self) -> None:
        self.blocks = 0

    def __call__(self, chunk: Chunk) -> _ReadFrames:
        block_record = spec.BLOCK_RECORD_OF[AccumulationParse.version]
        records, latin1 = rec.chunk_records(chunk, self.blocks, 0, block_record)
        self.blocks = rec.last_block(records, self.blocks)
        return _ReadFrames(
            len(chunk.data),
            records,
            latin1,
            reads_of.reads_frame(records),
            reads_of.read_b2b_frame(records),
        )


class AccumulationParse(Parse):
    """The parse of one NEM13 member: ``batches()`` yields accepted reads in
    ``spec.READ_SCHEMA``, one row per 250 record with its 550's fields.

    A block is one 250 (with its 550): an error in it rejects that read only. A
    worker builds the next chunk's frames while this thread checks the current one's
    (Polars releases the GIL), so the two stages share the cores.
    """

    version = "NEM13"
    _data_records = "250"

    def __init__(self, member: Member, config: ParseConfig | None = None) -> None:
        super().__init__(member, config)
        self._keys_seen = KeysSeen()

    def batches(self) -> Iterator[pl.DataFrame]:
        for warning in self.member.warnings:
            self.collector.add(warning.rule, warning.message)
        failure: ReadError | None = None
        try:
            with (
                self.member.open() as stream,
                ThreadPoolExecutor(1, thread_name_prefix="nem12-frames") as pool,
            ):
                chunks = iter_chunks(stream, self.config.limits, block_record="250")
                framer = _ReadFramer()
                waiting: Future[_ReadFrames] | None = None
                while not self.state.stop:
                    try:
                        chunk = next(chunks, None)
                    except ReadError as exc:  # the chunks before it are still checked
                        failure, chunk = exc, None
                    ahead = None if chunk is None else pool.submit(framer, chunk)
                    if waiting is not None:
                        yield from self._checked(waiting.result())
                    if ahead is None:
                        break
                    waiting = ahead
            if failure is not None:
                raise failure
        except ReadError as exc:
            self.state.read_failed = True
            self.collector.add(exc.rule, exc.message, line=exc.line)
        self._result = self._finish()

    def _checked(self, frames: _ReadFrames) -> Iterator[pl.DataFrame]:
        """Check a chunk's frames; yield its accepted reads (none once the file is rejected)."""
        if self.state.stop:
            return
        self.state.bytes_read += frames.size
        reads = self._reads_chunk(frames)
        if reads is not None and not reads.is_empty():
            self.state.readings += reads.height
            yield reads

    def _reads_chunk(self, frames: _ReadFrames) -> pl.DataFrame | None:
        state = self.state
        records = self._checked_lines(frames.records, frames.latin1)
        if records is None:
            return None
        state.blocks = rec.last_block(records, state.blocks)
        reads = frames.reads.with_columns(
            self._keys_seen.add_frame(reads_of.read_keys(frames.reads))
        )
        self._run("reads", reads.lazy())
        self._run("read_qualities", reads_of.read_qualities(reads).lazy())
        self._run("read_b2b", frames.b2b.lazy())
        if self.config.keep_records:
            state.record_frames.append(reads_of.read_record_frame(self.member.name, records, reads))
        if reads.is_empty() or self.collector.file_rejected:
            return None
        return reads_of.accepted_reads(reads, frames.b2b, self.collector.rejected_blocks)


def _may_find(
    rows: pl.LazyFrame, checks: list[tuple[str, Check, pl.Expr | None]]
) -> list[tuple[str, Check, pl.Expr | None]]:
    """The checks that may find some of ``rows``: those whose ``when`` a row meets
    (tested in one query), and those without one."""
    gated = [(i, when) for i, (_, _, when) in enumerate(checks) if when is not None]
    if not gated:
        return checks
    met = (
        rows.select(when.any().alias(str(i)) for i, when in gated)
        .collect(engine=CHUNK_ENGINE, optimizations=CHECK_OPTIMIZATIONS)
        .row(0)
    )
    skipped = {i for (i, _), hit in zip(gated, met, strict=True) if not hit}
    return [c for i, c in enumerate(checks) if i not in skipped]


def member_version(member: Member) -> str | None:
    """The VersionHeader of the member's first record, upper-cased; None if unreadable."""
    try:
        with member.open() as stream:
            head = stream.read(4096)
    except (ReadError, OSError, EOFError, ValueError):
        return None
    text = head.removeprefix(b"\xef\xbb\xbf").decode("latin-1")
    for line in text.splitlines():
        if line.strip():
            fields = [f.strip() for f in line.split(",")]
            return fields[1].upper() if fields[0] == "100" and len(fields) > 1 else None
    return None


def parse_member(member: Member, config: ParseConfig | None = None) -> Parse:
    """The parse of one MDFF file, NEM12 or NEM13 as its header says; nothing is read
    until its batches are iterated (but the header, to choose)."""
    if member_version(member) == AccumulationParse.version:
        return AccumulationParse(member, config)
    return Parse(member, config)


def parse_source(
    source, name: str | None = None, config: ParseConfig | None = None
) -> Iterator[Parse]:
    """One Parse per MDFF file in ``source`` (path, bytes or stream)."""
    config = config or ParseConfig()
    for member in iter_members(source, name=name, limits=config.limits):
        yield parse_member(member, config)
