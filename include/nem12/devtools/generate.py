"""Synthetic NEM12 files: valid by default, with deliberate defects on request.

Each defect is named by the rule it must trigger, so a test can ask for
``value_negative`` and assert that exactly that rule fires. Large files are
written fast by drawing each day's values from a pool of pre-formatted days.
"""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TextIO

CHANNEL_UOM = {"E": "kWh", "B": "kWh", "Q": "kVArh", "K": "kVArh"}


@dataclass(frozen=True)
class GeneratorSpec:
    """What to generate; the defaults give a small valid file."""

    nmis: int = 2
    days: int = 2
    interval_length: int = 30
    channels: tuple[str, ...] = ("E1", "B1")
    seed: int = 0
    start_date: date = date(2024, 1, 1)
    header_datetime: datetime = datetime(2024, 2, 1, 9, 30)
    update_datetime: datetime = datetime(2024, 2, 1, 9, 15, 0)
    from_participant: str = "MDPGEN"
    to_participant: str = "RETAILER"
    variable_day_share: float = 0.1
    value_pool: int = 0  # 0: every day gets fresh values; N: draw days from N templates
    defects: tuple[str, ...] = field(default_factory=tuple)

    @property
    def intervals(self) -> int:
        return 1440 // self.interval_length

    def nmi(self, index: int) -> str:
        return f"6{self.seed % 10}{index:08d}"


Record = list[str]


