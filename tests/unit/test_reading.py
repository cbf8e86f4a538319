"""Reading bytes: archives, nesting, limits against zip bombs, odd bytes."""

from __future__ import annotations

import gzip

import pytest

from nem12.devtools.generate import GeneratorSpec, generate_bytes, zip_bytes
from nem12.format.parsing import ParseConfig
from nem12.format.reading import ReadLimits, iter_members, record_texts
from tests.conftest import parse_all

VALID = generate_bytes(GeneratorSpec(nmis=1, days=2, channels=("E1",)))
READINGS = 2 * 48


def test_plain_gzip_and_zip_give_the_same_readings():
    plain = parse_all(VALID, name="a.csv")
    assert plain.readings.height == READINGS
    assert parse_all(gzip.compress(VALID), name="a.csv.gz").readings.equals(plain.readings)
    via_zip = parse_all(zip_bytes({"a.csv": VALID}), name="a.zip")
    assert via_zip.readings.equals(plain.readings)
    assert via_zip.result.file == "a.zip!a.csv"


def test_each_zip_member_is_a_file_of_its_own():
    bad = VALID.replace(b"900\r\n", b"")
    parsed = parse_all(zip_bytes({"good.csv": VALID, "bad.csv": bad}), name="two.zip")
    status = {r.file: r.status for r in parsed.results}
    assert status == {"two.zip!good.csv": "accepted", "two.zip!bad.csv": "rejected"}
    assert parsed.readings.height == READINGS


def test_zip_inside_zip_and_gzip_inside_zip_are_opened():
    inner = zip_bytes({"inner.csv": VALID})
    outer = zip_bytes(
        {"inner.zip": inner, "plain.csv": VALID, "packed.csv.gz": gzip.compress(VALID)}
    )
    parsed = parse_all(outer, name="outer.zip")
    assert sorted(r.file for r in parsed.results) == [
        "outer.zip!inner.zip!inner.csv",
        "outer.zip!packed.csv",
        "outer.zip!plain.csv",
    ]
    assert parsed.readings.height == 3 * READINGS


def test_nesting_deeper_than_the_limit_is_refused():
    data = VALID
    for level in range(5):
        data = zip_bytes({f"level{level}.zip" if level else "a.csv": data})
    parsed = parse_all(data, name="deep.zip", config=ParseConfig(limits=ReadLimits(max_depth=3)))
    assert parsed.rules() == {"archive_limit"}
    assert "nested deeper than 3" in parsed.result.findings[0].message


def test_zip_bomb_by_ratio_stops_with_a_clear_error():
    bomb = zip_bytes({"bomb.csv": (b"0" * 100_000 + b"\n") * 400})
    assert len(bomb) < 100_000
    parsed = parse_all(bomb, name="bomb.zip")
    assert parsed.rules() == {"archive_limit"}
    assert parsed.result.status == "rejected"
    assert "expands more than 500x" in parsed.result.findings[0].message


def test_nested_zip_bomb_stops_before_filling_memory_or_disk():
    layer = zip_bytes({f"b{i}.csv": (b"0" * 100_000 + b"\n") * 80 for i in range(4)})
    nested = zip_bytes({f"l{i}.zip": layer for i in range(4)})
    parsed = parse_all(nested, name="nested.zip")
    assert parsed.rules() == {"archive_limit"}
    assert len(parsed.results) == 4 * 4


