"""Pipeline benchmark behind ``make bench``: end to end through the real DAG vs plain SQL.

On one set of local services (PostgreSQL from pgserver, S3 from moto) it
measures, one after another, on the same generated data (``--cases`` picks):

(a) references on the big file's readings in long format (one row per
    interval, written once by ``nem12 parse --out .csv``, untimed), each into
    a keyed long table of the v4 columns (PRIMARY KEY (nmi, nmi_suffix,
    interval_start), created explicitly, default fillfactor):
    ``baseline``: COPY into an unlogged long staging table, then one MERGE;
    ``copy``: one COPY straight into the keyed table (its CSV projected to
    the table's columns once, untimed);
(b) the pipeline, S3 object to committed ``nem12.meter_day`` rows (schema v5,
    a day per row), through ``nem12_ingest`` run by ``airflow dags test``:
    ``big`` (the big file), ``duplicate`` (the same file again under another
    key), ``small-1000`` and ``small-10000`` (that many small files of one
    NMI-day each, uploaded by threads, untimed), then ``correction`` (newer
    versions of 10% of the big file's days; last, see ``PIPELINE_CASES``);
(c) ``parsers``: nemreader and aemo-mdff-reader parsing the big file alone.

Each pipeline run is timed by its wall clock (the whole ``airflow dags test``,
Airflow's start-up included) and by its task work: the sum of its task
durations from Airflow's metadata, the sensor left out (it polls by nature,
and under ``dags test`` it also carries Airflow's start-up of ~5 s). Peak RSS
is that of the ``airflow dags test`` process, which runs every task
in-process, so no task can have used more. Storage is
``pg_total_relation_size`` (heap, indexes, TOAST) per reading: of
``nem12.meter_day`` right after the big file, and of the keyed long table
after the single COPY.

Acceptance targets (the ``TARGET_*`` constants), each reported beside its figure:

1. big file, readings per second of task work >= 1,000,000 (wall clock reported too);
2. that rate / the single COPY's rate >= 3x;
3. bytes per reading of meter_day (indexes and TOAST included) <= 16;
4. the 10% correction <= 5%, the duplicate <= 2% of the first load's task work;
5. 1,000 small files < 30 s and 10,000 small files < 240 s, wall clock;
6. peak RSS of any task < 1 GB (1,000 MB).

A small-files run still going after ``--small-timeout`` seconds (900), or
another after ``--run-timeout`` (600), is stopped and reported as such, its
unfinished tasks counted up to the deadline. It writes ``pipeline_bench.md`` and
``pipeline_bench.json``. A report, not a test: it exits 0 whatever the
figures, 2 if a step fails.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from parse_bench import (
    AEMO_SNIPPET,
    BENCH_DIR,
    LAUNCHER,
    MB,
    NEM12,
    NEMREADER_SNIPPET,
    InputSpec,
    Measurement,
    ToolFailure,
    measure_snippet,
)

from nem12.devtools.demo import airflow_env, prepare_airflow
from nem12.devtools.generate import GeneratorSpec, generate_bytes

BIG = InputSpec("five_minute_25m", nmis=120, days=365)  # 25,228,800 readings, ~175 MB
CORRECTED_DAYS = 37  # 10% of the big file's 365 days, same NMIs, newer UpdateDateTime
SMALL_FILES = (1_000, 10_000)  # one small-files case per count, one NMI-day per file
SMALL_FILES_TIMEOUT_S = 900.0  # a small-files run still going after this is stopped
RUN_TIMEOUT_S = 600.0  # the same for the big file, the duplicate and the correction
UPLOAD_THREADS = 16

TARGET_TASK_READINGS_PER_S = 1_000_000  # big file, readings per second of task work
TARGET_VS_SINGLE_COPY = 3.0  # that rate / one COPY into a keyed long table
TARGET_BYTES_PER_READING = 16.0  # meter_day with its indexes and TOAST, after the big file
TARGET_CORRECTION_SHARE = 0.05  # of the first load's task work
TARGET_DUPLICATE_SHARE = 0.02
TARGET_SMALL_FILES_S = {1_000: 30.0, 10_000: 240.0}  # wall clock per case
TARGET_TASK_RSS_MB = 1000.0

#: The run order: the correction last, so that a run of it stopped at its deadline
#: (its file left staged, for the next run to take up) cannot spill into another case.
PIPELINE_CASES = ("big", "duplicate", *(f"small-{n}" for n in SMALL_FILES), "correction")
CASES = ("baseline", "copy", *PIPELINE_CASES, "parsers")

STAGING_COLUMNS = """
    nmi text, nmi_suffix text, register_id text, meter_serial_number text, uom text,
    interval_length smallint, interval_start timestamptz, value numeric,
    quality_method text, reason_code text, reason_description text,
    update_datetime timestamptz, msats_load_datetime timestamptz, line_number bigint
