"""The alerts fire exactly for the planted cases of a generated month, on a real
PostgreSQL, and never twice.

A month (January 2024, 31 days) of six NMIs at 30-minute intervals, every
ordinary consumption day one of three totals (19.2, 20.16, 21.12 kWh by the day
of the month, so every trailing median is 20.16 kWh), with planted cases and
near misses beside them:

* 6000000001 E1: 80 kWh on the 3rd (above 50: high), 50 kWh on the 5th (not
  above), 120 kWh on the 10th (above 50: critical; 5.95x the median: critical);
  its B1 exports all month (no export alert: it never was consumption only);
* 6000000002 E1: 45 kWh on the 4th (2.2x the median but 3 days before it: none),
  50 on the 15th and 44.352 on the 20th (above 2x the median: medium), 40.272 on
  the 25th (just under 2x) and 40.32 on the 28th (exactly 2x): none;
* 6000000003 E1: nothing for the 12th to the 14th (missing: medium, medium, high);
* 6000000004: B1 stops after the 24th while E1 goes on (missing the 25th to the
  31st: 2 medium, 4 high, the 7th day critical);
* 6000000005 E1: 40 of 48 intervals estimated on the 18th (high), 24 on the 22nd
  (exactly the limit: none), a null day on the 27th (critical), 16 estimated and
  10 null on the 29th (medium);
* 6000000006: E1 only until B1 starts exporting 3 kWh a day on the 20th (one
  alert, on the 20th: high).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from nem12.pipeline import downstream
from nem12.pipeline.alert_config import parse_config
from nem12.warehouse import alerts, changes, rollup
from nem12.warehouse.merge import merge_files
from tests.integration.test_load_and_merge import load

START = date(2024, 1, 1)
DAYS = 31
INTERVALS = 48
CYCLE = (Decimal("19.200"), Decimal("20.160"), Decimal("21.120"))
UPDATED = datetime(2024, 2, 1, 9, 15)

CONFIG = parse_config(
    json.dumps(
        {
            "version": "test.1",
            "rules": [
                {
                    "name": "usage_above_50",
                    "kind": "usage_above",
                    "suffixes": ["E"],
                    "uom": "kWh",
                    "threshold": "50",
                    "severity": {"high": "1.5", "critical": "2"},
                },
                {
                    "name": "usage_spike",
                    "kind": "usage_above_median",
                    "suffixes": ["E"],
                    "factor": "2",
                    "window_days": 30,
                    "min_prior_days": 7,
                    "minimum": "1",
                },
                {"name": "missing", "kind": "missing_days"},
                {"name": "estimated", "kind": "estimated_share", "limit": "0.5"},
                {
                    "name": "export",
                    "kind": "export_on_consumption_only",
                    "threshold": "0.5",
                    "severity": {"high": 4, "critical": 10},
                },
            ],
        }
    ),
    "test",
)


@dataclass(frozen=True)
class Day:
    """A day of a stream: its total, and how many intervals are estimated or null."""

    total: Decimal
    estimated: int = 0
    null: int = 0


def stored_alerts(conn) -> list[dict]:
    """Every alert row, oldest first, as dicts."""
    cursor = conn.execute("SELECT * FROM nem12.alert ORDER BY alert_id")
    names = [column.name for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def nmi(n: int) -> str:
    return f"600000000{n}"


def ordinary(day: int) -> Day:
    return Day(CYCLE[day % 3])


def month() -> dict[tuple[str, str], dict[int, Day]]:
    """The planted month: (nmi, suffix) -> day of the month -> Day."""
    streams: dict[tuple[str, str], dict[int, Day]] = {}
    for n in range(1, 7):
        streams[(nmi(n), "E1")] = {d: ordinary(d) for d in range(1, DAYS + 1)}
    a = streams[(nmi(1), "E1")]
    a[3], a[5], a[10] = Day(Decimal(80)), Day(Decimal(50)), Day(Decimal(120))
    streams[(nmi(1), "B1")] = {d: Day(Decimal(5)) for d in range(1, DAYS + 1)}
    b = streams[(nmi(2), "E1")]
    b[4], b[15], b[20] = Day(Decimal(45)), Day(Decimal(50)), Day(Decimal("44.352"))
    b[25], b[28] = Day(Decimal("40.272")), Day(Decimal("40.32"))
    for d in (12, 13, 14):
        del streams[(nmi(3), "E1")][d]
    streams[(nmi(4), "B1")] = {d: Day(Decimal(4)) for d in range(1, 25)}
    e = streams[(nmi(5), "E1")]
    e[18] = Day(e[18].total, estimated=40)
    e[22] = Day(e[22].total, estimated=24)
    e[27] = Day(Decimal(0), null=INTERVALS)
    e[29] = Day(e[29].total, estimated=16, null=10)
    streams[(nmi(6), "B1")] = {d: Day(Decimal(3)) for d in range(20, DAYS + 1)}
    return streams


def planted() -> set[tuple]:
    """(rule, nmi, suffix, day, severity) of every alert the month must raise."""
    on = lambda d: START + timedelta(days=d - 1)  # noqa: E731
    found = {
        ("usage_above_50", nmi(1), "E1", on(3), "high"),
        ("usage_above_50", nmi(1), "E1", on(10), "critical"),
        ("usage_spike", nmi(1), "E1", on(10), "critical"),
        ("usage_spike", nmi(2), "E1", on(15), "medium"),
        ("usage_spike", nmi(2), "E1", on(20), "medium"),
        ("missing", nmi(3), "E1", on(12), "medium"),
        ("missing", nmi(3), "E1", on(13), "medium"),
        ("missing", nmi(3), "E1", on(14), "high"),
        ("estimated", nmi(5), "E1", on(18), "high"),
        ("estimated", nmi(5), "E1", on(27), "critical"),
        ("estimated", nmi(5), "E1", on(29), "medium"),
        ("export", nmi(6), "B1", on(20), "high"),
    }
    for d, severity in zip(
        range(25, 32), ["medium"] * 2 + ["high"] * 4 + ["critical"], strict=True
    ):
        found.add(("missing", nmi(4), "B1", on(d), severity))
    return found


def values(total: Decimal) -> list[str]:
    """48 interval values (3 decimals) summing exactly to ``total``."""
    thousandths = int(total * 1000)
    each, rest = divmod(thousandths, INTERVALS)
    milli = [each] * (INTERVALS - 1) + [each + rest]
    return [f"{v // 1000}.{v % 1000:03d}" for v in milli]


def day_records(when: date, day: Day, updated: datetime) -> list[str]:
    update = updated.strftime("%Y%m%d%H%M%S")
    msats = (updated + timedelta(hours=1)).strftime("%Y%m%d%H%M%S")
    written = values(day.total)
    tail = f"{update},{msats}"
    if day.null == INTERVALS:
        return [f"300,{when:%Y%m%d},{','.join(['0'] * INTERVALS)},N,,,{tail}"]
    if not day.estimated and not day.null:
        return [f"300,{when:%Y%m%d},{','.join(written)},A,,,{tail}"]
    records = [f"300,{when:%Y%m%d},{','.join(written)},V,,,{tail}"]
    actual = INTERVALS - day.estimated - day.null
    first = 1
    for count, quality in ((actual, "A"), (day.estimated, "E52"), (day.null, "N")):
        if count:
            records.append(f"400,{first},{first + count - 1},{quality},,")
            first += count
    return records


def nem12(
    streams: dict[tuple[str, str], dict[int, Day]],
    days: range = range(1, DAYS + 1),
    updated: datetime = UPDATED,
) -> bytes:
    """A NEM12 file of ``streams``' days in ``days`` (a stream without any: left out)."""
    lines = [f"100,NEM12,{updated:%Y%m%d%H%M},MDPGEN,RETAILER"]
    for (meter, suffix), stream in sorted(streams.items()):
        kept = [d for d in days if d in stream]
        if not kept:
            continue
        configuration = "".join(s for (m, s) in sorted(streams) if m == meter)
        lines.append(f"200,{meter},{configuration},1,{suffix},{suffix},MTR1,kWh,30,")
        for d in kept:
            lines += day_records(START + timedelta(days=d - 1), stream[d], updated)
    lines.append("900")
    return ("\n".join(lines) + "\n").encode()


