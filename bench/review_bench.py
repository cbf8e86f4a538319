"""Review view benchmark behind ``make bench``: the Files page on a big ledger.

Fills a fresh database with 100,000 ledger rows (20 senders, every status)
and 1,000,000 findings, then times the Files page's query (``nem12.warehouse.review.files``)
as the view runs it: the first page, a status filter, a sender filter, a date
range, a key search, an NMI search and a deep page. Server time only (the
query, not the HTML). Target: under 300 ms each. Writes ``review_bench.md``.
A report, not a test: it exits 0 whatever the figures.
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
from nem12.warehouse import review, schema

FILES, FINDINGS = 100_000, 1_000_000
OUT = Path(__file__).parent / "out"

CASES = {
    "first page": (review.FileFilter(), 1),
    "status rejected": (review.FileFilter(status="rejected"), 1),
    "sender MDP07": (review.FileFilter(sender="MDP07"), 1),
    "arrived in one week": (
        review.FileFilter(arrived_from=date(2026, 3, 1), arrived_to=date(2026, 3, 7)),
        1,
    ),
    "key search": (review.FileFilter(search="0004242"), 1),
    "NMI search": (review.FileFilter(search="6100004242"), 1),
    "page 1,000": (review.FileFilter(), 1000),
}


def fill(conn: psycopg.Connection) -> None:
    conn.execute(
        f"""
        INSERT INTO nem12.file_ledger (bucket, key, etag, size_bytes, sha256, first_seen,
            status, quality, readings, from_participant, to_participant)
        SELECT 'nem12', format('landing/NEM12#%s#MDP%s#RETAILER.csv', lpad(n::text, 7, '0'),
                               lpad((n % 20)::text, 2, '0')),
               md5(n::text), 3000, md5(n::text), '2026-01-01'::timestamptz + n * interval '2 min',
               (ARRAY['loaded','loaded','loaded','partial','rejected','duplicate'])[1 + n % 6],
               'accepted', 96, format('MDP%s', lpad((n % 20)::text, 2, '0')), 'RETAILER'
        FROM generate_series(1, {FILES}) n
        """
    )
    conn.execute(
        f"""
        INSERT INTO nem12.finding (file_id, file, rule, severity, line, record_type, nmi,
            message, raw)
        SELECT 1 + (n::bigint * 7919) % {FILES}, 'landing/x.csv', 'value_negative', 'error',
               n % 500, '300', format('61%s', lpad(((n::bigint * 7919) % {FILES})::text, 8, '0')),
               'interval value is negative', '300,20240101,-1.5'
        FROM generate_series(1, {FINDINGS}) n
        """
    )
    conn.execute("ANALYZE nem12.file_ledger")
    conn.execute("ANALYZE nem12.finding")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nem12-review-bench-") as work:
        with local_services(Path(work) / "services") as services:
            with psycopg.connect(services.postgres_dsn, autocommit=True) as conn:
                schema.apply_schema(conn)
                started = time.monotonic()
                fill(conn)
                print(
                    f"filled {FILES} files, {FINDINGS} findings in "
                    f"{time.monotonic() - started:.1f} s",
                    file=sys.stderr,
                )
                rows = []
                for name, (chosen, page) in CASES.items():
                    times = []
                    for _ in range(5):
                        t = time.perf_counter()
                        found = review.files(conn, chosen, page)
                        times.append((time.perf_counter() - t) * 1000)
                    rows.append(
                        (name, found.total, len(found.rows), statistics.median(times), max(times))
                    )
    lines = [
        f"Files page on {FILES:,} ledger rows and {FINDINGS:,} findings "
        "(median and slowest of 5 runs, server time of the query):",
        "",
        "| case | matching files | rows shown | median ms | slowest ms | under 300 ms |",
        "|---|---:|---:|---:|---:|---|",
    ]
    lines += [
        f"| {n} | {total:,} | {shown} | {med:.1f} | {worst:.1f} | "
        f"{'yes' if worst < 300 else 'NO'} |"
        for n, total, shown, med, worst in rows
    ]
    text = "\n".join(lines) + "\n"
    (OUT / "review_bench.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