"""
#: The v4 long table (one row per interval), as the references load it.
LONG_TABLE_COLUMNS = """
    nmi                  text NOT NULL,
    nmi_suffix           text NOT NULL,
    interval_start       timestamptz NOT NULL,
    interval_length      smallint NOT NULL,
    value                numeric NOT NULL,
    uom                  text NOT NULL,
    quality_method       text NOT NULL,
    reason_code          text,
    reason_description   text,
    update_datetime      timestamptz,
    header_datetime      timestamptz,
    file_id              bigint NOT NULL,
    merged_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (nmi, nmi_suffix, interval_start)
"""
#: The long table's columns the single COPY's CSV holds, in its order (merged_at defaults).
LONG_COPY_COLUMNS = (
    "nmi",
    "nmi_suffix",
    "interval_start",
    "interval_length",
    "value",
    "uom",
    "quality_method",
    "reason_code",
    "reason_description",
    "update_datetime",
    "header_datetime",
    "file_id",
)
BASELINE_MERGE = """
MERGE INTO bench_meter_reading t
USING bench_staging s
   ON t.nmi = s.nmi AND t.nmi_suffix = s.nmi_suffix AND t.interval_start = s.interval_start
WHEN MATCHED THEN UPDATE SET
    value = s.value, interval_length = s.interval_length, uom = s.uom,
    quality_method = s.quality_method, reason_code = s.reason_code,
    reason_description = s.reason_description, update_datetime = s.update_datetime
WHEN NOT MATCHED THEN INSERT
    (nmi, nmi_suffix, interval_start, interval_length, value, uom, quality_method,
     reason_code, reason_description, update_datetime, file_id)
VALUES (s.nmi, s.nmi_suffix, s.interval_start, s.interval_length, s.value, s.uom,
        s.quality_method, s.reason_code, s.reason_description, s.update_datetime, 0)
"""
SIZES_SQL = """
SELECT pg_total_relation_size(c.oid), pg_relation_size(c.oid), pg_indexes_size(c.oid),
       coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0)
FROM pg_class c WHERE c.oid = %s::regclass
"""


@dataclass
class Sizes:
    """A table's bytes on disk: all (pg_total_relation_size), heap, indexes, TOAST."""

    table: str
    readings: int
    total_bytes: int
    heap_bytes: int
    index_bytes: int
    toast_bytes: int

    @property
    def bytes_per_reading(self) -> float:
        return self.total_bytes / self.readings if self.readings else 0.0


@dataclass
class Baseline:
    """(a) COPY into an unlogged long staging table, then one MERGE into a keyed long table."""

    readings: int
    copy_seconds: float
    merge_seconds: float
    sizes: Sizes

    @property
    def seconds(self) -> float:
        return self.copy_seconds + self.merge_seconds

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds


@dataclass
class SingleCopy:
    """(a) One COPY straight into a keyed long table."""

    readings: int
    seconds: float
    sizes: Sizes

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds


@dataclass
class PipelineRun:
    """One ``airflow dags test nem12_ingest`` on one delivery."""

    workload: str
    objects: int
    readings_merged: int  # readings the ledger counts as merged (inserted+updated+unchanged)
    seconds: float  # wall clock of the whole command, Airflow's start-up included
    task_seconds: float  # work: its task durations summed, the sensor left out
    peak_rss_mb: float
    exit_code: int
    timed_out: bool = False
    upload_seconds: float = 0.0  # putting its objects into S3 (untimed in the figures)
    tasks: dict[str, float] = field(default_factory=dict)
    #: Tasks still running when the run was stopped (counted up to the deadline).
    unfinished: list[str] = field(default_factory=list)

    @property
    def readings_per_s(self) -> float:
        return self.readings_merged / self.seconds if self.seconds else 0.0

    @property
    def work_readings_per_s(self) -> float:
        return self.readings_merged / self.task_seconds if self.task_seconds else 0.0

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


def big_spec(nmis: int) -> InputSpec:
    """The big file; fewer NMIs make a quick trial run (``--big-nmis``)."""
    return BIG if nmis == BIG.nmis else InputSpec(f"five_minute_{nmis}nmi", nmis=nmis, days=365)


def correction_spec(big: InputSpec) -> GeneratorSpec:
    """Newer versions of the big file's first 37 days: same NMIs (seed % 10), new values."""
    return GeneratorSpec(
        nmis=big.nmis,
        days=CORRECTED_DAYS,
        interval_length=big.interval_length,
        seed=10,
        update_datetime=datetime(2024, 6, 1, 9, 0),
        header_datetime=datetime(2024, 6, 1, 9, 30),
        value_pool=big.value_pool,
    )


