"""The fault cases use the shared PostgreSQL and S3 (``tests/conftest.py``), and tally.

Every case records the faults it injected and how the meter-reading table
compares with what it must hold; the session ends with the totals (readings
checked, lost, duplicated), also written to ``.faults/fault_report.json``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
import pytest

REPORT = Path(__file__).resolve().parents[2] / ".faults" / "fault_report.json"


@dataclass
class CaseFigures:
    case: str
    faults: int
    readings_checked: int
    readings_lost: int
    readings_duplicated: int


@dataclass
class FaultTally:
    cases: list[CaseFigures] = field(default_factory=list)

    def record(
        self,
        case: str,
        faults: int,
        expected: set[tuple],
        conn: psycopg.Connection,
        stored_keys: str = "SELECT nmi, nmi_suffix, interval_start FROM nem12.meter_reading",
    ) -> CaseFigures:
        """Compare the table's keys (``stored_keys``, the readings' by default) with
        ``expected``: lost, and held twice or unexpected."""
        stored = Counter(conn.execute(stored_keys).fetchall())
        figures = CaseFigures(
            case,
            faults,
            len(expected),
            len(expected - set(stored)),
            sum(n - 1 for n in stored.values()) + len(set(stored) - expected),
        )
        self.cases.append(figures)
        return figures


_TALLY = pytest.StashKey[FaultTally]()


@pytest.fixture(scope="session")
def fault_tally(request) -> FaultTally:
    return request.config.stash.setdefault(_TALLY, FaultTally())


def pytest_terminal_summary(terminalreporter, config) -> None:
    tally = config.stash.get(_TALLY, None)
    if tally is None or not tally.cases:
        return
    totals = {
        "cases": len(tally.cases),
        "faults_injected": sum(c.faults for c in tally.cases),
        "readings_checked": sum(c.readings_checked for c in tally.cases),
        "readings_lost": sum(c.readings_lost for c in tally.cases),
        "readings_duplicated": sum(c.readings_duplicated for c in tally.cases),
    }
    terminalreporter.section("fault tally")
    for c in tally.cases:
        terminalreporter.write_line(
            f"{c.case}: {c.faults} faults, {c.readings_checked} readings checked, "
            f"{c.readings_lost} lost, {c.readings_duplicated} duplicated"
        )
    terminalreporter.write_line(
        "total: {cases} cases, {faults_injected} faults injected, {readings_checked} readings "
        "checked, {readings_lost} lost, {readings_duplicated} duplicated".format(**totals)
    )
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text(
        json.dumps({"totals": totals, "cases": [asdict(c) for c in tally.cases]}, indent=2)
    )
