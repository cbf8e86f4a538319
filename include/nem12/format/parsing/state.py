"""What a parse carries from one chunk to the next."""

from __future__ import annotations

import mmap
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


#: Address space a KeysSeen reserves for its hashes: 2**28 reads (a NEM13 file of
#: about 40 GB) before it must grow by a copy. Only the pages written are resident.
KEYS_RESERVED = 2**31


class KeysSeen:
    """The distinct keys of a file's reads so far (NEM13's nmi, suffix and current
    read time), as one 64-bit hash each: 8 bytes a read (none for a repeat), however
    long the key.

    Kept as sorted runs of about doubling sizes, one after another in one buffer
    (a run is merged into the one before it once it is as long), so a chunk's
    lookup is a binary search per run, the upkeep stays O(n log n) overall, and a
    merge sorts the two runs where they lie: no copy. The buffer is a reservation
    of address space, resident only as written. Two different keys share a hash
    with odds of about n**2 / 2**65 per file (one in a million for 5,000,000 reads).
    """

    def __init__(self) -> None:
        self._keys = _reserve(KEYS_RESERVED // 8, 0)  # the runs, the oldest (and longest) first
        self._ends: list[int] = []  # where each run ends in ``_keys``

    @property
    def nbytes(self) -> int:
        """The bytes of hashes held: 8 a distinct key."""
        return 8 * (self._ends[-1] if self._ends else 0)

    def add_frame(self, keys: pl.DataFrame) -> pl.Series:
        """Record each row's key; True where it was seen before (earlier rows included)."""
        hashes = keys.select(pl.struct(keys.columns).hash(seed=1)).to_series().to_numpy()
        order = np.argsort(hashes)
        new = hashes[order]
        seen = _repeats(new)
        if seen.any():  # the first of equal hashes must be the earliest row: sort stably
            order = np.argsort(hashes, kind="stable")
            new = hashes[order]
            seen = _repeats(new)
        self._look_up(new, seen)
        self._append(new[~seen])
        repeated = np.empty(len(new), dtype=bool)
        repeated[order] = seen
        return pl.Series("repeated", repeated)

    def _look_up(self, new: np.ndarray, seen: np.ndarray) -> None:
        """Set ``seen`` where the sorted hashes ``new`` are in a run."""
        start = 0
        for end in self._ends:  # no run is empty
            run = self._keys[start:end]
            at = np.searchsorted(run, new)  # sorted needles: each search starts from the last
            np.minimum(at, end - start - 1, out=at)
            seen |= run[at] == new
            start = end

    def _append(self, run: np.ndarray) -> None:
        """Write the sorted, new hashes ``run`` after the last run; merge the runs it evens."""
        if not len(run):
            return
        start = self._ends[-1] if self._ends else 0
        end = start + len(run)
        if end > len(self._keys):
            room = max(end, 2 * len(self._keys))
            grown = _reserve(room, room)
            grown[:start] = self._keys[:start]
            self._keys = grown
        self._keys[start:end] = run
        self._ends.append(end)
        while len(self._ends) > 1:
            first = self._ends[-3] if len(self._ends) > 2 else 0
            if self._ends[-2] - first > end - self._ends[-2]:
                break
            del self._ends[-2]
            self._keys[first:end].sort()  # in place: quicksort, no buffer


def _repeats(hashes: np.ndarray) -> np.ndarray:
    """Of sorted ``hashes``, True where one equals the one before."""
    repeats = np.zeros(len(hashes), dtype=bool)
    np.equal(hashes[1:], hashes[:-1], out=repeats[1:])
    return repeats


def _reserve(count: int, least: int) -> np.ndarray:
    """Room for ``count`` uint64, resident only as written: an anonymous mapping, or
    where mapping fails an array of ``least`` (grown by a copy when full)."""
    try:
        flags = mmap.MAP_PRIVATE | getattr(mmap, "MAP_NORESERVE", 0)
        return np.frombuffer(mmap.mmap(-1, 8 * count, flags=flags), dtype=np.uint64)
    except OSError:
        return np.empty(least, dtype=np.uint64)


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