class _Writer:
    def __init__(self, spec: GeneratorSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.pool = [self._fresh_values() for _ in range(spec.value_pool)]

    def _fresh_values(self) -> list[str]:
        rand = self.rng.randrange
        return [
            f"{v // 1000}.{v % 1000:03d}"
            for v in (rand(0, 20000) for _ in range(self.spec.intervals))
        ]

    def values(self) -> list[str]:
        if self.pool:
            return self.pool[self.rng.randrange(len(self.pool))]
        return self._fresh_values()

    def header(self) -> Record:
        s = self.spec
        return [
            "100",
            "NEM12",
            s.header_datetime.strftime("%Y%m%d%H%M"),
            s.from_participant,
            s.to_participant,
        ]

    def block(self, nmi_index: int, channel: str, register: int) -> Iterator[Record]:
        s = self.spec
        nmi = s.nmi(nmi_index)
        uom = CHANNEL_UOM.get(channel[0], "kWh")
        yield [
            "200",
            nmi,
            "".join(s.channels),
            str(register),
            channel,
            channel,
            f"MTR{nmi_index:05d}",
            uom,
            str(s.interval_length),
            "",
        ]
        update = s.update_datetime.strftime("%Y%m%d%H%M%S")
        msats = (s.update_datetime + timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
        for day in range(s.days):
            interval_date = (s.start_date + timedelta(days=day)).strftime("%Y%m%d")
            variable = self.rng.random() < s.variable_day_share
            quality = "V" if variable else "A"
            yield ["300", interval_date, *self.values(), quality, "", "", update, msats]
            if variable:
                n = s.intervals
                cut_a, cut_b = sorted(self.rng.sample(range(1, n), 2))
                yield ["400", "1", str(cut_a), "A", "", ""]
                yield ["400", str(cut_a + 1), str(cut_b), "S14", "76", ""]
                yield ["400", str(cut_b + 1), str(n), "E52", "", ""]

    def records(self) -> Iterator[Record]:
        s = self.spec
        yield self.header()
        for nmi_index in range(1, s.nmis + 1):
            for register, channel in enumerate(s.channels, start=1):
                yield from self.block(nmi_index, channel, register)
        yield ["900"]


def _first(records: list[Record], kind: str, where: Callable[[Record], bool] | None = None) -> int:
    for index, record in enumerate(records):
        if record[0] == kind and (where is None or where(record)):
            return index
    raise ValueError(f"no {kind} record to put the defect in")


def _quality_index(record: Record) -> int:
    return len(record) - 5


def _a_day(r: Record) -> bool:
    return r[_quality_index(r)] == "A"


def _v_day(r: Record) -> bool:
    return r[_quality_index(r)] == "V"


def _set(
    records: list[Record],
    kind: str,
    position: int,
    value: str,
    where: Callable[[Record], bool] | None = None,
) -> None:
    records[_first(records, kind, where)][position] = value


def _set_quality(records: list[Record], quality: str, reason: str = "") -> None:
    record = records[_first(records, "300", _a_day)]
    q = _quality_index(record)
    record[q], record[q + 1] = quality, reason


def _insert_after(
    records: list[Record], kind: str, new: Record, where: Callable[[Record], bool] | None = None
) -> None:
    records.insert(_first(records, kind, where) + 1, new)


def _remove_first(records: list[Record], kind: str, where: Callable[[Record], bool]) -> None:
    del records[_first(records, kind, where)]


def _day_400s(records: list[Record]) -> int:
    """Index of the first 400 after a V day."""
    return _first(records, "300", _v_day) + 1


def _swap_days(records: list[Record]) -> None:
    first = _first(records, "300")
    second = _first(records[first + 1 :], "300") + first + 1
    records[first], records[second] = records[second], records[first]


def _without_events(records: list[Record]) -> None:
    start = _day_400s(records)
    while start < len(records) and records[start][0] == "400":
        del records[start]


#: A NEM13 250 record, for a NEM12 file that must not hold one.
NEM13_READ_RECORD: Record = (
    "250,QB00000001,11,1,11,11,M1,E,000888,20240108103055,A,,,000999,20240408000000,"
    "E64,,,111,kWh,20240408,20240409000000,20240109103023"
).split(",")

DEFECTS: dict[str, Callable[[list[Record]], None]] = {
    "header_missing": lambda r: r.pop(0),
    "header_repeated": lambda r: r.insert(2, list(r[0])),
    "record_wrong_version": lambda r: _insert_after(r, "300", list(NEM13_READ_RECORD)),
    "version_invalid": lambda r: r[0].__setitem__(1, "NEM99"),
    "header_datetime": lambda r: r[0].__setitem__(2, "202313451200"),
    "end_missing": lambda r: r.pop(),
    "end_repeated": lambda r: r.append(["900"]),
    "data_after_end": lambda r: r.append(["500", "O", "", "", ""]),
    "record_type_unknown": lambda r: _insert_after(r, "300", ["350", "not", "nem12"]),
    "record_outside_block": lambda r: r.insert(1, list(r[2])),
    "header_only": lambda r: r.__setitem__(slice(1, -1), []),
    "record_fields": lambda r: r.__setitem__(_first(r, "200"), r[_first(r, "200")][:5]),
    "nmi_format": lambda r: _set(r, "200", 1, "SHORT"),
    "nmi_missing": lambda r: _set(r, "200", 1, ""),
    "nmi_suffix_missing": lambda r: _set(r, "200", 4, ""),
    "interval_length": lambda r: _set(r, "200", 8, "10"),
    "uom_invalid": lambda r: _set(r, "200", 7, "furlongs"),
    "value_count": lambda r: r[_first(r, "300")].pop(2),
    "interval_date": lambda r: _set(r, "300", 1, "20230230"),
    "interval_date_repeated": lambda r: _insert_after(
        r, "300", list(r[_first(r, "300", _a_day)]), _a_day
    ),
    "interval_date_order": _swap_days,
    "value_not_numeric": lambda r: _set(r, "300", 5, "abc"),
    "value_negative": lambda r: _set(r, "300", 5, "-1.5"),
    "quality_method": lambda r: _set_quality(r, "X"),
    "quality_method_number": lambda r: _set_quality(r, "S", "76"),
    "reason_code_required": lambda r: _set_quality(r, "S14", ""),
    "reason_code_invalid": lambda r: _set_quality(r, "S14", "555"),
    "reason_description_required": lambda r: _set_quality(r, "S14", "0"),
    "reason_code_on_variable": lambda r: r[_first(r, "300", _v_day)].__setitem__(
        _quality_index(r[_first(r, "300", _v_day)]) + 1, "76"
    ),
    "update_datetime_invalid": lambda r: r[_first(r, "300")].__setitem__(-2, "2023"),
    "update_datetime_nonstandard": lambda r: r[_first(r, "300")].__setitem__(-2, "202401010000"),
    "msats_datetime_invalid": lambda r: r[_first(r, "300")].__setitem__(-1, "yesterday"),
    "event_missing": _without_events,
    "event_unexpected": lambda r: _insert_after(r, "300", ["400", "1", "2", "A", "", ""], _a_day),
    "event_range": lambda r: r[_day_400s(r) + 2].__setitem__(2, "999"),
    "event_coverage": lambda r: r[_day_400s(r)].__setitem__(1, "2"),
    "event_quality": lambda r: r[_day_400s(r)].__setitem__(3, "V"),
    "blank_line": lambda r: r.insert(1, []),
}

#: Defects that need a V day in the first block.
_NEEDS_VARIABLE_DAY = {
    "reason_code_on_variable",
    "event_missing",
    "event_range",
    "event_coverage",
    "event_quality",
}


def _first_block_records(writer: _Writer) -> tuple[list[Record], Iterator[Record]]:
    """The records up to the end of the first block (defects go there), and the rest."""
    records = writer.records()
    head = [next(records)]
    for record in records:
        if record[0] == "200" and len(head) > 1:
            return head, _chain([record], records)
        head.append(record)
    return head, iter(())


def _chain(first: list[Record], rest: Iterator[Record]) -> Iterator[Record]:
    yield from first
    yield from rest


def _records_with_defects(spec: GeneratorSpec) -> Iterator[Record]:
    unknown = [d for d in spec.defects if d not in DEFECTS and d != "file_empty"]
    if unknown:
        raise ValueError(f"unknown defect(s) {', '.join(unknown)}; see --list-defects")
    if "file_empty" in spec.defects:
        return
    if not spec.defects:
        yield from _Writer(spec).records()
        return
    if _NEEDS_VARIABLE_DAY & set(spec.defects) and spec.days < 2:
        raise ValueError("event defects need --days 2 or more")
    writer = _Writer(spec)
    head, rest = _first_block_records(writer)
    tail = list(rest)
    if _NEEDS_VARIABLE_DAY & set(spec.defects) and not any(
        r[0] == "300" and _v_day(r) for r in head
    ):
        day = _first(head, "300")
        record = head[day]
        record[_quality_index(record)] = "V"
        n = spec.intervals
        head[day + 1 : day + 1] = [
            ["400", "1", str(n // 2), "A", "", ""],
            ["400", str(n // 2 + 1), str(n - 1), "S14", "76", ""],
            ["400", str(n), str(n), "A", "", ""],
        ]
    records = head + tail
    for defect in spec.defects:
        DEFECTS[defect](records)
    yield from records


def write_text(spec: GeneratorSpec, sink: TextIO) -> None:
    buffer: list[str] = []
    for record in _records_with_defects(spec):
        buffer.append(",".join(record))
        if len(buffer) >= 2048:
            sink.write("\r\n".join(buffer) + "\r\n")
            buffer.clear()
    if buffer:
        sink.write("\r\n".join(buffer) + "\r\n")


def generate_bytes(spec: GeneratorSpec) -> bytes:
    text = io.StringIO()
    write_text(spec, text)
    return text.getvalue().encode("ascii")


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """An in-memory zip of ``members`` (name -> content): deliveries, nested zips, bombs."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def write_file(spec: GeneratorSpec, out: str | Path) -> Path:
    """Write ``out`` as .csv, .gz or .zip (one member named like the MDP would)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".gz":
        with gzip.open(out, "wt", encoding="ascii", newline="") as sink:
            write_text(spec, sink)
    elif suffix == ".zip":
        member = out.with_suffix(".csv").name
        with (
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive,
            archive.open(member, "w", force_zip64=True) as raw,
            io.TextIOWrapper(raw, encoding="ascii", newline="") as sink,
        ):
            write_text(spec, sink)
    else:
        with out.open("w", encoding="ascii", newline="") as sink:
            write_text(spec, sink)
    return out