def small_file(count: int, index: int) -> bytes:
    """One NMI-day (two channels, 30-minute) on days the big file does not hold.

    Each case has an NMI of its own (the seed), so its days never meet another case's.
    """
    seed = 1 + SMALL_FILES.index(count) if count in SMALL_FILES else 9
    start = date(2030, 1, 1) + timedelta(index)
    return generate_bytes(GeneratorSpec(nmis=1, days=1, seed=seed, start_date=start))


def small_objects(count: int) -> dict[str, Callable[[], bytes]]:
    """The case's keys, each with how to make its bytes (made by the upload threads)."""
    return {
        f"landing/small-{count}/NEM12#S{index:05d}#MDPGEN#RETAILER.csv": (
            lambda index=index: small_file(count, index)
        )
        for index in range(count)
    }


def header_datetime(path: Path) -> str:
    """The 100 record's DateTime of a NEM12 file, as a timestamptz in NEM time (+10:00)."""
    with path.open() as source:
        stamp = source.readline().split(",")[2].strip()
    parsed = datetime.strptime(stamp, "%Y%m%d%H%M")
    return parsed.strftime("%Y-%m-%dT%H:%M:00+10:00")


def long_copy_csv(readings_csv: Path, big_path: Path, out: Path) -> Path:
    """The readings projected to ``LONG_COPY_COLUMNS`` (written once, untimed), text kept."""
    if out.exists() and out.stat().st_mtime >= readings_csv.stat().st_mtime:
        return out
    import polars as pl

    print(f"writing the single COPY's rows to {out} ...", file=sys.stderr)
    started = time.perf_counter()
    partial = out.with_suffix(".partial")
    (
        pl.scan_csv(readings_csv, infer_schema=False)
        .select(
            *LONG_COPY_COLUMNS[:-2],
            pl.lit(header_datetime(big_path)).alias("header_datetime"),
            pl.lit("1").alias("file_id"),
        )
        .sink_csv(partial)
    )
    partial.rename(out)
    print(f"  wrote in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return out


def relation_sizes(conn, table: str, readings: int) -> Sizes:
    total, heap, indexes, toast = conn.execute(SIZES_SQL, (table,)).fetchone()
    return Sizes(table, readings, int(total), int(heap), int(indexes), int(toast))


def checkpoint(admin_dsn: str) -> None:
    """A CHECKPOINT (superuser) so each reference starts clean."""
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute("CHECKPOINT")


def copy_file(conn, sql: str, path: Path) -> None:
    with conn.cursor() as cursor, cursor.copy(sql) as copy, path.open("rb") as source:
        while block := source.read(1 << 20):
            copy.write(block)


def run_baseline(dsn: str, admin_dsn: str, readings_csv: Path) -> Baseline:
    """COPY then MERGE as the pipeline's role."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_staging, bench_meter_reading")
        conn.execute(f"CREATE UNLOGGED TABLE bench_staging ({STAGING_COLUMNS})")
        conn.execute(f"CREATE TABLE bench_meter_reading ({LONG_TABLE_COLUMNS})")
        checkpoint(admin_dsn)
        started = time.perf_counter()
        copy_file(conn, "COPY bench_staging FROM STDIN (FORMAT csv, HEADER true)", readings_csv)
        copied = time.perf_counter()
        merged_rows = conn.execute(BASELINE_MERGE).rowcount
        merged = time.perf_counter()
        sizes = relation_sizes(conn, "bench_meter_reading", merged_rows)
        conn.execute("DROP TABLE bench_staging, bench_meter_reading")
        checkpoint(admin_dsn)
    return Baseline(merged_rows, copied - started, merged - copied, sizes)


def run_single_copy(dsn: str, admin_dsn: str, long_csv: Path) -> SingleCopy:
    """One COPY into an empty keyed long table as the pipeline's role; then its size."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_long_keyed")
        conn.execute(f"CREATE TABLE bench_long_keyed ({LONG_TABLE_COLUMNS})")
        checkpoint(admin_dsn)
        started = time.perf_counter()
        copy_file(
            conn,
            f"COPY bench_long_keyed ({', '.join(LONG_COPY_COLUMNS)}) "
            "FROM STDIN (FORMAT csv, HEADER true)",
            long_csv,
        )
        seconds = time.perf_counter() - started
        (rows,) = conn.execute("SELECT count(*) FROM bench_long_keyed").fetchone()
        sizes = relation_sizes(conn, "bench_long_keyed", int(rows))
        conn.execute("DROP TABLE bench_long_keyed")
        checkpoint(admin_dsn)
    return SingleCopy(int(rows), seconds, sizes)


def meter_day_sizes(dsn: str) -> Sizes:
    """nem12.meter_day's bytes and the readings it holds (as ledger_summary counts them)."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        (readings,) = conn.execute(
            "SELECT coalesce(sum(1440 / interval_length), 0) FROM nem12.meter_day"
        ).fetchone()
        return relation_sizes(conn, "nem12.meter_day", int(readings))


def task_durations(
    airflow_home: Path, until: datetime | None = None
) -> tuple[dict[str, float], list[str]]:
    """Seconds per task (mapped instances summed) of the newest run of nem12_ingest, and the
    tasks still running: those count from their start up to ``until`` (UTC), if given."""
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        (run_id,) = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = 'nem12_ingest' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        rows = db.execute(
            "SELECT task_id, duration, start_date FROM task_instance "
            "WHERE dag_id = 'nem12_ingest' AND run_id = ?",
            (run_id,),
        ).fetchall()
    seconds: dict[str, float] = {}
    unfinished: list[str] = []
    for task, duration, start in rows:
        if duration is None and start is not None and until is not None:
            begun = datetime.fromisoformat(start).replace(tzinfo=None)
            duration = max((until - begun).total_seconds(), 0.0)
            unfinished.append(task)
        seconds[task] = seconds.get(task, 0.0) + (duration or 0.0)
    return {task: round(s, 2) for task, s in seconds.items()}, sorted(set(unfinished))


def ledger_readings(dsn: str, since_file_id: int) -> tuple[int, int]:
    """Rows merged (inserted + updated + unchanged) by files after ``since_file_id``; max id."""
    import psycopg

    with psycopg.connect(dsn) as conn:
        merged, last = conn.execute(
            "SELECT coalesce(sum(coalesce(inserted, 0) + coalesce(updated, 0) "
            "+ coalesce(unchanged, 0)), 0), coalesce(max(file_id), 0) "
            "FROM nem12.file_ledger WHERE file_id > %s",
            (since_file_id,),
        ).fetchone()
    return int(merged), int(last)


def stop_command(launcher: subprocess.Popen) -> None:
    """Stop the launcher's command: SIGTERM, then SIGKILL, to the command's own pids (the
    launcher still reaps it and reports its peak RSS); last, SIGKILL to what is left of
    the launcher's process group (its own session, started for this command alone)."""
    children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children")
    pids = [int(pid) for pid in children.read_text().split()] if children.exists() else []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        print(f"    deadline passed: {sig.name} to {pids}", file=sys.stderr)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            launcher.wait(timeout=15)
            break
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(launcher.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    launcher.wait()


def run_timed(
    argv: list[str], log: Path, env: dict[str, str], timeout: float | None
) -> tuple[float, float, int, datetime | None]:
    """``parse_bench.run_measured`` with a deadline: wall seconds, peak RSS MB, exit code,
    and when (UTC) the deadline passed, if it did: the command is then stopped
    (``stop_command``)."""
    stdout_path, stderr_path = log.with_suffix(".out"), log.with_suffix(".err")
    report_path = log.with_suffix(".rusage.json")
    report_path.unlink(missing_ok=True)
    started = time.perf_counter()
    stopped_at = None
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        launcher = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(report_path), *argv],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            launcher.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stopped_at = datetime.now(UTC).replace(tzinfo=None)
            stop_command(launcher)
    seconds = time.perf_counter() - started
    if not report_path.exists():
        if stopped_at is not None:
            return seconds, 0.0, -9, stopped_at
        raise ToolFailure(f"the launcher did not report on {argv[0]}; see {stderr_path}")
    report = json.loads(report_path.read_text())
    peak_rss_mb = report["maxrss_kib"] * 1024 / MB  # ru_maxrss is in KiB on Linux
    return report["seconds"], peak_rss_mb, report["exit_code"], stopped_at


def end_pipeline_sessions(admin_dsn: str) -> int:
    """After a stopped run: end the pipeline role's sessions on our local PostgreSQL (a
    query of the killed run would otherwise go on, holding the merge's lock)."""
    import psycopg

    from nem12.devtools.services import LOCAL_ROLE

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE usename = %s AND pid <> pg_backend_pid()",
            (LOCAL_ROLE,),
        ).fetchone()
    return int(ended[0])


