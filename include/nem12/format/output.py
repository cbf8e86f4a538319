"""Writing accepted readings to Parquet or CSV with Polars' streaming sinks.

Each MDFF file is staged in its own temporary parts and kept only if the file
is not rejected in the end (a missing 900 is only known at the last line);
the kept parts then become the output, published with one atomic rename.
The parser's batches feed the sink as a Polars IO source, so encoding runs in
Polars' threads while the next chunk is parsed.

Parquet stores text as dictionaries. From a categorical column that costs a
lookup per row; from an Enum it costs nothing, so a file's 200-record text is
read ahead into Enums (``stream_enums``). A batch that does not fit them (a
value the read-ahead missed) starts a new part in the categorical schema.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from nem12.format.reading import Member, ReadError
from nem12.format.spec import READING_SCHEMA, STREAM_TEXT_FIELDS

FORMATS = (".parquet", ".csv")
#: Beyond this many distinct values of a field the read-ahead gives up (memory).
MAX_STREAM_VALUES = 100_000
_READ_AHEAD_BYTES = 8 << 20
#: A 200 record at a line start (``re`` finds it ~3x faster than ``bytes.find``).
_RECORD_200 = re.compile(rb"\n200,[^\n]*")


def stream_enums(member: Member) -> dict[str, pl.Enum]:
    """Enums holding every 200 record's NMI, suffix, register and serial number.

    The categories are a superset (both text decodings, both strippings) of
    what the parser reads; an unreadable member or too many values gives none.
    """
    values: dict[str, set[str]] = {column: set() for column in STREAM_TEXT_FIELDS}
    try:
        with member.open() as stream:
            carry = b"\n"
            while block := stream.read(_READ_AHEAD_BYTES):
                data = carry + block
                cut = data.rfind(b"\n")
                _collect_200_fields(data, values, end=cut)
                carry = data[cut : cut + 4096]
            _collect_200_fields(carry, values)
    except (ReadError, OSError, EOFError, ValueError):
        return {}
    return _enums(values)


def _enums(values: dict[str, set[str]]) -> dict[str, pl.Enum]:
    if any(len(found) > MAX_STREAM_VALUES for found in values.values()):
        return {}
    return {
        column: pl.Enum(sorted(found - {""})) for column, found in values.items() if found - {""}
    }


def _collect_200_fields(data: bytes, values: dict[str, set[str]], end: int | None = None) -> None:
    for match in _RECORD_200.finditer(data, 0, len(data) if end is None else end):
        line = match.group()[1:]
        for text in {line.decode("latin-1"), line.decode("utf-8", errors="replace")}:
            fields = text.split(",")
            for column, index in STREAM_TEXT_FIELDS.items():
                if index < len(fields):
                    values[column].update((fields[index].strip(), fields[index].strip(" \t\r")))


def decimal_as_text(column: str) -> pl.Expr:
    """A decimal column as text without trailing zeros."""
    return trimmed_text(pl.col(column)).alias(column)


def trimmed_text(decimal: pl.Expr) -> pl.Expr:
    """A decimal expression as text without trailing zeros (1.500 -> 1.5, 2.000 -> 2)."""
    value = decimal.cast(pl.String)
    return (
        pl.when(value.str.contains(".", literal=True))
        .then(value.str.strip_chars_end("0").str.strip_chars_end("."))
        .otherwise(value)
    )


def _csv_ready(frame: pl.LazyFrame, schema: dict[str, pl.DataType]) -> pl.LazyFrame:
    """Exact decimals as text without trailing zeros (CSV would pad them to the scale)."""
    return frame.with_columns(
        decimal_as_text(column) for column, dtype in schema.items() if isinstance(dtype, pl.Decimal)
    )


def readings_frame(
    batches: Iterable[pl.DataFrame], schema: dict[str, pl.DataType] = READING_SCHEMA
) -> pl.LazyFrame:
    """A LazyFrame that pulls reading batches from ``batches`` as Polars asks for them."""
    iterator = iter(batches)

    def source(
        with_columns: list[str] | None,
        predicate: pl.Expr | None,
        n_rows: int | None,
        batch_size: int | None,
    ) -> Iterator[pl.DataFrame]:
        for batch in iterator:
            if with_columns is not None:
                batch = batch.select(with_columns)
            if predicate is not None:
                batch = batch.filter(predicate)
            yield batch

    return register_io_source(io_source=source, schema=schema)


def prefetched(batches: Iterable[pl.DataFrame], depth: int = 1) -> Iterator[pl.DataFrame]:
    """Produce ``batches`` in a thread so parsing overlaps the consumer's work.

    Polars releases the GIL while it computes, so the two share both cores;
    ``depth`` bounds how many produced items wait in memory. A consumer that
    stops early (an error while sending, say) lets the producer finish too.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    break
                slots.put(batch)
        except BaseException as exc:  # handed to the consumer, re-raised there
            failure.append(exc)
        finally:
            slots.put(done)

    worker = threading.Thread(target=produce, name="nem12-parse", daemon=True)
    worker.start()
    try:
        while (item := slots.get()) is not done:
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while worker.is_alive():  # free a producer waiting for a slot
            with suppress(queue.Empty):
                slots.get(timeout=0.05)
        worker.join()
    if failure:
        raise failure[0]


