"""What a parse carries from one chunk to the next."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from nem12.format.findings import CHUNK_ENGINE
from nem12.format.parsing.result import Header

#: 500 records kept per file in the result (all are counted): bounded memory.
B2B_KEPT = 10_000


class DaysSeen:
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
        repeated = _all_false(keys.height)
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

    def seen_before(self, days: pl.DataFrame) -> pl.Series:
        """Record the days' dates per stream; True where seen before, False where undated."""
        dated = pl.col("interval_date").is_not_null()
        keys = (
            days.lazy()
            .select("nmi", "nmi_suffix", "interval_date")
            .filter(dated)
            .collect(engine=CHUNK_ENGINE)
            # One chunk: Polars 2.1 panics filtering a multi-chunk frame by a shift and formatting.
            .rechunk()
        )
        repeated = self.add_frame(keys)
        if keys.height == days.height:
            return repeated
        rows = days.select(pl.arg_where(dated)).to_series()
        return _all_false(days.height).scatter(rows, repeated)


def _all_false(height: int) -> pl.Series:
    """A ``repeated`` column of ``height`` Falses, made without a Polars query."""
    return pl.Series("repeated", np.zeros(height, dtype=bool))


class KeysSeen:
    """The keys of a file's reads so far (NEM13's nmi, suffix and current read time),
    as one 64-bit hash each: 8 bytes a read, however long the key.

    Kept as sorted runs of about doubling sizes (a run is merged into the one
    before it once it is as long), so a chunk's lookup is a binary search per
    run, the upkeep stays O(n log n) overall, and a merge copies the runs it
    merges, not the whole set. Two different keys share a hash with odds of
    about n**2 / 2**65 per file (one in a million for 5,000,000 reads).
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def add_frame(self, keys: pl.DataFrame) -> pl.Series:
        """Record each row's key; True where it was seen before (earlier rows included)."""
        hashes = keys.select(pl.struct(keys.columns).hash(seed=1)).to_series()
        again = hashes.is_duplicated() & ~hashes.is_first_distinct()
        new = hashes.to_numpy()
        seen = np.zeros(len(new), dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, new), len(run) - 1)
            seen |= run[at] == new
        run = np.sort(new)
        while self._runs and len(self._runs[-1]) <= len(run):
            run = np.concatenate([self._runs.pop(), run])
            run.sort()  # in place: a merge holds its runs and one copy, no more
        self._runs.append(run)
        return (again | pl.Series(seen)).alias("repeated")


@dataclass
class ParseState:
    """Counters and context of the file so far; the checks read it as columns, never write it."""

    records: int = 0  # non-blank lines
    blocks: int = 0  # 200 records, numbering the blocks
    days: int = 0  # 300 records, numbering the days
    first_record_line: int | None = None
    header: Header = field(default_factory=Header)
    end_line: int | None = None  # of the first 900 record
    open_block: pl.DataFrame | None = None  # the last 200 block, which the next chunk may continue
    days_seen: DaysSeen = field(default_factory=DaysSeen)
    b2b: list[dict[str, object]] = field(default_factory=list)
    b2b_records: int = 0
    record_frames: list[pl.DataFrame] = field(default_factory=list)
    readings: int = 0
    bytes_read: int = 0
    decoded_latin1: bool = False
    stop: bool = False  # the header makes the rest of the file unreadable as NEM12
    read_failed: bool = False

    def keep_b2b(self, b2b: pl.DataFrame) -> None:
        """Count a chunk's 500 records and keep the first ``B2B_KEPT``."""
        self.b2b_records += b2b.height
        room = B2B_KEPT - len(self.b2b)
        if room > 0:
            self.b2b.extend(b2b.head(room).to_dicts())
