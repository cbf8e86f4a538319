"""Usage query benchmark behind ``make bench``: the figures a retailer asks for most.

Fills a fresh database's ``meter_day`` directly (SQL ``generate_series``, as
the merge would have stored them): one NMI with a year of five-minute data
(two suffixes, 10% of its days V days with 400 ranges), and 10,000 NMIs with a
month of 30-minute data. Then times ``nem12.warehouse.usage.usage`` (median
and slowest of 5): the year of the one NMI grouped by interval, day, month
and quality class, and the month of the 10,000 NMIs grouped by day. Targets:
the year of one NMI under 50 ms (grouped by day, month or quality; by
interval it returns 210,240 rows and is reported), the month of 10,000 NMIs
in seconds (under 10 s). Then times the daily rollup's refresh
(``nem12.warehouse.rollup.refresh``) of every day, and of a tenth of the days
changed again (as a 10% correction's merge notes them), each followed by the
checkout's alert rules over the same changes. Writes
``usage_bench.md``. A report, not a test: it exits 0 whatever the figures.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import psycopg

from nem12.devtools.services import local_services
from nem12.pipeline.alert_config import load_config
from nem12.pipeline.settings import Settings
from nem12.warehouse import alerts, rollup, schema
from nem12.warehouse.usage import UsageQuery, usage

OUT = Path(__file__).parent / "out"
ONE_NMI = "6100000001"
MANY = 10_000

#: A day row with ``n`` values of ``length`` minutes drawn from ``seed``; every
#: tenth day of the one NMI is a V day whose second half is estimated.
_DAYS = """
INSERT INTO nem12.meter_day (
    nmi, nmi_suffix, interval_date, interval_length, uom, interval_values, quality_method,
    reason_code, reason_description, interval_quality, update_datetime, total,
    actual_intervals, estimated_intervals, final_substituted_intervals, null_intervals,
    substituted_intervals, variable_intervals, header_datetime, file_id)
SELECT nmi, suffix, day, {length}, 'kWh', v.values,
       CASE WHEN variable THEN 'V' ELSE 'A' END, NULL, NULL,
       CASE WHEN variable THEN jsonb_build_array(
           jsonb_build_object('first_interval', 1, 'last_interval', {n} / 2,
                              'quality_method', 'A', 'reason_code', NULL,
                              'reason_description', NULL),
           jsonb_build_object('first_interval', {n} / 2 + 1, 'last_interval', {n},
                              'quality_method', 'E52', 'reason_code', NULL,
                              'reason_description', NULL)) END,
       '2024-02-01 09:00+10', v.total,
       CASE WHEN variable THEN {n} / 2 ELSE {n} END, CASE WHEN variable THEN {n} / 2 ELSE 0 END,
       0, 0, 0, 0, '2024-02-01 09:30+10', 1
FROM ({streams}) s(nmi, suffix, day, variable)
CROSS JOIN LATERAL (
    SELECT array_agg(x ORDER BY i) AS values, sum(x) AS total
    FROM (SELECT i, round((random() * 2)::numeric, 3) AS x FROM generate_series(1, {n}) i) t
) v
"""

ONE_NMI_YEAR = (
    f"SELECT '{ONE_NMI}', suffix, d::date, extract(doy FROM d)::int % 10 = 0 "
    "FROM generate_series('2024-01-01'::date, '2024-12-30'::date, interval '1 day') d, "
    "unnest(ARRAY['E1', 'B1']) suffix"
)
MANY_MONTH = (
    "SELECT '62' || lpad(n::text, 8, '0'), 'E1', d::date, false "
    f"FROM generate_series(1, {MANY}) n, "
    "generate_series('2024-01-01'::date, '2024-01-31'::date, interval '1 day') d"
)


def fill(conn: psycopg.Connection) -> None:
    conn.execute(_DAYS.format(length=5, n=288, streams=ONE_NMI_YEAR))
    conn.execute(_DAYS.format(length=30, n=48, streams=MANY_MONTH))
    conn.execute("ANALYZE nem12.meter_day")


#: Every stored day noted as changed (the merge notes the days it stores), or one in ten.
_CHANGED = """
INSERT INTO nem12.day_change (nmi, nmi_suffix, interval_date, file_id)
SELECT nmi, nmi_suffix, interval_date, file_id FROM nem12.meter_day
WHERE %(every)s = 1 OR hashtext(nmi || interval_date) %% %(every)s = 0
"""


def timed_refresh(conn: psycopg.Connection, every: int) -> tuple[int, float, int, float]:
    """After noting every ``every``-th stored day as changed: the days refreshed and
    the refresh's seconds, then the alerts the checkout's rules raised and seconds."""
    conn.execute(_CHANGED, {"every": every})
    started = time.perf_counter()
    done = rollup.refresh(conn)
    refreshed = time.perf_counter() - started
    config = load_config(Settings())
    started = time.perf_counter()
    raised = alerts.raise_alerts(conn, config.rules, config.version)
    return done.days, refreshed, raised.raised, time.perf_counter() - started


def timed(conn: psycopg.Connection, query: UsageQuery) -> tuple[int, float, float]:
    times, rows = [], 0
    for _ in range(5):
        started = time.perf_counter()
        rows = len(usage(conn, query))
        times.append((time.perf_counter() - started) * 1000)
    return rows, statistics.median(times), max(times)


REFRESHES = (("every stored day", 1), ("a tenth of them changed again", 10))


def main() -> int:
    OUT.mkdir(exist_ok=True)
    year = (date(2024, 1, 1), date(2024, 12, 31))
    many = tuple(f"62{n:08d}" for n in range(1, MANY + 1))
    cases = [
        (f"{ONE_NMI}, a year of 5-minute data, by {group}", UsageQuery((ONE_NMI,), *year, group),
         50.0 if group != "interval" else None)
        for group in ("day", "month", "quality", "interval")
    ] + [
        (f"{MANY:,} NMIs, a month of 30-minute data, by day",
         UsageQuery(many, date(2024, 1, 1), date(2024, 2, 1), "day"), 10_000.0),
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="nem12-usage-bench-") as work:
        with local_services(Path(work) / "services") as services:
            with psycopg.connect(services.postgres_dsn, autocommit=True) as conn:
                schema.apply_schema(conn)
                started = time.monotonic()
                fill(conn)
                print(f"filled meter_day in {time.monotonic() - started:.1f} s", file=sys.stderr)
                results = [(name, *timed(conn, query), target) for name, query, target in cases]
                refreshes = [(what, *timed_refresh(conn, every)) for what, every in REFRESHES]
    lines = [
        "Usage queries on `meter_day` (median and slowest of 5 runs, `usage()` in Python,"
        " rows fetched):",
        "",
        "| query | rows | median ms | slowest ms | target | result |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for name, rows, median, worst, target in results:
        verdict = "reported" if target is None else ("PASS" if median < target else "FAIL")
        shown = "" if target is None else f"< {target:,.0f} ms"
        lines.append(f"| {name} | {rows:,} | {median:.1f} | {worst:.1f} | {shown} | {verdict} |")
    lines += [
        "",
        "Daily rollup refresh (`rollup.refresh`, the days noted in `day_change`), then the"
        " checkout's alert rules over the same changes (`alerts.raise_alerts`):",
        "",
        "| changed | days | refresh s | days/s | alerts raised | alerts s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for what, days, seconds, raised, alert_seconds in refreshes:
        lines.append(
            f"| {what} | {days:,} | {seconds:.2f} | {days / seconds:,.0f} | {raised:,} "
            f"| {alert_seconds:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    (OUT / "usage_bench.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