def write_readings(
    batches: Iterable[pl.DataFrame], path: Path, schema: dict[str, pl.DataType] = READING_SCHEMA
) -> int:
    """Stream ``batches`` into ``path`` (.parquet or .csv); returns the rows written."""
    rows = 0

    def counted() -> Iterator[pl.DataFrame]:
        nonlocal rows
        for batch in batches:
            rows += batch.height
            yield batch

    frame = readings_frame(prefetched(counted()), schema)
    if path.suffix == ".parquet":
        frame.sink_parquet(path, compression="lz4", statistics=False)
    else:
        _csv_ready(frame, schema).sink_csv(path)
    return rows


class ReadingsOutput:
    """Stages each MDFF file's parts, keeps or discards them, publishes ``out`` atomically.

    ``schema``: READING_SCHEMA for NEM12 readings, READ_SCHEMA for NEM13 reads.
    """

    def __init__(
        self, out: str | os.PathLike[str], schema: dict[str, pl.DataType] = READING_SCHEMA
    ) -> None:
        self.out = Path(out)
        self.schema = schema
        self.fmt = self.out.suffix.lower()
        if self.fmt not in FORMATS:
            raise ValueError(f"output must end in .parquet or .csv, not {self.out.name!r}")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=".nem12-", dir=self.out.parent))
        self._kept: list[Path] = []
        self._staged: list[tuple[Path, int]] = []
        self._count = 0

    @property
    def has_rows(self) -> bool:
        """Whether a kept file gave rows (the output is worth publishing)."""
        return bool(self._kept)

    def enums_for(self, member: Member) -> dict[str, pl.Enum]:
        """The Enums worth reading ahead for ``member``: Parquet only (CSV writes text)."""
        return stream_enums(member) if self.fmt == ".parquet" else {}

    def write(self, batches: Iterable[pl.DataFrame], enums: dict[str, pl.Enum]) -> int:
        """Stage one MDFF file's readings; returns the rows staged."""
        source = iter(batches)
        held: list[pl.DataFrame] = []
        schema = {**self.schema, **enums}
        while True:
            if held:
                schema = dict(held[0].schema)
            switched: list[pl.DataFrame] = []

            def same_schema(
                held: list[pl.DataFrame] = held,
                schema: dict[str, pl.DataType] = schema,
                switched: list[pl.DataFrame] = switched,
            ) -> Iterator[pl.DataFrame]:
                yield from held
                for batch in source:
                    if dict(batch.schema) != schema:
                        switched.append(batch)
                        return
                    yield batch

            self._count += 1
            part = self._dir / f"part-{self._count:05d}{self.fmt}"
            self._staged.append((part, write_readings(same_schema(), part, schema)))
            if not switched:
                return sum(rows for _, rows in self._staged)
            held = switched

    def keep(self) -> None:
        """Keep the staged file's parts for the output."""
        for part, rows in self._staged:
            if rows:
                self._kept.append(part)
            else:
                part.unlink(missing_ok=True)
        self._staged = []

    def discard(self) -> None:
        """Drop the staged file's parts (the file was rejected)."""
        for part, _ in self._staged:
            part.unlink(missing_ok=True)
        self._staged = []

    def publish(self) -> None:
        """Write ``out`` from the kept parts."""
        target = self._dir / f"out{self.fmt}"
        if not self._kept:
            write_readings([], target, self.schema)
        elif len(self._kept) == 1:
            self._kept[0].replace(target)
        elif self.fmt == ".parquet":
            parts = [pl.scan_parquet(part) for part in self._kept]
            common = [part.cast(self.schema) for part in parts]  # per-file Enums differ
            pl.concat(common).sink_parquet(target, compression="lz4", statistics=False)
        else:
            with target.open("wb") as sink:
                for index, part in enumerate(self._kept):
                    with part.open("rb") as source:
                        if index:
                            source.readline()
                        shutil.copyfileobj(source, sink, 1 << 20)
        target.replace(self.out)
        shutil.rmtree(self._dir, ignore_errors=True)

    def abandon(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)
