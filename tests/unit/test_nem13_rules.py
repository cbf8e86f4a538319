"""Each NEM13 rule fires on the generated defect it names, at its line, and only then."""

from __future__ import annotations

import gzip
import itertools
import zipfile
from dataclasses import replace
from decimal import Decimal

import pytest

from nem12.cli import main
from nem12.devtools.generate import (
    NEM13_DEFECTS,
    Nem13Spec,
    generate_bytes,
    nem13_defect_rule,
    nem13_records,
    write_file,
)
from nem12.format.parsing.checks import CHECKS, RAISED_BY_DRIVER
from nem12.format.rules import RULES
from tests.conftest import parse_all

SPEC = Nem13Spec(nmis=2, reads=3, registers=("11", "41", "12"), seed=7)


def text_of(records: list[list[str]]) -> bytes:
    return "".join(",".join(r) + "\r\n" for r in records).encode("ascii")


@pytest.mark.parametrize(
    "spec",
    [
        Nem13Spec(),
        SPEC,
        Nem13Spec(nmis=5, reads=8, decimals=0, digits=6, rollover_share=1.0, seed=3),
        Nem13Spec(nmis=3, reads=4, decimals=2, digits=7, substituted_share=0.9, b2b_share=1.0),
        Nem13Spec(nmis=1, reads=1, registers=("12",), estimate_share=1.0),
    ],
    ids=repr,
)
def test_a_valid_generated_file_has_no_findings_and_every_read(spec):
    parsed = parse_all(generate_bytes(spec), name="g.csv")
    assert parsed.result.findings == []
    assert parsed.result.status == "accepted"
    assert parsed.result.readings == parsed.reads.height == spec.read_count


def test_the_generator_writes_what_the_rules_look_for():
    """Chains, rollovers, leading zeros, S/F/E qualities and 550s are all there."""
    spec = Nem13Spec(nmis=20, reads=5, seed=11)
    records = list(nem13_records(spec))
    reads = [r for r in records if r[0] == "250"]
    assert len(reads) == spec.read_count == 200
    assert sum(r[0] == "550" for r in records) > 0
    assert all(len(r) == 23 and len(r[8].split(".")[0]) == 5 for r in reads)
    by_register: dict[tuple[str, str], list[list[str]]] = {}
    for r in reads:
        by_register.setdefault((r[1], r[4]), []).append(r)
    for chain in by_register.values():
        for before, after in itertools.pairwise(chain):
            assert after[8:13] == before[13:18]  # previous read = the last current read
    assert any(Decimal(r[13]) < Decimal(r[8]) for r in reads)  # a rollover
    assert any(r[15][0] in "SF" and r[16] for r in reads)
    assert any(r[15][0] == "E" for r in reads)
    assert any(r[8].startswith("0") for r in reads)


def test_generation_is_deterministic_from_the_seed():
    assert generate_bytes(SPEC) == generate_bytes(SPEC)
    assert generate_bytes(SPEC) != generate_bytes(replace(SPEC, seed=8))


def expected_status(rule: str) -> str:
    r = RULES[rule]
    if r.severity == "warning":
        return "accepted"
    return "rejected" if r.scope == "file" else "partial"


@pytest.mark.parametrize("defect", list(NEM13_DEFECTS))
def test_each_generated_defect_triggers_exactly_its_rule_at_its_line(defect):
    records = list(nem13_records(SPEC))
    index = NEM13_DEFECTS[defect](records)
    data = generate_bytes(replace(SPEC, defects=(defect,)))
    assert data == text_of(records)
    rule = nem13_defect_rule(defect)
    line = None if index is None else index + 1
    parsed = parse_all(data, name="g13.csv")
    assert [(f.rule, f.line) for f in parsed.result.findings] == [(rule, line)]
    (finding,) = parsed.result.findings
    assert (finding.file, finding.severity) == ("g13.csv", RULES[rule].severity)
    status = expected_status(rule)
    assert parsed.result.status == status
    reads = sum(r[:1] == ["250"] for r in records)
    kept = {"accepted": reads, "partial": reads - 1, "rejected": 0}[status]
    assert parsed.result.readings == parsed.reads.height == kept