def raised(conn) -> set[tuple]:
    return {
        (a["rule"], a["nmi"], a["nmi_suffix"], a["interval_date"], a["severity"])
        for a in stored_alerts(conn)
    }


def deliver(conn, name: str, data: bytes) -> None:
    merge_files(conn, [load(conn, name, data)])


def run(conn, batch_changes: int = changes.BATCH_CHANGES) -> alerts.Raised:
    rollup.refresh(conn)
    return alerts.raise_alerts(conn, CONFIG.rules, CONFIG.version, batch_changes)


@pytest.fixture
def the_month(conn):
    """The month delivered in one file, rolled up and alerted once."""
    deliver(conn, "month.csv", nem12(month()))
    done = run(conn)
    assert done.changes == sum(len(s) for s in month().values())
    return conn


def test_the_alerts_fire_exactly_for_the_planted_cases(the_month):
    assert raised(the_month) == planted()


def test_each_alert_keeps_its_figures_and_a_message_a_person_reads(the_month):
    found = {(a["rule"], a["nmi"], a["interval_date"].day): a for a in stored_alerts(the_month)}
    spike = found[("usage_spike", nmi(1), 10)]
    assert (spike["observed"], spike["threshold"]) == (Decimal("120.000"), Decimal("40.320"))
    assert spike["config_version"] == "test.1"
    assert spike["message"] == (
        "E1 of 6000000001 used 120 kWh on 2024-01-10, 5.95x the trailing 30-day median "
        "20.16 kWh (alert above 2x)"
    )
    above = found[("usage_above_50", nmi(1), 3)]
    assert above["message"] == (
        "E1 of 6000000001 used 80 kWh on 2024-01-03, 1.6x the threshold 50 kWh"
    )
    gap = found[("missing", nmi(3), 14)]
    assert (gap["observed"], gap["threshold"]) == (3, 0)
    assert gap["message"] == (
        "E1 of 6000000003 delivered no data for 2024-01-14, day 3 missing since its last "
        "day 2024-01-11 (the NMI has days up to 2024-01-31)"
    )
    share = found[("estimated", nmi(5), 29)]
    assert (share["observed"], share["threshold"]) == (Decimal("0.5417"), Decimal("0.5"))
    assert share["message"] == (
        "E1 of 6000000005 on 2024-01-29: 26 of 48 intervals estimated or null (54%), "
        "above the limit 50%"
    )
    export = found[("export", nmi(6), 20)]
    assert export["message"] == (
        "B1 of 6000000006 exported 3 kWh on 2024-01-20, an NMI with consumption only in "
        "the 30 days before (alert above 0.5 kWh)"
    )
    assert all(a["notified_at"] is None for a in found.values())


