"""KeysSeen: the reads of a file seen so far, exactly, in 8 bytes a key."""

from __future__ import annotations

import gc
import mmap
import random
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest

from nem12.format.parsing import state
from nem12.format.parsing.state import KeysSeen

SCHEMA = {"nmi": pl.String, "nmi_suffix": pl.String, "current_datetime_raw": pl.String}


def frame(rows: list[tuple[str | None, str | None, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


def model(frames: list[pl.DataFrame]) -> list[list[bool]]:
    """The expected ``repeated`` of each frame, from a set of the keys as tuples."""
    seen: set[tuple[object, ...]] = set()
    out = []
    for keys in frames:
        repeated = []
        for row in keys.iter_rows():
            repeated.append(row in seen)
            seen.add(row)
        out.append(repeated)
    return out


def check(frames: list[pl.DataFrame]) -> KeysSeen:
    seen = KeysSeen()
    for keys, expected in zip(frames, model(frames), strict=True):
        repeated = seen.add_frame(keys)
        assert repeated.name == "repeated"
        assert repeated.dtype == pl.Boolean
        assert repeated.to_list() == expected
    return seen


def random_frames(count: int, seed: int = 7) -> list[pl.DataFrame]:
    """``count`` frames of 0 to 400 reads drawn from a small pool, so keys repeat often."""
    rng = random.Random(seed)
    pool = [
        (
            f"NMI{rng.randrange(60):07d}",
            rng.choice(["E1", "B1", None]),
            f"2024{rng.randrange(40):08d}",
        )
        for _ in range(6_000)
    ]
    return [frame([rng.choice(pool) for _ in range(rng.randrange(401))]) for _ in range(count)]


def test_repeats_within_one_frame() -> None:
    keys = frame(
        [
            ("A", "E1", "20240101"),
            ("A", "E1", "20240102"),
            ("A", "E1", "20240101"),
            ("A", None, "20240101"),
            ("B", "E1", "20240101"),
            ("A", "E1", "20240101"),
            ("A", None, "20240101"),
        ]
    )
    assert KeysSeen().add_frame(keys).to_list() == [False, False, True, False, False, True, True]


def test_repeats_across_frames() -> None:
    check(
        [
            frame([("A", "E1", "1"), ("A", "E1", "2")]),
            frame([("A", "E1", "2"), ("A", "E1", "3"), ("A", "E1", "3")]),
            frame([]),
            frame([("A", "E1", "1"), ("B", "E1", "1"), ("A", "E1", "3"), (None, None, None)]),
            frame([(None, None, None), ("B", "E1", "1"), ("B", "E1", "2")]),
        ]
    )


def test_repeats_across_many_frames() -> None:
    frames = random_frames(300)
    seen = check(frames)
    distinct = {row for keys in frames for row in keys.iter_rows()}
    assert seen.nbytes == 8 * len(distinct)


def test_empty_frame() -> None:
    repeated = KeysSeen().add_frame(frame([]))
    assert repeated.name == "repeated"
    assert repeated.dtype == pl.Boolean
    assert repeated.len() == 0


def test_grows_past_its_reservation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "KEYS_RESERVED", 8 * 1_000)
    check(random_frames(120, seed=3))


def test_without_mmap(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> mmap.mmap:
        raise OSError("no mapping")

    monkeypatch.setattr(state.mmap, "mmap", refuse)
    check(random_frames(120, seed=5))


def test_stores_each_key_once_in_one_buffer() -> None:
    seen = KeysSeen()
    for start in range(0, 1_000_000, 40_000):
        seen.add_frame(pl.DataFrame({"key": np.arange(start, start + 40_000)}))
    assert seen.nbytes == 8 * 1_000_000
    arrays = [value for value in vars(seen).values() if isinstance(value, np.ndarray)]
    assert len(arrays) == 1  # the buffer; the runs are only its boundaries
    assert all(
        isinstance(end, int)
        for value in vars(seen).values()
        if isinstance(value, list)
        for end in value
    )


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_dropping_it_releases_its_mapping() -> None:
    def vm_size() -> int:
        return _status_kb("VmSize") * 1024

    before = vm_size()
    seen = KeysSeen()
    seen.add_frame(pl.DataFrame({"key": np.arange(100_000)}))
    reserved = vm_size() - before
    del seen  # no BufferError from views of the mapping
    gc.collect()
    assert vm_size() < before + reserved // 2 + 2**26


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


PEAK_SCRIPT = """
import numpy as np
import polars as pl

from nem12.format.parsing.state import KeysSeen


def hwm() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))


N, CHUNK = {n}, 40_000
chunks = [pl.DataFrame({{"key": np.arange(start, start + CHUNK)}}) for start in range(0, N, CHUNK)]
warm = KeysSeen()
for keys in chunks[:4]:
    warm.add_frame(keys)
del warm
try:
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # the peak back to what is resident now
except OSError:
    pass
base = hwm()
seen = KeysSeen()
for keys in chunks:
    seen.add_frame(keys)
print(hwm() - base, seen.nbytes)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/status")
def test_peak_memory_is_8_bytes_a_key() -> None:
    n = 3_000_000
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PEAK_SCRIPT.format(n=n))],
        capture_output=True,
        text=True,
        check=True,
    )
    growth, nbytes = map(int, done.stdout.split())
    assert nbytes == 8 * n
    assert growth < 8 * n * 1.3 + 4 * 2**20, f"peak grew {growth / 2**20:.1f} MiB for {n:,} keys"
