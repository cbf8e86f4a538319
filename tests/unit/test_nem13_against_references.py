"""Differential test on every real NEM13 example: our reads equal nemreader's and
aemo-mdff-reader's, and what the parser reports on each file is pinned.

Decimals are compared exactly: a reference's float becomes ``Decimal(str(f))``,
which is the number as written for every example (none has more than 15
significant digits), so a value we read differently from the text would show.
"""

from __future__ import annotations

import io
import logging
import zipfile
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import aemo_mdff_reader
import pytest
from nemreader import NEMFile

from tests.conftest import AEMO, AEMO_NEM13, NEM_READER_EXTRA, parse_all

EXAMPLES = [
    *sorted(AEMO_NEM13.glob("*.zip")),
    *sorted((AEMO / "unzipped").glob("Example_NEM13_*.csv")),
    NEM_READER_EXTRA / "NEM13#DATA_14121801#WBAYM#3044076134.V01",
]


def label(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def member_text(path: Path) -> str:
    """The file's text; a zip's one member (aemo-mdff-reader opens no zips)."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            (name,) = archive.namelist()
            return archive.read(name).decode("ascii")
    return path.read_text(encoding="ascii")


def exact(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def naive(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=None)


def ours(path: Path) -> list[dict]:
    parsed = parse_all(path)
    assert [r.status for r in parsed.results] == ["accepted"], label(path)
    return list(parsed.reads.iter_rows(named=True))


# --- nemreader ----------------------------------------------------------------------
#: Files nemreader does not read as NEM13, each with the reason: none.
NEMREADER_NOT_COMPARED: dict[str, str] = {}


def nemreader_data(path: Path):
    logging.getLogger("nemreader").setLevel(logging.ERROR)
    return NEMFile(str(path), strict=False).nem_data()


def nemreader_reads(path: Path) -> Counter:
    """(nmi, suffix, previous and current read datetime, quantity, previous and current
    register read, UOM upper-cased, current QualityMethod) of every read."""
    data = nemreader_data(path)
    assert data.header.version_header == "NEM13"
    return Counter(
        (
            nmi,
            suffix,
            r.t_start,
            r.t_end,
            exact(r.read_value),
            exact(r.val_start),
            exact(r.val_end),
            r.uom.upper(),
            r.quality_method,
        )
        for nmi, channels in data.readings.items()
        for suffix, reads in channels.items()
        for r in reads
    )


def our_reads_as_nemreader(rows: list[dict]) -> Counter:
    return Counter(
        (
            r["nmi"],
            r["nmi_suffix"],
            naive(r["previous_register_read_datetime"]),
            naive(r["current_register_read_datetime"]),
            r["quantity"],
            r["previous_register_read"],
            r["current_register_read"],
            r["uom"].upper(),
            r["current_quality_method"],
        )
        for r in rows
    )


B2B_FIELDS = (
    "previous_trans_code",
    "previous_ret_service_order",
    "current_trans_code",
    "current_ret_service_order",
)


def our_b2b(rows: list[dict]) -> list[tuple[str, ...]]:
    """The 550 kept with each read, in file order, empty fields as ''."""
    return [
        tuple(r[c] or "" for c in B2B_FIELDS)
        for r in sorted(rows, key=lambda r: r["line_number"])
        if any(r[c] is not None for c in B2B_FIELDS)
    ]


COMPARED_WITH_NEMREADER = [p for p in EXAMPLES if label(p) not in NEMREADER_NOT_COMPARED]


@pytest.mark.parametrize("path", COMPARED_WITH_NEMREADER, ids=label)
def test_same_reads_as_nemreader(path):
    mine = ours(path)
    assert len(mine) == member_text(path).count("\n250,") > 0
    assert our_reads_as_nemreader(mine) == nemreader_reads(path)


@pytest.mark.parametrize("path", COMPARED_WITH_NEMREADER, ids=label)
def test_same_b2b_details_as_nemreader(path):
    """nemreader keeps each 550 under the NMI and suffix of the 250 before it."""
    mine = ours(path)
    theirs = {
        (nmi, suffix): [tuple(getattr(b, c) for c in B2B_FIELDS) for b in details]
        for nmi, channels in nemreader_data(path).transactions.items()
        for suffix, details in channels.items()
    }
    by_stream: dict[tuple[str, str], list[tuple[str, ...]]] = {
        (r["nmi"], r["nmi_suffix"]): [] for r in mine
    }
    for r in sorted(mine, key=lambda r: r["line_number"]):
        if any(r[c] is not None for c in B2B_FIELDS):
            by_stream[(r["nmi"], r["nmi_suffix"])].append(tuple(r[c] or "" for c in B2B_FIELDS))
    assert by_stream == theirs


# --- aemo-mdff-reader ---------------------------------------------------------------
#: Files aemo-mdff-reader refuses, each with the reason (its quirk, not the file's).
AEMO_NOT_COMPARED = {
    "unzipped/Example_NEM13_consumption_data.csv": (
        "UpdateDateTime ' 20040108100333' has a space before it; aemo-mdff-reader does "
        "not strip fields and raises NEM12ParseError (nemreader and we strip it)"
    ),
    "unzipped/Example_NEM13_forward_estimate.csv": (
        "UpdateDateTime ' 20040409000000' has a space before it (as above)"
    ),
}


def test_aemo_mdff_reader_refuses_exactly_the_files_listed():
    refused = set()
    for path in EXAMPLES:
        try:
            list(aemo_mdff_reader.parse_accumulations(io.StringIO(member_text(path))))
        except aemo_mdff_reader.NEM12ParseError as exc:
            assert "Unrecognised date/time value: ' 2004" in str(exc)
            refused.add(label(path))
    assert refused == set(AEMO_NOT_COMPARED)


def aemo_reads(path: Path) -> Counter:
    """Every field of every 250 as aemo-mdff-reader reads it."""
    return Counter(
        (
            r.nmi,
            r.nmi_configuration,
            r.register_id,
            r.nmi_suffix,
            r.mdm_data_stream_identifier,
            r.meter_serial_number,
            r.direction_indicator,
            exact(r.previous_register_read),
            r.previous_register_read_datetime,
            r.previous_quality_method,
            r.previous_reason_code,
            r.previous_reason_description,
            exact(r.current_register_read),
            r.current_register_read_datetime,
            r.current_quality_method,
            r.current_reason_code,
            r.current_reason_description,
            exact(r.quantity),
            r.uom.upper(),
            r.next_scheduled_read_date,
            r.update_datetime,
            r.msats_load_datetime,
        )
        for r in aemo_mdff_reader.parse_accumulations(io.StringIO(member_text(path)))
    )


def our_reads_as_aemo(rows: list[dict]) -> Counter:
    def code(text: str | None) -> int | None:
        return None if text is None else int(text)

    def midnight(day) -> datetime | None:
        return None if day is None else datetime(day.year, day.month, day.day)

    return Counter(
        (
            r["nmi"],
            r["nmi_configuration"],
            r["register_id"],
            r["nmi_suffix"],
            r["mdm_data_stream_identifier"] or "",
            r["meter_serial_number"] or "",
            r["direction_indicator"],
            r["previous_register_read"],
            naive(r["previous_register_read_datetime"]),
            r["previous_quality_method"],
            code(r["previous_reason_code"]),
            r["previous_reason_description"] or "",
            r["current_register_read"],
            naive(r["current_register_read_datetime"]),
            r["current_quality_method"],
            code(r["current_reason_code"]),
            r["current_reason_description"] or "",
            r["quantity"],
            r["uom"].upper(),
            midnight(r["next_scheduled_read_date"]),
            naive(r["update_datetime"]),
            naive(r["msats_load_datetime"]),
        )
        for r in rows
    )


COMPARED_WITH_AEMO = [p for p in EXAMPLES if label(p) not in AEMO_NOT_COMPARED]


@pytest.mark.parametrize("path", COMPARED_WITH_AEMO, ids=label)
def test_same_reads_as_aemo_mdff_reader(path):
    assert our_reads_as_aemo(ours(path)) == aemo_reads(path)


@pytest.mark.parametrize("path", COMPARED_WITH_AEMO, ids=label)
def test_same_b2b_details_as_aemo_mdff_reader(path):
    """aemo-mdff-reader yields the 550s in file order, not tied to a read."""
    theirs = [
        tuple(getattr(b, c) for c in B2B_FIELDS)
        for b in aemo_mdff_reader.parse_b2b(io.StringIO(member_text(path)))
    ]
    assert our_b2b(ours(path)) == theirs


# --- what the parser reports --------------------------------------------------------
MISMATCH = "quantity_mismatch"
NEGATIVE = "quantity_negative"
AGILITY = [("filename_participants", 1)]  # file names say AGILITY, headers AGILITYM

#: (rule, line) of every finding on each example; every file is accepted whole.
#: Each was checked against the file's text:
EXPECTED_FINDINGS: dict[str, list[tuple[str, int]]] = {
    # 39013 - 38841 = 172, the quantity says 31
    "aemo-nem13/NEM13#000000000000011#CNRGYMDP#NEMMCO.zip": [(MISMATCH, 2)],
    "aemo-nem13/NEM13#SEN1311003#AGILITY#NEMMCO.zip": AGILITY,
    "aemo-nem13/NEM13#SEN1313043#AGILITY#NEMMCO.zip": AGILITY,
    "aemo-nem13/NEM13#SEN1316103#AGILITY#NEMMCO.zip": AGILITY,
    "aemo-nem13/NEM13#SEN1318143#AGILITY#NEMMCO.zip": AGILITY,
    # an I register rising 629 -> 1616 with quantity -987: the minus of its advance
    "aemo-nem13/NEM13#Scenario12#ETSAMDP#NEMMCO.zip": [(NEGATIVE, 2), (MISMATCH, 2)],
    # an I register falling 990.0 -> 980.0, quantity -10.0: the advance, negative
    "aemo-nem13/NEM13#Scenario12#UNITEDDP#NEMMCO.zip": [(NEGATIVE, 2)],
    # every read -10.000 (a falling register); the first is 290.00 -> 290.00
    "aemo-nem13/nem13#12#INTEGM#NEMMCO.zip": [
        (NEGATIVE, 2),
        (MISMATCH, 2),
        *((NEGATIVE, line) for line in range(4, 15)),
    ],
    # an I register rising 00105.4 -> 00110.5 with quantity -5.100
    "aemo-nem13/nem13#SCENARIO12#TCAUSTM#NEMMCO.zip": [(NEGATIVE, 2), (MISMATCH, 2)],
    # 0010015 - 0000950 = 9065, the quantity says 65
    "unzipped/Example_NEM13_forward_estimate.csv": [(MISMATCH, 4)],
}


def findings(path: Path) -> list[tuple[str, int]]:
    return [(f.rule, f.line) for r in parse_all(path).results for f in r.findings]


@pytest.mark.parametrize("path", EXAMPLES, ids=label)
def test_exact_findings_on_each_real_example(path):
    assert findings(path) == EXPECTED_FINDINGS.get(label(path), [])


@pytest.mark.parametrize("path", EXAMPLES, ids=label)
def test_each_real_example_is_accepted_with_every_read(path):
    (result,) = parse_all(path).results
    assert result.header.version == "NEM13"
    assert (result.status, result.rejected_blocks) == ("accepted", 0)
    assert result.readings == result.blocks == member_text(path).count("\n250,")
    assert all(f.severity == "warning" for f in result.findings)


def test_the_examples_are_all_there_and_every_listed_file_exists():
    assert len(EXAMPLES) == 34
    assert len([p for p in EXAMPLES if p.parent == AEMO_NEM13]) == 31
    assert sum(member_text(p).count("\n250,") for p in EXAMPLES) == 67 + 3 + 7
    assert set(EXPECTED_FINDINGS) | set(AEMO_NOT_COMPARED) <= {label(p) for p in EXAMPLES}
    assert len(COMPARED_WITH_NEMREADER) == 34 and len(COMPARED_WITH_AEMO) == 32