def test_a_rerun_and_a_remerge_of_the_same_file_raise_nothing_new(the_month):
    before = stored_alerts(the_month)
    assert run(the_month).changes == 0
    deliver(the_month, "month-again.csv", nem12(month()))
    again = run(the_month)
    assert again.changes > 0 and again.raised == 0
    assert stored_alerts(the_month) == before


def test_the_pipeline_step_raises_once(conn):
    deliver(conn, "month.csv", nem12(month()))
    downstream.refresh_rollups(conn)
    first = downstream.raise_alerts(conn, CONFIG)
    assert first["raised"] == len(planted())
    assert first["alerts"]["missing"] == 10
    assert first["waiting"] == 0
    assert downstream.raise_alerts(conn, CONFIG)["raised"] == 0
    assert raised(conn) == planted()


def test_alerts_wait_for_the_rollup_to_hold_the_changes(conn):
    deliver(conn, "month.csv", nem12(month()))
    waiting = alerts.raise_alerts(conn, CONFIG.rules, CONFIG.version)
    assert (waiting.changes, waiting.raised) == (0, 0)
    assert waiting.waiting == sum(len(s) for s in month().values())
    assert run(conn).raised == len(planted())
    assert raised(conn) == planted()


def test_day_by_day_delivery_raises_the_same_alerts(conn):
    """A file a day, each merged, rolled up and alerted before the next arrives."""
    for d in range(1, DAYS + 1):
        deliver(conn, f"day{d}.csv", nem12(month(), range(d, d + 1)))
        run(conn)
    assert raised(conn) == planted()