def upload(services, objects: dict[str, Path | bytes | Callable[[], bytes]]) -> float:
    """Put every object into the bucket, ``UPLOAD_THREADS`` at a time; return seconds."""
    s3 = services.s3_client()  # boto3 clients are safe to share between threads

    def put(item: tuple[str, Path | bytes | Callable[[], bytes]]) -> None:
        key, body = item
        if isinstance(body, Path):
            s3.upload_file(str(body), services.bucket, key)
        else:
            s3.put_object(Bucket=services.bucket, Key=key, Body=body() if callable(body) else body)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
        for _ in pool.map(put, objects.items()):
            pass
    return time.perf_counter() - started


def run_pipeline(
    workload: str,
    objects: dict[str, Path | bytes | Callable[[], bytes]],
    services,
    env: dict[str, str],
    out_dir: Path,
    number: int,
    since_file_id: int,
    timeout: float | None = None,
) -> tuple[PipelineRun, int]:
    print(f"  pipeline: {workload}: uploading {len(objects):,} objects ...", file=sys.stderr)
    uploaded = upload(services, objects)
    print(f"  pipeline: {workload} ({uploaded:.1f} s to upload) ...", file=sys.stderr)
    airflow_bin = str(Path(sys.executable).parent / "airflow")
    logical_date = f"2024-01-01T{number:02d}:00:00+00:00"
    seconds, rss, code, stopped_at = run_timed(
        [airflow_bin, "dags", "test", "nem12_ingest", logical_date],
        out_dir / "logs" / f"pipeline_{number}_{workload.replace(' ', '_').replace(',', '')}",
        env,
        timeout,
    )
    if stopped_at is not None:
        ended = end_pipeline_sessions(services.postgres_dsn)
        print(f"    stopped at its deadline; {ended} database sessions ended", file=sys.stderr)
    tasks, unfinished = task_durations(Path(env["AIRFLOW_HOME"]), stopped_at)
    merged, last = ledger_readings(services.postgres_dsn, since_file_id)
    work = round(sum(s for task, s in tasks.items() if task != "sense"), 2)
    run = PipelineRun(
        workload,
        len(objects),
        merged,
        seconds,
        work,
        rss,
        code,
        stopped_at is not None,
        uploaded,
        tasks,
        unfinished,
    )
    return run, last