def test_every_nem13_rule_has_a_defect():
    """The 250/550 checks, the quality and timestamp checks they share with NEM12, and
    the file rules a NEM13 file can break."""
    checked = {rule for frame, rule in CHECKS if frame in ("reads", "read_qualities", "read_b2b")}
    file_rules = {"record_wrong_version", "record_outside_block", "header_only", "end_missing"}
    defects = {nem13_defect_rule(d) for d in NEM13_DEFECTS}
    assert checked | file_rules <= defects
    assert checked == {
        "record_fields",
        "nmi_missing",
        "nmi_format",
        "nmi_suffix_missing",
        "direction_indicator",
        "uom_invalid",
        "register_read_invalid",
        "read_datetime_invalid",
        "read_datetime_nonstandard",
        "quality_method",
        "quality_method_number",
        "reason_code_required",
        "reason_code_invalid",
        "reason_description_required",
        "read_period_order",
        "previous_read_estimated",
        "quantity_invalid",
        "quantity_negative",
        "quantity_mismatch",
        "next_read_date_invalid",
        "read_repeated",
        "update_datetime_invalid",
        "update_datetime_nonstandard",
        "msats_datetime_invalid",
        "trans_code_invalid",
        "b2b_repeated",
    }
    assert {"header_only", "end_missing"} <= RAISED_BY_DRIVER


def test_a_read_error_rejects_that_read_only():
    spec = replace(SPEC, defects=("quantity_invalid",))
    parsed = parse_all(generate_bytes(spec))
    assert (parsed.result.status, parsed.result.rejected_blocks) == ("partial", 1)
    assert parsed.result.blocks == spec.read_count
    assert parsed.reads.get_column("line_number").min() > 2


def test_unknown_defect_is_refused():
    with pytest.raises(ValueError, match="unknown NEM13 defect"):
        generate_bytes(replace(SPEC, defects=("value_negative",)))


def test_write_file_and_the_command_write_nem13(tmp_path, capsys):
    spec = Nem13Spec(nmis=1, reads=2)
    plain = generate_bytes(spec)
    assert write_file(spec, tmp_path / "a.csv").read_bytes() == plain
    assert gzip.decompress(write_file(spec, tmp_path / "a.gz").read_bytes()) == plain
    with zipfile.ZipFile(write_file(spec, tmp_path / "a.zip")) as archive:
        assert archive.read("a.csv") == plain
    out = tmp_path / "cli.csv"
    argv = ["generate", str(out), "--version", "NEM13", "--nmis", "3", "--reads", "4"]
    assert main([*argv, "--seed", "5"]) == 0
    assert out.read_bytes() == generate_bytes(
        Nem13Spec(nmis=3, reads=4, seed=5, start=Nem13Spec().start.replace(2024, 1, 1))
    )
    assert main(["validate", str(out)]) == 0
    assert main([*argv, "--defect", "read_repeated"]) == 0
    assert main(["validate", str(out)]) == 1
    assert main([*argv, "--defect", "value_negative"]) == 2
    capsys.readouterr()
    assert main(["generate", "--version", "NEM13", "--list-defects"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(NEM13_DEFECTS)


def _spaced(line: str) -> str:
    """A 250 or 550 as some MDPs write it: spaces and tabs beside its commas and ends."""
    return "\t " + line.replace(",", " ,", 3).replace(",", ",\t", 2) + "  "


def test_stray_spaces_beside_fields_are_dropped_and_free_text_keeps_its_own():
    spec = replace(SPEC, substituted_share=1.0)
    clean = parse_all(generate_bytes(spec))
    lines = generate_bytes(spec).decode().split("\r\n")
    spaced = [_spaced(line) if line[:3] in ("250", "550") else line for line in lines]
    parsed = parse_all("\r\n".join(spaced).encode())
    assert parsed.result.findings == clean.result.findings == []
    assert parsed.reads.equals(clean.reads)
    descriptions = parsed.reads.get_column("current_reason_description").drop_nulls()
    assert descriptions.str.contains(" ", literal=True).any()


def test_a_line_too_long_rejects_the_file_after_the_chunk_before_it_is_checked():
    """The chunk before the line is checked though the read error comes while the
    next chunk is read (a worker builds frames a chunk ahead)."""
    from nem12.format.parsing import ParseConfig
    from nem12.format.reading import ReadLimits

    lines = generate_bytes(replace(SPEC, nmis=30)).decode().split("\r\n")
    bad = next(i for i in range(120, len(lines)) if lines[i].startswith("250"))
    fields = lines[bad].split(",")
    fields[7] = "X"  # DirectionIndicator
    lines[bad] = ",".join(fields)
    long_at = bad + 2 + lines[bad + 1].startswith("550")  # the record after it
    lines.insert(long_at - 1, "250," + "9" * 5000)
    config = ParseConfig(limits=ReadLimits(chunk_bytes=1024, max_line_bytes=4096))
    parsed = parse_all("\r\n".join(lines).encode(), config=config)
    assert parsed.result.status == "rejected"
    assert [(f.rule, f.line) for f in parsed.result.findings] == [
        ("direction_indicator", bad + 1),
        ("line_too_long", long_at),
    ]