def test_a_catch_up_after_several_merges_without_a_run(conn):
    """Three merges without a run between, the rollup refreshed after one of them;
    the catch-up takes the changes in small batches."""
    deliver(conn, "first.csv", nem12(month(), range(1, 11)))
    deliver(conn, "second.csv", nem12(month(), range(11, 21)))
    rollup.refresh(conn)
    deliver(conn, "third.csv", nem12(month(), range(21, DAYS + 1)))
    done = run(conn, batch_changes=7)
    assert done.batches > 1
    assert raised(conn) == planted()


def test_corrections_keep_the_alerts_raised_and_raise_only_new_reasons(the_month):
    """The spike of the 10th corrected to an ordinary day, the gap of 6000000003
    delivered late, and the 25th of 6000000002 corrected above 2x the median."""
    before = {(a["rule"], a["nmi"], a["interval_date"]): a for a in stored_alerts(the_month)}
    later = UPDATED + timedelta(days=7)
    only = {
        (nmi(1), "E1"): {10: ordinary(10)},
        (nmi(2), "E1"): {25: Day(Decimal(45))},
        (nmi(3), "E1"): {d: ordinary(d) for d in (12, 13, 14)},
    }
    deliver(the_month, "corrections.csv", nem12(only, updated=later))
    done = run(the_month)
    assert done.changes == 5
    assert done.alerts["usage_spike"] == 1 and done.raised == 1
    assert raised(the_month) == planted() | {
        ("usage_spike", nmi(2), "E1", START + timedelta(days=24), "medium")
    }
    after = {(a["rule"], a["nmi"], a["interval_date"]): a for a in stored_alerts(the_month)}
    assert all(after[key] == row for key, row in before.items())  # as they were raised
    assert run(the_month).raised == 0


def rules_like(name: str, **changes: Any) -> list[Any]:
    """CONFIG's rule ``name`` with ``changes``, alone."""
    return [replace(CONFIG.rule(name), **changes)]


@pytest.mark.parametrize(
    ("rule", "changes", "kept"),
    [
        # two days' grace: the stream that stopped is missing up to the NMI's newest day less 2
        ("missing", {"grace_days": 2}, lambda a: a[1] != nmi(4) or a[3].day <= 29),
        # the first 2 days of each gap only
        ("missing", {"max_days": 2}, lambda a: a[3].day in (12, 13, 25, 26)),
        # streams of another unit: none
        ("usage_above_50", {"uom": "MWh"}, lambda a: False),
        # a threshold of 100 kWh: the 120 kWh day alone, now medium (1.2x)
        ("usage_above_50", {"threshold": Decimal(100)}, lambda a: a[3].day == 10),
        # only the null intervals count: the null day (critical) alone
        ("estimated", {"classes": ("N",)}, lambda a: a[3].day == 27),
        # B1 only: the other streams are not looked at
        ("missing", {"suffixes": ("B1",)}, lambda a: a[2] == "B1"),
    ],
)
def test_a_rules_parameters_narrow_what_it_raises(conn, rule, changes, kept):
    deliver(conn, "month.csv", nem12(month()))
    rollup.refresh(conn)
    alerts.raise_alerts(conn, rules_like(rule, **changes), "narrowed")
    expected = {a for a in planted() if a[0] == rule and kept(a)}
    if "threshold" in changes:
        expected = {(*a[:4], "medium") for a in expected}
    assert raised(conn) == expected
    assert expected or changes == {"uom": "MWh"}