def small_name(count: int) -> str:
    return f"{count:,} small files"


@dataclass
class Target:
    """One acceptance target beside its figure: ``ok`` None when not measured."""

    number: int
    figure: str
    value: str
    target: str
    ok: bool | None

    @property
    def result(self) -> str:
        return "not run" if self.ok is None else ("PASS" if self.ok else "FAIL")


def targets(
    baseline: Baseline | None,
    single: SingleCopy | None,
    runs: dict[str, PipelineRun],
    big_sizes: Sizes | None,
) -> list[Target]:
    big = runs.get("big file")
    found: list[Target] = []

    def add(number: int, figure: str, target: str, value: str | None, ok: bool | None) -> None:
        found.append(Target(number, figure, value if value is not None else "-", target, ok))

    if big:
        rate = big.work_readings_per_s
        add(
            1,
            "big file: readings/s of task work",
            f">= {TARGET_TASK_READINGS_PER_S:,}",
            f"{rate:,.0f} ({big.readings_merged:,} in {big.task_seconds:.1f} s)",
            big.ok and rate >= TARGET_TASK_READINGS_PER_S,
        )
        add(
            1,
            "big file: wall clock, Airflow start-up included",
            "(reported)",
            f"{big.seconds:.1f} s, {big.readings_per_s:,.0f} readings/s",
            None if not big.ok else True,
        )
    else:
        add(
            1, "big file: readings/s of task work", f">= {TARGET_TASK_READINGS_PER_S:,}", None, None
        )
    if big and single:
        ratio = big.work_readings_per_s / single.readings_per_s
        add(
            2,
            "pipeline task-work rate / single COPY into keyed long table",
            f">= {TARGET_VS_SINGLE_COPY:.0f}x",
            f"{ratio:.2f}x ({big.work_readings_per_s:,.0f} / {single.readings_per_s:,.0f})",
            big.ok and ratio >= TARGET_VS_SINGLE_COPY,
        )
    else:
        add(
            2,
            "pipeline task-work rate / single COPY",
            f">= {TARGET_VS_SINGLE_COPY:.0f}x",
            None,
            None,
        )
    if big and baseline:
        ratio = big.work_readings_per_s / baseline.readings_per_s
        add(
            2,
            "pipeline task-work rate / long-row baseline (COPY + MERGE)",
            "(reported)",
            f"{ratio:.2f}x ({big.work_readings_per_s:,.0f} / {baseline.readings_per_s:,.0f})",
            None if not big.ok else True,
        )
    if big_sizes:
        add(
            3,
            "bytes/reading of nem12.meter_day (+ indexes, TOAST) after the big file",
            f"<= {TARGET_BYTES_PER_READING:.0f}",
            f"{big_sizes.bytes_per_reading:.2f}",
            big_sizes.bytes_per_reading <= TARGET_BYTES_PER_READING,
        )
    else:
        add(3, "bytes/reading of nem12.meter_day", f"<= {TARGET_BYTES_PER_READING:.0f}", None, None)
    if single:
        add(
            3,
            "bytes/reading of the keyed long table (reference)",
            "(reported)",
            f"{single.sizes.bytes_per_reading:.2f}",
            True,
        )
    for name, limit, number in (
        ("10% correction", TARGET_CORRECTION_SHARE, 4),
        ("duplicate", TARGET_DUPLICATE_SHARE, 4),
    ):
        run = runs.get(name)
        if run and big and big.task_seconds:
            share = run.task_seconds / big.task_seconds
            stopped = ""
            if run.timed_out:
                stopped = (
                    f"; stopped at its deadline, unfinished: {', '.join(run.unfinished) or '-'}"
                )
            add(
                number,
                f"{name}: share of the first load's task work",
                f"<= {limit:.0%}",
                f"{'>= ' if run.timed_out else ''}{share:.1%} "
                f"({run.task_seconds:.1f} s / {big.task_seconds:.1f} s{stopped})",
                run.ok and big.ok and share <= limit,
            )
        else:
            add(
                number,
                f"{name}: share of the first load's task work",
                f"<= {limit:.0%}",
                None,
                None,
            )
    for count in SMALL_FILES:
        run = runs.get(small_name(count))
        limit = TARGET_SMALL_FILES_S[count]
        figure = f"{small_name(count)}: wall clock (task work)"
        if run:
            note = (
                f" (stopped at its deadline, unfinished: {', '.join(run.unfinished) or '-'})"
                if run.timed_out
                else ""
            )
            add(
                5,
                figure,
                f"< {limit:.0f} s",
                f"{run.seconds:.1f} s ({run.task_seconds:.1f} s){note}",
                run.ok and run.seconds < limit,
            )
        else:
            add(5, figure, f"< {limit:.0f} s", None, None)
    measured = [r for r in runs.values() if r.peak_rss_mb]
    if measured:
        worst = max(measured, key=lambda r: r.peak_rss_mb)
        add(
            6,
            "peak RSS of any task (its airflow dags test process)",
            f"< {TARGET_TASK_RSS_MB:,.0f} MB",
            f"{worst.peak_rss_mb:,.0f} MB ({worst.workload})",
            all(r.peak_rss_mb < TARGET_TASK_RSS_MB for r in measured),
        )
    else:
        add(6, "peak RSS of any task", f"< {TARGET_TASK_RSS_MB:,.0f} MB", None, None)
    return found


