"""Writing accepted readings to Parquet or CSV, batch by batch.

Each MDFF file is staged in its own temporary part and kept only if the file
is not rejected in the end (a missing 900 is only known at the last line);
the parts of the kept files then become the output, written atomically.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
from nem12.mdff import READING_SCHEMA

FORMATS = (".parquet", ".csv")


def _csv_ready(batch: pl.DataFrame) -> pl.DataFrame:
    """Exact decimals without trailing zeros; timestamps in ISO 8601 with offset."""
    value = pl.col("value").cast(pl.String)
    return batch.with_columns(
        value=pl.when(value.str.contains(r"\."))
        .then(value.str.strip_chars_end("0").str.strip_chars_end("."))
        .otherwise(value)
    )


class PartWriter:
    """Writes one file's batches to a temporary part."""

    def __init__(self, path: Path, fmt: str) -> None:
        self.path = path
        self.fmt = fmt
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._csv = None

    def write(self, batch: pl.DataFrame) -> None:
        if batch.is_empty():
            return
        self.rows += batch.height
        if self.fmt == ".parquet":
            table = batch.to_arrow()
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.path, table.schema, compression="zstd")
            self._parquet.write_table(table)
        else:
            if self._csv is None:
                self._csv = self.path.open("wb")
                _csv_ready(batch).write_csv(self._csv, include_header=True)
            else:
                _csv_ready(batch).write_csv(self._csv, include_header=False)

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._csv is not None:
            self._csv.close()


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

    def part(self) -> PartWriter:
        self._count += 1
        return PartWriter(self._dir / f"part-{self._count:05d}{self.fmt}", self.fmt)

    def keep(self, part: PartWriter) -> None:
        part.close()
        if part.rows:
            self._kept.append(part.path)

    def discard(self, part: PartWriter) -> None:
        part.close()
        part.path.unlink(missing_ok=True)

    def publish(self) -> None:
        """Write ``out`` from the kept parts."""
        target = self._dir / f"out{self.fmt}"
        if not self._kept:
            self._write_empty(target)
        elif len(self._kept) == 1:
            self._kept[0].replace(target)
        elif self.fmt == ".parquet":
            pl.scan_parquet(self._kept).sink_parquet(target, compression="zstd")
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

    def _write_empty(self, target: Path) -> None:
        empty = pl.DataFrame(schema=READING_SCHEMA)
        if self.fmt == ".parquet":
            pq.write_table(empty.to_arrow(), target)
        else:
            _csv_ready(empty).write_csv(target)
