"""Parquet output: 200-record text read ahead into Enums, with a lossless fallback."""

from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from nem12.cli import main
from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.format.output import stream_enums
from nem12.format.reading import iter_members
from nem12.format.spec import READING_SCHEMA
from tests.conftest import parse_all


def two_nmis() -> bytes:
    return generate_bytes(GeneratorSpec(nmis=2, days=1))


def enums_of(data: bytes) -> dict[str, list[str]]:
    (member,) = iter_members(io.BytesIO(data), name="f.csv")
    return {column: enum.categories.to_list() for column, enum in stream_enums(member).items()}


def parse_to_parquet(tmp_path: Path, data: bytes) -> pl.DataFrame:
    source = tmp_path / "in.csv"
    source.write_bytes(data)
    assert main(["parse", str(source), "--out", str(tmp_path / "out.parquet")]) == 0
    return pl.read_parquet(tmp_path / "out.parquet")


def as_reading_schema(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.cast(READING_SCHEMA)  # type: ignore[arg-type]


def test_read_ahead_finds_every_200_records_text():
    assert enums_of(two_nmis()) == {
        "nmi": ["6000000001", "6000000002"],
        "register_id": ["1", "2"],
        "nmi_suffix": ["B1", "E1"],
        "meter_serial_number": ["MTR00001", "MTR00002"],
    }


def test_read_ahead_of_a_file_without_200_records_gives_no_enums():
    assert enums_of(b"100,NEM12,202401010000,A,B\n900\n") == {}


def test_parquet_holds_the_text_as_enums_and_the_same_readings(tmp_path):
    data = two_nmis()
    table = parse_to_parquet(tmp_path, data)
    assert table.schema["nmi"] == pl.Enum(["6000000001", "6000000002"])
    assert as_reading_schema(table).equals(parse_all(data).readings)


def test_a_value_the_read_ahead_misses_loses_no_reading(tmp_path, monkeypatch):
    # A 200 record indented by stray spaces is read by the parser but not by
    # the read-ahead: its chunk falls back to categoricals in a part of its own.
    lines = two_nmis().decode().splitlines(keepends=True)
    last_200 = max(i for i, line in enumerate(lines) if line.startswith("200,"))
    lines[last_200] = "  " + lines[last_200].replace("MTR00002", "MTR99999")
    data = "".join(lines).encode()
    monkeypatch.setenv("NEM12_CHUNK_BYTES", "200")
    table = parse_to_parquet(tmp_path, data)
    assert table.schema["nmi"] == pl.Categorical()
    expected = parse_all(data).readings
    assert expected.height == 2 * 2 * 48
    assert as_reading_schema(table).equals(expected)


def test_files_with_different_enums_publish_one_table(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    first = generate_bytes(GeneratorSpec(nmis=1, days=1, seed=1))
    second = first.replace(b"6000000001", b"7000000001")
    (inputs / "a.csv").write_bytes(first)
    (inputs / "b.csv").write_bytes(second)
    assert main(["parse", str(inputs), "--out", str(tmp_path / "out.parquet")]) == 0
    table = pl.read_parquet(tmp_path / "out.parquet")
    expected = pl.concat([parse_all(first).readings, parse_all(second).readings])
    assert as_reading_schema(table).equals(expected)


def test_read_ahead_of_a_file_on_disk_across_read_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr("nem12.format.output._READ_AHEAD_BYTES", 97)  # 200 records cut mid-line
    path = tmp_path / "f.csv"
    path.write_bytes(two_nmis())
    for member in iter_members(path):
        on_disk = {c: e.categories.to_list() for c, e in stream_enums(member).items()}
    assert on_disk == enums_of(two_nmis())


def test_a_consumer_that_stops_early_lets_the_producer_thread_end():
    import threading

    from nem12.format.output import prefetched

    produced = []

    def endless():
        n = 0
        while True:
            produced.append(n)
            yield n
            n += 1

    for item in prefetched(endless(), depth=2):
        if item == 3:
            break
    assert not any(t.name == "nem12-parse" and t.is_alive() for t in threading.enumerate())
    assert len(produced) < 10
