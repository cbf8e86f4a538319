"""Synthetic NEM12 and NEM13 files: valid by default, with deliberate defects on request.

Each defect is named by the rule it must trigger, so a test can ask for
``value_negative`` and assert that exactly that rule fires. Large files are
written fast by drawing each day's values from a pool of pre-formatted days.
NEM13 (``Nem13Spec``, ``NEM13_DEFECTS``): chains of accumulation reads per
register, each read's previous read the last one's current read.
"""

from __future__ import annotations

import gzip
import io
import random
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from nem12.format.spec import READ_FIELDS, TRANS_CODES

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
    #: The other days' QualityMethod, drawn per day when there are several (S and F
    #: days get reason code 76).
    day_qualities: tuple[str, ...] = ("A",)
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
            quality = "V" if variable else self.day_quality()
            reason = "76" if quality[0] in "SF" else ""
            yield ["300", interval_date, *self.values(), quality, reason, "", update, msats]
            if variable:
                n = s.intervals
                cut_a, cut_b = sorted(self.rng.sample(range(1, n), 2))
                yield ["400", "1", str(cut_a), "A", "", ""]
                yield ["400", str(cut_a + 1), str(cut_b), "S14", "76", ""]
                yield ["400", str(cut_b + 1), str(n), "E52", "", ""]

    def day_quality(self) -> str:
        qualities = self.spec.day_qualities
        return qualities[self.rng.randrange(len(qualities))] if len(qualities) > 1 else qualities[0]

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


# --- NEM13: accumulation (basic meter) data ------------------------------------------

#: Registers (NMISuffix) whose DirectionIndicator is I, as in AEMO's scenario-12 examples.
NEM13_IMPORT_SUFFIXES = ("12", "42")
#: Quality fields of substituted reads (QualityMethod, ReasonCode, ReasonDescription):
#: S and F need a method number and a reason, reason 0 a description.
NEM13_SUBSTITUTIONS = (
    ("S61", "13", "Locked Gate"),
    ("S64", "45", ""),
    ("S52", "12", ""),
    ("S61", "0", "Dog on premises"),
    ("F64", "52", ""),
)
#: The methods of forward estimates (E needs a method number, no reason).
NEM13_ESTIMATES = ("E62", "E64")


@dataclass(frozen=True)
class Nem13Spec:
    """A NEM13 file: ``nmis`` NMIs, each register a chain of ``reads`` reads.

    A chain's first previous read is an actual read; each read's previous read
    (value, time and quality) is the last read's current one. Dials have
    ``digits`` whole digits (written with leading zeros) and ``decimals``
    decimals; the quantity is current - previous, plus 10**digits where the dial
    rolled over (``rollover_share`` of the chains roll over in their first read).
    """

    nmis: int = 2
    reads: int = 3
    registers: tuple[str, ...] = ("11", "41")
    seed: int = 0
    start: datetime = datetime(2023, 1, 9, 10, 30, 0)
    read_days: int = 91  # days from one read to the next, give or take five
    digits: int = 5
    decimals: int = 1
    rollover_share: float = 0.25
    substituted_share: float = 0.1
    estimate_share: float = 0.2  # chains whose last read is a forward estimate (E)
    b2b_share: float = 0.3  # reads with a 550 after them
    header_datetime: datetime = datetime(2024, 2, 1, 9, 30)
    from_participant: str = "MDPGEN"
    to_participant: str = "RETAILER"
    defects: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not 4 <= self.digits <= 15 or not 0 <= self.decimals <= 14:
            raise ValueError("a NEM13 dial has 4 to 15 whole digits and 0 to 14 decimals")
        if self.read_days < 1:
            raise ValueError("reads are at least a day apart")
        if len(set(self.registers)) != len(self.registers) or "" in self.registers:
            raise ValueError("registers are distinct NMI suffixes")

    @property
    def read_count(self) -> int:
        """The 250 records of the file without defects."""
        return self.nmis * len(self.registers) * self.reads

    def nmi(self, index: int) -> str:
        return f"Q{self.seed % 10}{index:08d}"


def _stamp(when: datetime) -> str:
    """YYYYMMDDHHMMSS, without strftime (a million reads write three each)."""
    day = f"{when.year:04d}{when.month:02d}{when.day:02d}"
    return f"{day}{when.hour:02d}{when.minute:02d}{when.second:02d}"