def test_size_limit_per_member():
    limits = ReadLimits(max_member_bytes=len(VALID) // 2, max_ratio=10_000)
    parsed = parse_all(zip_bytes({"a.csv": VALID}), config=ParseConfig(limits=limits))
    assert parsed.rules() == {"archive_limit"}
    assert parsed.readings.height == 0


def test_corrupt_and_empty_archives_are_findings_not_crashes():
    corrupt = zip_bytes({"a.csv": VALID})[:60] + b"\x00" * 40
    assert parse_all(corrupt, name="c.zip").rules() == {"archive_invalid"}
    assert parse_all(zip_bytes({}), name="e.zip").rules() == {"archive_empty"}
    assert parse_all(gzip.compress(VALID)[:-30], name="t.gz").rules() == {"archive_invalid"}


def test_member_names_are_labels_never_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    parsed = parse_all(zip_bytes({"../../evil.csv": VALID, "/abs/x.csv": VALID}), name="t.zip")
    assert {r.file for r in parsed.results} == {"t.zip!../../evil.csv", "t.zip!/abs/x.csv"}
    assert parsed.rules() == {"member_name_unsafe"}
    assert parsed.readings.height == 2 * READINGS
    assert list(tmp_path.iterdir()) == []


def test_a_line_longer_than_the_limit_is_refused_without_reading_it_all():
    long_line = b"300," + b"1," * 600_000
    data = VALID.replace(b"900\r\n", long_line + b"\r\n900\r\n")
    parsed = parse_all(data, name="long.csv")
    assert parsed.rules() == {"line_too_long"}
    assert parsed.result.findings[0].line == VALID.count(b"\n")


def test_a_line_longer_than_four_chunks_is_read_whole():
    """A long line within the line limit is read on, not cut into empty chunks forever."""
    padded = VALID.replace(b",A,,,", b",A,,," + b" " * 5_000, 1)
    small = ParseConfig(limits=ReadLimits(chunk_bytes=997))
    parsed, whole = parse_all(padded, config=small), parse_all(padded)
    assert parsed.result.status == "accepted"
    assert parsed.readings.height == READINGS
    assert parsed.readings.equals(whole.readings)


@pytest.mark.parametrize(
    "data, rule",
    [
        (b"\x00\x01\x02\xff\xfe garbage \x80\x81", "header_missing"),
        (
            "100,NEM12,202401010000,ÄÖ,Ü\r\n".encode("latin-1") + VALID[VALID.index(b"200") :],
            "encoding",
        ),
        (VALID.decode().encode("utf-16"), "header_missing"),
        (b'"100","NEM12","202401010000","A","B"\r\n900\r\n', "header_missing"),
    ],
    ids=["binary", "latin-1", "utf-16", "quoted-fields"],
)
def test_odd_bytes_are_findings(data, rule):
    parsed = parse_all(data, name="odd.csv")
    assert rule in parsed.rules()


def test_members_of_a_path_source(tmp_path):
    path = tmp_path / "a.zip"
    path.write_bytes(zip_bytes({"x.csv": VALID, "y.csv": VALID}))
    assert [m.name for m in iter_members(path)] == ["a.zip!x.csv", "a.zip!y.csv"]
    missing = list(iter_members(tmp_path / "missing.csv"))
    assert missing[0].error is not None and missing[0].error.rule == "input_unreadable"


def test_gzip_bomb_is_stopped_while_streaming():
    bomb = gzip.compress((b"0" * 100_000 + b"\n") * 400, compresslevel=9)
    parsed = parse_all(bomb, name="bomb.csv.gz")
    assert "archive_limit" in parsed.rules()
    assert parsed.result.status == "rejected"


def test_record_texts_are_the_lines_findings_name_per_member_bounded():
    plain = b"\xef\xbb\xbf100,NEM12\r\n200,A\r\n" + b"300," + b"9" * 5000 + b"\r\n900\r\n"
    latin = b"100,NEM12\n250,caf\xe9\n900\n"
    data = zip_bytes({"a.csv": plain, "b.csv": latin})
    texts = record_texts(
        data, {"x.zip!a.csv": {1, 3, 4}, "x.zip!b.csv": {2}}, name="x.zip", chars=20
    )
    assert texts == {
        ("x.zip!a.csv", 1): "100,NEM12",
        ("x.zip!a.csv", 3): "300," + "9" * 16,
        ("x.zip!a.csv", 4): "900",  # the long line before it counts once
        ("x.zip!b.csv", 2): "250,café",
    }


def test_record_texts_stop_at_a_read_limit_the_parse_reported():
    """A member that trips a bomb limit while its lines are read gives what came before."""
    from tests.conftest import FIXTURES

    bomb = FIXTURES / "hostile" / "one_100mb_line.csv.gz"
    texts = record_texts(bomb, {"bomb.csv": {1, 2}}, name="bomb.csv.gz", chars=20)
    assert texts == {("bomb.csv", 1): "300,1,1,1,1,1,1,1,1,"}  # its 100 MB line trips the ratio
