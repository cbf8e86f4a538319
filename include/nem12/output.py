"""Writing accepted readings to Parquet or CSV with Polars' streaming sinks.

Each MDFF file is staged in its own temporary part and kept only if the file
is not rejected in the end (a missing 900 is only known at the last line);
the kept parts then become the output, published with one atomic rename.
The parser's batches feed the sink as a Polars IO source, so encoding runs in
Polars' threads while the next chunk is parsed.
"""

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import polars as pl
from polars.io.plugins import register_io_source

from nem12.mdff import READING_SCHEMA

FORMATS = (".parquet", ".csv")


def value_as_text() -> pl.Expr:
    """The exact decimal without trailing zeros (1.500 -> 1.5, 2.000 -> 2)."""
    value = pl.col("value").cast(pl.String)
    return (
        pl.when(value.str.contains(".", literal=True))
        .then(value.str.strip_chars_end("0").str.strip_chars_end("."))
        .otherwise(value)
        .alias("value")
    )


def _csv_ready(frame: pl.LazyFrame) -> pl.LazyFrame:
    return frame.with_columns(value_as_text())


def readings_frame(batches: Iterable[pl.DataFrame]) -> pl.LazyFrame:
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

    return register_io_source(io_source=source, schema=READING_SCHEMA)


def prefetched(batches: Iterable[pl.DataFrame], depth: int = 2) -> Iterator[pl.DataFrame]:
    """Produce ``batches`` in a thread so parsing overlaps the sink's encoding.

    Polars releases the GIL while it computes, so the two share both cores;
    ``depth`` bounds how many parsed batches wait in memory.
    """
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    done = object()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            for batch in batches:
                slots.put(batch)
        except BaseException as exc:  # handed to the consumer, re-raised there
            failure.append(exc)
        finally:
            slots.put(done)

    worker = threading.Thread(target=produce, name="nem12-parse", daemon=True)
    worker.start()
    while (item := slots.get()) is not done:
        yield item  # type: ignore[misc]
    worker.join()
    if failure:
        raise failure[0]


def write_readings(batches: Iterable[pl.DataFrame], path: Path) -> int:
    """Stream ``batches`` into ``path`` (.parquet or .csv); returns the rows written."""
    rows = 0

    def counted() -> Iterator[pl.DataFrame]:
        nonlocal rows
        for batch in batches:
            rows += batch.height
            yield batch

    frame = readings_frame(prefetched(counted()))
    if path.suffix == ".parquet":
        frame.sink_parquet(path, compression="lz4", statistics=False)
    else:
        _csv_ready(frame).sink_csv(path)
    return rows


class ReadingsOutput:
    """Collects kept parts and publishes them as ``out`` in one atomic rename."""

    def __init__(self, out: str | os.PathLike[str]) -> None:
        self.out = Path(out)
        self.fmt = self.out.suffix.lower()
        if self.fmt not in FORMATS:
            raise ValueError(f"output must end in .parquet or .csv, not {self.out.name!r}")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._dir = Path(tempfile.mkdtemp(prefix=".nem12-", dir=self.out.parent))
        self._kept: list[Path] = []
        self._count = 0

    def write_part(self, batches: Iterable[pl.DataFrame]) -> tuple[Path, int]:
        self._count += 1
        part = self._dir / f"part-{self._count:05d}{self.fmt}"
        return part, write_readings(batches, part)

    def keep(self, part: Path, rows: int) -> None:
        if rows:
            self._kept.append(part)
        else:
            part.unlink(missing_ok=True)

    def discard(self, part: Path) -> None:
        part.unlink(missing_ok=True)

    def publish(self) -> None:
        """Write ``out`` from the kept parts."""
        target = self._dir / f"out{self.fmt}"
        if not self._kept:
            write_readings([], target)
        elif len(self._kept) == 1:
            self._kept[0].replace(target)
        elif self.fmt == ".parquet":
            pl.scan_parquet(self._kept).sink_parquet(target, compression="lz4")
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