class _Nem13Writer:
    def __init__(self, spec: Nem13Spec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.scale = 10**spec.decimals
        self.dial = 10**spec.digits * self.scale  # the dial's span, in its smallest unit

    def dial_text(self, units: int) -> str:
        whole, fraction = divmod(units, self.scale)
        text = f"{whole:0{self.spec.digits}d}"
        return f"{text}.{fraction:0{self.spec.decimals}d}" if self.spec.decimals else text

    def quantity_text(self, units: int) -> str:
        whole, fraction = divmod(units, self.scale)
        return f"{whole}.{fraction:0{self.spec.decimals}d}" if self.spec.decimals else str(whole)

    def usage(self) -> int:
        return self.rng.randrange(50 * self.scale, 3000 * self.scale)

    def next_time(self, when: datetime) -> datetime:
        rng, days = self.rng, self.spec.read_days
        later = when + timedelta(days=days + rng.randint(-5, 5) if days > 5 else days)
        return later.replace(
            hour=rng.randrange(8, 17), minute=rng.randrange(60), second=rng.randrange(60)
        )

    def quality(self, last: bool, estimate_last: bool) -> tuple[str, str, str]:
        if last and estimate_last:
            return (self.rng.choice(NEM13_ESTIMATES), "", "")
        if self.rng.random() < self.spec.substituted_share:
            return self.rng.choice(NEM13_SUBSTITUTIONS)
        return ("A", "", "")

    def chain(self, nmi_index: int, register: int, suffix: str) -> Iterator[Record]:
        s, rng = self.spec, self.rng
        nmi, configuration = s.nmi(nmi_index), "".join(s.registers)
        direction = "I" if suffix in NEM13_IMPORT_SUFFIXES else "E"
        meter = f"M{nmi_index:07d}"
        use = self.usage()
        if rng.random() < s.rollover_share:
            value = self.dial - rng.randrange(1, use)  # rolls over in the first read
        else:
            value = rng.randrange(self.dial // 2)
        when = (s.start + timedelta(days=rng.randrange(30))).replace(
            hour=rng.randrange(8, 17), minute=rng.randrange(60), second=rng.randrange(60)
        )
        previous_quality = ("A", "", "")
        estimate_last = rng.random() < s.estimate_share
        for k in range(s.reads):
            if k:
                use = self.usage()
            current = (value + use) % self.dial
            current_when = self.next_time(when)
            quality = self.quality(k == s.reads - 1, estimate_last)
            updated = current_when + timedelta(hours=rng.randrange(12, 48))
            msats = (
                "" if rng.random() < 0.3 else _stamp(updated + timedelta(hours=rng.randrange(1, 6)))
            )
            next_read = (
                "" if rng.random() < 0.1 else f"{current_when + timedelta(days=s.read_days):%Y%m%d}"
            )
            yield [
                "250",
                nmi,
                configuration,
                str(register),
                suffix,
                suffix,
                meter,
                direction,
                self.dial_text(value),
                _stamp(when),
                *previous_quality,
                self.dial_text(current),
                _stamp(current_when),
                *quality,
                self.quantity_text(use),
                "kWh",
                next_read,
                _stamp(updated),
                msats,
            ]
            if rng.random() < s.b2b_share:
                orders = [
                    f"SO{nmi_index:07d}{k:03d}{n}" if rng.random() < 0.5 else "" for n in "PC"
                ]
                yield [
                    "550",
                    rng.choice(TRANS_CODES),
                    orders[0],
                    rng.choice(TRANS_CODES),
                    orders[1],
                ]
            value, when, previous_quality = current, current_when, quality

    def header(self) -> Record:
        s = self.spec
        return [
            "100",
            "NEM13",
            s.header_datetime.strftime("%Y%m%d%H%M"),
            s.from_participant,
            s.to_participant,
        ]

    def records(self) -> Iterator[Record]:
        s = self.spec
        yield self.header()
        for nmi_index in range(1, s.nmis + 1):
            for register, suffix in enumerate(s.registers, start=1):
                yield from self.chain(nmi_index, register, suffix)
        yield ["900"]


#: Where each 250 field is (``spec.READ_FIELDS``).
_AT = READ_FIELDS


def _set_read(
    records: list[Record], name: str, value: str, where: Callable[[Record], bool] | None = None
) -> int:
    index = _first(records, "250", where)
    records[index][_AT[name]] = value
    return index


def _set_read_quality(
    records: list[Record], quality: str, reason: str, description: str = ""
) -> int:
    index = _first(records, "250")
    at = _AT["current_quality_method"]
    records[index][at : at + 3] = [quality, reason, description]
    return index


def _after_read(records: list[Record], index: int) -> int:
    """Index of the record after the read at ``index`` and its 550s."""
    index += 1
    while index < len(records) and records[index][0] == "550":
        index += 1
    return index


def _first_b2b(records: list[Record]) -> int:
    """Index of the first read's 550, one added after it if it has none."""
    index = _first(records, "250") + 1
    if records[index][0] != "550":
        records.insert(index, ["550", "N", "", "A", ""])
    return index


def _insert(records: list[Record], index: int, new: Record) -> int:
    records.insert(index, new)
    return index


def _advance_is_quantity(r: Record) -> bool:
    """The read did not roll over: its quantity is current - previous."""
    current, previous, quantity = (
        Decimal(r[_AT[name]])
        for name in ("current_register_read", "previous_register_read", "quantity")
    )
    return current - previous == quantity


def _negative_read(records: list[Record]) -> int:
    """A register running backwards (as AEMO's scenario-12 examples of UNITEDDP): the
    reads swapped and the quantity their negative advance, so only its sign is wrong."""
    index = _first(records, "250", _advance_is_quantity)
    r = records[index]
    before, after = _AT["previous_register_read"], _AT["current_register_read"]
    r[before], r[after] = r[after], r[before]
    r[_AT["quantity"]] = str(-Decimal(r[_AT["quantity"]]))
    return index


def _repeat_read(records: list[Record]) -> int:
    first = _first(records, "250")
    return _insert(records, _after_read(records, first), list(records[first]))


def _truncate_read(records: list[Record]) -> int:
    index = _first(records, "250")
    records[index] = records[index][:10]
    return index


def _extra_b2b_field(records: list[Record]) -> int:
    index = _first_b2b(records)
    records[index] = [*records[index], "", "extra"]
    return index


def _set_b2b(records: list[Record], position: int, value: str) -> int:
    index = _first_b2b(records)
    records[index][position] = value
    return index


def _repeat_b2b(records: list[Record]) -> int:
    index = _first_b2b(records)
    return _insert(records, index + 1, list(records[index]))


def _previous_estimated(records: list[Record]) -> int:
    index = _first(records, "250")
    at = _AT["previous_quality_method"]
    records[index][at : at + 3] = ["E64", "", ""]
    return index


def _period_reversed(records: list[Record]) -> int:
    index = _first(records, "250")
    r = records[index]
    r[_AT["previous_register_read_datetime"]] = r[_AT["current_register_read_datetime"]]
    return index


def _more_quantity(records: list[Record]) -> int:
    index = _first(records, "250")
    records[index][_AT["quantity"]] = str(Decimal(records[index][_AT["quantity"]]) + 1)
    return index


def _set_header(records: list[Record], position: int, value: str) -> int:
    records[0][position] = value
    return 0


def _header_only(records: list[Record]) -> int:
    del records[1:-1]
    return 0


def _end_missing(records: list[Record]) -> None:
    records.pop()


#: One defect per rule a NEM13 file can break, each on the first read (or its 550,
#: one added where it has none) unless the rule is about the file. Each returns the
#: index of the record it breaks (its line is one more), None for a missing record.
NEM13_DEFECTS: dict[str, Callable[[list[Record]], int | None]] = {
    "direction_indicator": lambda r: _set_read(r, "direction_indicator", "X"),
    "register_read_invalid": lambda r: _set_read(r, "previous_register_read", "12a45"),
    "read_datetime_invalid": lambda r: _set_read(
        r, "previous_register_read_datetime", "20230231093000"
    ),
    "read_datetime_nonstandard": lambda r: _set_read(
        r, "current_register_read_datetime", "209912310000"
    ),
    "read_period_order": _period_reversed,
    "previous_read_estimated": _previous_estimated,
    "quantity_invalid": lambda r: _set_read(r, "quantity", "12x"),
    "quantity_negative": _negative_read,
    "quantity_mismatch": _more_quantity,
    "next_read_date_invalid": lambda r: _set_read(r, "next_scheduled_read_date", "20230230"),
    "read_repeated": _repeat_read,
    "trans_code_invalid": lambda r: _set_b2b(r, 1, "Z"),
    "b2b_repeated": _repeat_b2b,
    "record_fields": _truncate_read,
    "record_fields_550": _extra_b2b_field,
    "nmi_missing": lambda r: _set_read(r, "nmi", ""),
    "nmi_format": lambda r: _set_read(r, "nmi", "SHORT"),
    "nmi_suffix_missing": lambda r: _set_read(r, "nmi_suffix", ""),
    "uom_invalid": lambda r: _set_read(r, "uom", "furlongs"),
    "quality_method": lambda r: _set_read_quality(r, "V", ""),
    "quality_method_number": lambda r: _set_read_quality(r, "S", "13"),
    "reason_code_required": lambda r: _set_read_quality(r, "S61", ""),
    "reason_code_invalid": lambda r: _set_read_quality(r, "S61", "555"),
    "reason_description_required": lambda r: _set_read_quality(r, "S61", "0"),
    "update_datetime_invalid": lambda r: _set_read(r, "update_datetime", "2023"),
    "update_datetime_nonstandard": lambda r: _set_read(r, "update_datetime", "202401010000"),
    "msats_datetime_invalid": lambda r: _set_read(r, "msats_load_datetime", "yesterday"),
    "record_outside_block": lambda r: _insert(r, 1, ["550", "N", "", "A", ""]),
    "record_wrong_version": lambda r: _insert(
        r, _after_read(r, _first(r, "250")), ["300", "20240101", *["1.0"] * 48, "A", "", "", "", ""]
    ),
    "record_type_unknown": lambda r: _insert(r, _first(r, "250") + 1, ["350", "not", "nem13"]),
    "header_repeated": lambda r: _insert(r, 1, list(r[0])),
    "header_datetime": lambda r: _set_header(r, 2, "202313451200"),
    "version_invalid": lambda r: _set_header(r, 1, "NEM99"),
    "end_repeated": lambda r: _insert(r, len(r), ["900"]),
    "blank_line": lambda r: _insert(r, 1, []),
    "header_only": _header_only,
    "end_missing": _end_missing,
}
#: The rule of each NEM13 defect that is not named after it.
NEM13_DEFECT_RULES = {"record_fields_550": "record_fields"}


def nem13_defect_rule(defect: str) -> str:
    return NEM13_DEFECT_RULES.get(defect, defect)


def nem13_records(spec: Nem13Spec) -> Iterator[Record]:
    """The records of the valid file ``spec`` describes (its defects left out)."""
    return _Nem13Writer(spec).records()


def nem13_records_with_defects(spec: Nem13Spec) -> Iterator[Record]:
    unknown = [d for d in spec.defects if d not in NEM13_DEFECTS]
    if unknown:
        raise ValueError(f"unknown NEM13 defect(s) {', '.join(unknown)}; see --list-defects")
    if not spec.defects:
        yield from nem13_records(spec)
        return
    records = list(nem13_records(spec))
    for defect in spec.defects:
        NEM13_DEFECTS[defect](records)
    yield from records


def write_text(spec: GeneratorSpec | Nem13Spec, sink: TextIO) -> None:
    """Write the file ``spec`` describes, NEM12 or NEM13, CRLF line ends."""
    records = (
        nem13_records_with_defects(spec)
        if isinstance(spec, Nem13Spec)
        else _records_with_defects(spec)
    )
    buffer: list[str] = []
    for record in records:
        buffer.append(",".join(record))
        if len(buffer) >= 2048:
            sink.write("\r\n".join(buffer) + "\r\n")
            buffer.clear()
    if buffer:
        sink.write("\r\n".join(buffer) + "\r\n")


def generate_bytes(spec: GeneratorSpec | Nem13Spec) -> bytes:
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


def write_file(spec: GeneratorSpec | Nem13Spec, out: str | Path) -> Path:
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