def sizes_line(label: str, sizes: Sizes) -> str:
    return (
        f"- {label} (`{sizes.table}`): {sizes.total_bytes / MB:,.1f} MB for {sizes.readings:,}"
        f" readings = {sizes.bytes_per_reading:.2f} bytes/reading (heap"
        f" {sizes.heap_bytes / MB:,.1f} MB, indexes {sizes.index_bytes / MB:,.1f} MB,"
        f" TOAST {sizes.toast_bytes / MB:,.1f} MB)"
    )


def markdown(
    big: InputSpec,
    baseline: Baseline | None,
    single: SingleCopy | None,
    runs: dict[str, PipelineRun],
    big_sizes: Sizes | None,
    parsers: list[Measurement],
    found: list[Target],
    notes: dict[str, str],
) -> str:
    lines = [
        f"## Pipeline benchmark: {big.readings:,}-reading five-minute file and friends",
        "",
        "| # | figure | value | target | result |",
        "|---|---|---:|---:|---|",
    ]
    lines += [
        f"| {t.number} | {t.figure} | {t.value} | {t.target} | "
        f"{'reported' if t.target == '(reported)' and t.ok else t.result} |"
        for t in found
    ]
    lines += [
        "",
        "| what | readings | seconds (wall) | task work seconds | readings/s (wall) "
        "| readings/s (work) | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    if baseline:
        lines += [
            f"| (a) baseline COPY into unlogged long staging | {baseline.readings:,} | "
            f"{baseline.copy_seconds:.1f} | | {baseline.readings / baseline.copy_seconds:,.0f} "
            "| | |",
            f"| (a) baseline MERGE into empty keyed long table | {baseline.readings:,} | "
            f"{baseline.merge_seconds:.1f} | | "
            f"{baseline.readings / baseline.merge_seconds:,.0f} | | |",
            f"| (a) baseline COPY + MERGE | {baseline.readings:,} | {baseline.seconds:.1f} | | "
            f"{baseline.readings_per_s:,.0f} | | |",
        ]
    if single:
        lines.append(
            f"| (a) single COPY into keyed long table | {single.readings:,} | "
            f"{single.seconds:.1f} | | {single.readings_per_s:,.0f} | | |"
        )
    for run in runs.values():
        state = (
            "" if run.ok else (" **timed out**" if run.timed_out else f" **exit {run.exit_code}**")
        )
        lines.append(
            f"| (b) pipeline: {run.workload} ({run.objects:,} objects){state} | "
            f"{run.readings_merged:,} | {run.seconds:.1f} | {run.task_seconds:.1f} | "
            f"{run.readings_per_s:,.0f} | {run.work_readings_per_s:,.0f} | "
            f"{run.peak_rss_mb:.0f} |"
        )
    for m in parsers:
        lines.append(
            f"| (c) {m.tool} parse alone | {m.readings or 0:,} | {m.seconds:.1f} | | "
            f"{m.readings_per_s:,.0f} | | {m.peak_rss_mb:.0f} |"
        )
    if big_sizes or single or baseline:
        lines += ["", "Storage (pg_total_relation_size: heap + indexes + TOAST):", ""]
    if big_sizes:
        lines.append(sizes_line("meter_day after the big file", big_sizes))
    if single:
        lines.append(sizes_line("keyed long table after the single COPY", single.sizes))
    if baseline:
        lines.append(sizes_line("keyed long table after the baseline MERGE", baseline.sizes))
    if runs:
        lines += ["", "Seconds per task (mapped instances summed; sense left out of work):", ""]
    for run in runs.values():
        parts = ", ".join(f"{task} {seconds:.1f}" for task, seconds in sorted(run.tasks.items()))
        lines.append(
            f"- {run.workload}: {parts}"
            + (
                f" (unfinished at the deadline: {', '.join(run.unfinished)})"
                if run.unfinished
                else ""
            )
            + f"; wall minus work {run.seconds - run.task_seconds:.1f} s "
            f"(Airflow start-up, scheduling, sensor)"
        )
    lines += ["", *(f"- {name}: {value}" for name, value in notes.items())]
    return "\n".join(lines) + "\n"


def selected_cases(names: list[str] | None, skip_parsers: bool) -> list[str]:
    chosen = list(CASES) if not names else [c for c in CASES if c in names]
    if ("duplicate" in chosen or "correction" in chosen) and "big" not in chosen:
        print(
            "  --cases: duplicate and correction need the big file first; adding big",
            file=sys.stderr,
        )
        chosen.insert(chosen.index("copy") + 1 if "copy" in chosen else 0, "big")
        chosen = [c for c in CASES if c in chosen]
    if skip_parsers and "parsers" in chosen:
        chosen.remove("parsers")
    return chosen


def run(args: argparse.Namespace) -> int:
    from nem12.devtools.services import local_services

    started = time.perf_counter()
    load_before = os.getloadavg()
    cases = selected_cases(args.cases, args.skip_parsers)
    print(f"cases: {', '.join(cases)}", file=sys.stderr)
    out_dir: Path = args.out_dir
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    big = big_spec(args.big_nmis)
    big_path = big.ensure(out_dir)
    readings_csv = out_dir / f"{big.name}_readings.csv"
    if {"baseline", "copy"} & set(cases) and (
        not readings_csv.exists() or readings_csv.stat().st_mtime < big_path.stat().st_mtime
    ):
        print(f"writing the references' rows to {readings_csv} ...", file=sys.stderr)
        subprocess.run([NEM12, "parse", str(big_path), "--out", str(readings_csv)], check=True)
    long_csv = None
    if "copy" in cases:
        long_csv = long_copy_csv(readings_csv, big_path, out_dir / f"{big.name}_long.csv")
    correction_path = out_dir / f"{big.name}_correction.csv"
    if not correction_path.exists():
        correction_path.write_bytes(generate_bytes(correction_spec(big)))

    workdir = out_dir / "pipeline"
    subprocess.run(["rm", "-rf", str(workdir)], check=True)
    workdir.mkdir(parents=True)
    runs: dict[str, PipelineRun] = {}
    baseline: Baseline | None = None
    single: SingleCopy | None = None
    big_sizes: Sizes | None = None
    with local_services(workdir / "services") as services:
        env = airflow_env(workdir / "airflow", services.airflow_env(), workdir / "reports")
        log = workdir / "airflow.log"
        prepare_airflow(env, log)
        import psycopg

        from nem12.warehouse import schema

        role_dsn = services.role_dsn()
        with psycopg.connect(role_dsn, autocommit=True) as conn:
            schema.apply_schema(conn)  # as the pipeline's role, which owns its schema
        if "baseline" in cases:
            print("reference: long-row baseline, COPY + MERGE ...", file=sys.stderr)
            baseline = run_baseline(role_dsn, services.postgres_dsn, readings_csv)
            print(f"    {baseline.seconds:.1f} s", file=sys.stderr)
        if long_csv is not None:
            print("reference: single COPY into a keyed long table ...", file=sys.stderr)
            single = run_single_copy(role_dsn, services.postgres_dsn, long_csv)
            print(f"    {single.seconds:.1f} s", file=sys.stderr)

        since = 0
        workloads: list[tuple[str, str, dict, float | None]] = [
            (
                "big",
                "big file",
                {"landing/big/NEM12#BIG#MDPGEN#RETAILER.csv": big_path},
                args.run_timeout,
            ),
            (
                "duplicate",
                "duplicate",
                {"landing/big/NEM12#BIG-AGAIN#MDPGEN#RETAILER.csv": big_path},
                args.run_timeout,
            ),
        ]
        for count in SMALL_FILES:
            workloads.append(
                (f"small-{count}", small_name(count), small_objects(count), args.small_timeout)
            )
        workloads.append(
            (
                "correction",
                "10% correction",
                {"landing/big/NEM12#FIX#MDPGEN#RETAILER.csv": correction_path},
                args.run_timeout,
            )
        )
        workloads.sort(key=lambda w: PIPELINE_CASES.index(w[0]))
        number = 0
        for case, workload, objects, timeout in workloads:
            if case not in cases:
                continue
            number += 1
            result, since = run_pipeline(
                workload, objects, services, env, out_dir, number, since, timeout
            )
            runs[workload] = result
            print(
                f"    {result.seconds:.1f} s wall, {result.task_seconds:.1f} s in tasks, "
                f"{result.readings_merged:,} readings merged, exit {result.exit_code}"
                f"{' (timed out)' if result.timed_out else ''}",
                file=sys.stderr,
            )
            if case == "big":
                big_sizes = meter_day_sizes(services.postgres_dsn)
                print(
                    f"    meter_day {big_sizes.bytes_per_reading:.2f} bytes/reading",
                    file=sys.stderr,
                )

    parsers: list[Measurement] = []
    if "parsers" in cases:
        print("parsers alone on the big file ...", file=sys.stderr)
        for tool, snippet in (("aemo-mdff-reader", AEMO_SNIPPET), ("nemreader", NEMREADER_SNIPPET)):
            parsers.append(measure_snippet(tool, snippet, big, big_path, out_dir))

    found = targets(baseline, single, runs, big_sizes)
    elapsed = time.perf_counter() - started
    notes = {
        "cases run": ", ".join(cases),
        "whole benchmark": f"{elapsed / 60:.1f} min",
        "load average (1, 5, 15 min) before / after": (
            f"{', '.join(f'{x:.2f}' for x in load_before)} / "
            f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs"
        ),
        "keyed long table": "v4 columns, PRIMARY KEY (nmi, nmi_suffix, interval_start), "
        "default fillfactor (v4's meter_reading had 50)",
    }
    report = markdown(big, baseline, single, runs, big_sizes, parsers, found, notes)
    print(report)
    (out_dir / "pipeline_bench.md").write_text(report)

    def sizes_json(sizes: Sizes | None) -> dict | None:
        return (
            None
            if sizes is None
            else {**asdict(sizes), "bytes_per_reading": sizes.bytes_per_reading}
        )

    figures = {
        "cases": cases,
        "seconds": elapsed,
        "load_average_before": load_before,
        "big_file": {"name": big_path.name, "mb": big_path.stat().st_size / MB},
        "baseline": None
        if baseline is None
        else {
            **asdict(baseline),
            "sizes": sizes_json(baseline.sizes),
            "readings_per_s": baseline.readings_per_s,
        },
        "single_copy": None
        if single is None
        else {
            **asdict(single),
            "sizes": sizes_json(single.sizes),
            "readings_per_s": single.readings_per_s,
        },
        "meter_day_after_big_file": sizes_json(big_sizes),
        "pipeline": [
            {
                **asdict(r),
                "readings_per_s": r.readings_per_s,
                "work_readings_per_s": r.work_readings_per_s,
            }
            for r in runs.values()
        ],
        "parsers_alone": [{**asdict(m), "readings_per_s": m.readings_per_s} for m in parsers],
        "targets": [{**asdict(t), "result": t.result} for t in found],
    }
    (out_dir / "pipeline_bench.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"whole benchmark: {elapsed:.0f} s", file=sys.stderr)
    failed = [r for r in runs.values() if not r.ok]
    for r in failed:
        why = "timed out" if r.timed_out else f"exit {r.exit_code}"
        print(f"pipeline run '{r.workload}' failed ({why}); see {out_dir / 'logs'}")
    return 2 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=CASES,
        metavar="CASE",
        help=f"run only these, in this order: {', '.join(CASES)} (default: all); "
        "duplicate and correction bring in big",
    )
    parser.add_argument("--skip-parsers", action="store_true", help="leave out (c), the parsers")
    parser.add_argument("--big-nmis", type=int, default=BIG.nmis, help="NMIs in the big file")
    parser.add_argument(
        "--small-timeout",
        type=float,
        default=SMALL_FILES_TIMEOUT_S,
        help="stop a small-files run after this many seconds "
        f"(default {SMALL_FILES_TIMEOUT_S:.0f})",
    )
    parser.add_argument(
        "--run-timeout",
        type=float,
        default=RUN_TIMEOUT_S,
        help="stop the big file, duplicate or correction run after this many seconds "
        f"(default {RUN_TIMEOUT_S:.0f})",
    )
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR / "out")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ToolFailure as exc:
        print(f"pipeline_bench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
