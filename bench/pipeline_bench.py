"""Pipeline benchmark behind ``make bench``: end to end through the real DAG vs plain SQL.

On one set of local services (PostgreSQL from pgserver, S3 from moto) it
measures, one after another, on the same generated data:

(a) the baseline, the fastest plain-SQL path: the big file's long-format rows
    (written once by ``nem12 parse --out .csv``, untimed) loaded with COPY into
    an unlogged table, then one MERGE into an empty copy of meter_reading;
(b) the pipeline, S3 object to committed meter rows, through ``nem12_ingest``
    run by ``airflow dags test``: the big file, the same file again under
    another key (a duplicate), a correction of 10% of its days, and 1,000
    small files of one NMI-day each;
(c) nemreader and aemo-mdff-reader parsing the big file alone.

Each pipeline run is timed by its wall clock (the whole ``airflow dags test``,
Airflow's start-up included) and by its work: the sum of its task durations
from Airflow's metadata, the sensor left out (it polls by nature, and under
``dags test`` it also carries Airflow's start-up of ~5 s). Peak RSS is that
of the ``airflow dags test`` process,
which runs every task in-process, so no task can have used more. It writes
``pipeline_bench.md`` and ``pipeline_bench.json``. A report, not a test: it
exits 0 whatever the figures, 2 if a step fails.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from parse_bench import (
    AEMO_SNIPPET,
    BENCH_DIR,
    MB,
    NEM12,
    NEMREADER_SNIPPET,
    InputSpec,
    Measurement,
    ToolFailure,
    measure_snippet,
    run_measured,
)

from nem12.devtools.demo import airflow_env, prepare_airflow
from nem12.devtools.generate import GeneratorSpec, generate_bytes

BIG = InputSpec("five_minute_25m", nmis=120, days=365)  # 25,228,800 readings, ~175 MB
CORRECTED_DAYS = 37  # 10% of the big file's 365 days, same NMIs, newer UpdateDateTime
SMALL_FILES = 1000
TARGET_VS_BASELINE = 0.8
TARGET_READINGS_PER_S = 250_000
TARGET_SMALL_FILES_S = 120.0
TARGET_DUPLICATE_SHARE = 0.02
TARGET_CORRECTION_SHARE = 0.20
TARGET_TASK_RSS_MB = 1000.0

STAGING_COLUMNS = """
    nmi text, nmi_suffix text, register_id text, meter_serial_number text, uom text,
    interval_length smallint, interval_start timestamptz, value numeric,
    quality_method text, reason_code text, reason_description text,
    update_datetime timestamptz, msats_load_datetime timestamptz, line_number bigint
"""
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


@dataclass
class Baseline:
    readings: int
    copy_seconds: float
    merge_seconds: float

    @property
    def seconds(self) -> float:
        return self.copy_seconds + self.merge_seconds

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds


@dataclass
class PipelineRun:
    """One ``airflow dags test nem12_ingest`` on one delivery."""

    workload: str
    objects: int
    readings_merged: int  # rows meter_reading gained or changed, by the ledger's counts
    seconds: float  # wall clock of the whole command
    task_seconds: float  # work: its task durations summed, the sensor left out
    peak_rss_mb: float
    exit_code: int
    tasks: dict[str, float] = field(default_factory=dict)

    @property
    def readings_per_s(self) -> float:
        return self.readings_merged / self.seconds if self.seconds else 0.0


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


def small_file(index: int) -> bytes:
    """One NMI-day (two channels, 30-minute) on days the big file does not hold."""
    spec = GeneratorSpec(nmis=1, days=1, seed=1, start_date=date(2030, 1, 1) + timedelta(index))
    return generate_bytes(spec)


def run_baseline(dsn: str, admin_dsn: str, readings_csv: Path) -> Baseline:
    """COPY then MERGE as the pipeline's role; CHECKPOINTs (superuser) start each clean."""
    import psycopg

    def checkpoint() -> None:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute("CHECKPOINT")

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_staging, bench_meter_reading")
        conn.execute(f"CREATE UNLOGGED TABLE bench_staging ({STAGING_COLUMNS})")
        conn.execute("CREATE TABLE bench_meter_reading (LIKE nem12.meter_reading INCLUDING ALL)")
        checkpoint()
        started = time.perf_counter()
        with conn.cursor() as cursor:
            copy_sql = "COPY bench_staging FROM STDIN (FORMAT csv, HEADER true)"
            with cursor.copy(copy_sql) as copy, readings_csv.open("rb") as source:
                while block := source.read(1 << 20):
                    copy.write(block)
        copied = time.perf_counter()
        merged_rows = conn.execute(BASELINE_MERGE).rowcount
        merged = time.perf_counter()
        conn.execute("DROP TABLE bench_staging, bench_meter_reading")
        checkpoint()
    return Baseline(merged_rows, copied - started, merged - copied)


def task_durations(airflow_home: Path) -> dict[str, float]:
    """Seconds per task (mapped instances summed) of the newest run of nem12_ingest."""
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        (run_id,) = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = 'nem12_ingest' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        rows = db.execute(
            "SELECT task_id, sum(coalesce(duration, 0)) FROM task_instance "
            "WHERE dag_id = 'nem12_ingest' AND run_id = ? GROUP BY task_id",
            (run_id,),
        ).fetchall()
    return {task: round(seconds, 2) for task, seconds in rows}


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


def run_pipeline(
    workload: str,
    objects: dict[str, bytes | Path],
    services,
    env: dict[str, str],
    out_dir: Path,
    number: int,
    since_file_id: int,
) -> tuple[PipelineRun, int]:
    s3 = services.s3_client()
    for key, body in objects.items():
        if isinstance(body, Path):
            s3.upload_file(str(body), services.bucket, key)
        else:
            s3.put_object(Bucket=services.bucket, Key=key, Body=body)
    print(f"  pipeline: {workload} ({len(objects)} objects) ...", file=sys.stderr)
    airflow_bin = str(Path(sys.executable).parent / "airflow")
    logical_date = f"2024-01-01T{number:02d}:00:00+00:00"
    seconds, rss, code, _ = run_measured(
        [airflow_bin, "dags", "test", "nem12_ingest", logical_date],
        out_dir / "logs" / f"pipeline_{number}_{workload.replace(' ', '_')}",
        env=env,
    )
    tasks = task_durations(Path(env["AIRFLOW_HOME"]))
    merged, last = ledger_readings(services.postgres_dsn, since_file_id)
    work = round(sum(s for task, s in tasks.items() if task != "sense"), 2)
    run = PipelineRun(workload, len(objects), merged, seconds, work, rss, code, tasks)
    return run, last


def ratio_targets(baseline: Baseline, runs: dict[str, PipelineRun]) -> list[tuple[str, str, bool]]:
    big, duplicate = runs["big file"], runs["duplicate"]
    correction, small = runs["10% correction"], runs["1,000 small files"]
    vs_baseline = big.readings_per_s / baseline.readings_per_s
    return [
        (
            f"big file end to end >= {TARGET_VS_BASELINE}x baseline",
            f"{vs_baseline:.2f}x",
            vs_baseline >= TARGET_VS_BASELINE,
        ),
        (
            f"big file end to end >= {TARGET_READINGS_PER_S:,} readings/s",
            f"{big.readings_per_s:,.0f}",
            big.readings_per_s >= TARGET_READINGS_PER_S,
        ),
        (
            f"1,000 small files < {TARGET_SMALL_FILES_S:.0f} s",
            f"{small.seconds:.1f} s",
            small.seconds < TARGET_SMALL_FILES_S and small.exit_code == 0,
        ),
        (
            f"duplicate < {TARGET_DUPLICATE_SHARE:.0%} of the first load (work)",
            f"{duplicate.task_seconds / big.task_seconds:.1%}",
            duplicate.task_seconds < TARGET_DUPLICATE_SHARE * big.task_seconds,
        ),
        (
            f"10% correction < {TARGET_CORRECTION_SHARE:.0%} of the first load (work)",
            f"{correction.task_seconds / big.task_seconds:.1%}",
            correction.task_seconds < TARGET_CORRECTION_SHARE * big.task_seconds,
        ),
        (
            f"peak RSS of every run < {TARGET_TASK_RSS_MB:.0f} MB",
            f"{max(r.peak_rss_mb for r in runs.values()):.0f} MB",
            all(r.peak_rss_mb < TARGET_TASK_RSS_MB for r in runs.values()),
        ),
    ]


def markdown(
    big: InputSpec,
    baseline: Baseline,
    runs: dict[str, PipelineRun],
    parsers: list[Measurement],
    targets: list[tuple[str, str, bool]],
) -> str:
    lines = [
        f"## Pipeline benchmark: {big.readings:,}-reading five-minute file and friends",
        "",
        "| what | readings | seconds | work seconds | readings/s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
        f"| (a) baseline COPY into unlogged table | {baseline.readings:,} | "
        f"{baseline.copy_seconds:.1f} | | {baseline.readings / baseline.copy_seconds:,.0f} | |",
        f"| (a) baseline MERGE into empty table | {baseline.readings:,} | "
        f"{baseline.merge_seconds:.1f} | | {baseline.readings / baseline.merge_seconds:,.0f} | |",
        f"| (a) baseline COPY + MERGE | {baseline.readings:,} | {baseline.seconds:.1f} | | "
        f"{baseline.readings_per_s:,.0f} | |",
    ]
    for run in runs.values():
        lines.append(
            f"| (b) pipeline: {run.workload} ({run.objects} objects) | {run.readings_merged:,} | "
            f"{run.seconds:.1f} | {run.task_seconds:.1f} | {run.readings_per_s:,.0f} | "
            f"{run.peak_rss_mb:.0f} |"
        )
    for m in parsers:
        lines.append(
            f"| (c) {m.tool} parse alone | {m.readings or 0:,} | {m.seconds:.1f} | | "
            f"{m.readings_per_s:,.0f} | {m.peak_rss_mb:.0f} |"
        )
    lines += ["", "Seconds per task (mapped instances summed):", ""]
    for run in runs.values():
        parts = ", ".join(f"{task} {seconds:.1f}" for task, seconds in sorted(run.tasks.items()))
        lines.append(f"- {run.workload}: {parts}")
    lines += ["", "| target | value | result |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {'PASS' if ok else 'FAIL'} |" for name, value, ok in targets]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    from nem12.devtools.services import local_services

    out_dir: Path = args.out_dir
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    big = big_spec(args.big_nmis)
    big_path = big.ensure(out_dir)
    readings_csv = out_dir / f"{big.name}_readings.csv"
    if not readings_csv.exists() or readings_csv.stat().st_mtime < big_path.stat().st_mtime:
        print(f"writing the baseline's rows to {readings_csv} ...", file=sys.stderr)
        subprocess.run([NEM12, "parse", str(big_path), "--out", str(readings_csv)], check=True)
    correction_path = out_dir / f"{big.name}_correction.csv"
    if not correction_path.exists():
        correction_path.write_bytes(generate_bytes(correction_spec(big)))

    workdir = out_dir / "pipeline"
    subprocess.run(["rm", "-rf", str(workdir)], check=True)
    workdir.mkdir(parents=True)
    runs: dict[str, PipelineRun] = {}
    with local_services(workdir / "services") as services:
        env = airflow_env(workdir / "airflow", services.airflow_env(), workdir / "reports")
        log = workdir / "airflow.log"
        prepare_airflow(env, log)
        import psycopg

        from nem12.warehouse import schema

        role_dsn = services.role_dsn()
        with psycopg.connect(role_dsn, autocommit=True) as conn:
            schema.apply_schema(conn)  # as the pipeline's role, which owns its schema
        print("baseline: COPY + MERGE ...", file=sys.stderr)
        baseline = run_baseline(role_dsn, services.postgres_dsn, readings_csv)

        since = 0
        workloads: list[tuple[str, dict[str, bytes | Path]]] = [
            ("big file", {"landing/big/NEM12#BIG#MDPGEN#RETAILER.csv": big_path}),
            ("duplicate", {"landing/big/NEM12#BIG-AGAIN#MDPGEN#RETAILER.csv": big_path}),
            ("10% correction", {"landing/big/NEM12#FIX#MDPGEN#RETAILER.csv": correction_path}),
            (
                "1,000 small files",
                {
                    f"landing/small/NEM12#S{i:04d}#MDPGEN#RETAILER.csv": small_file(i)
                    for i in range(SMALL_FILES)
                },
            ),
        ]
        for number, (workload, objects) in enumerate(workloads, start=1):
            result, since = run_pipeline(workload, objects, services, env, out_dir, number, since)
            runs[workload] = result
            print(
                f"    {result.seconds:.1f} s wall, {result.task_seconds:.1f} s in tasks, "
                f"{result.readings_merged:,} readings merged, exit {result.exit_code}",
                file=sys.stderr,
            )

    parsers: list[Measurement] = []
    if not args.skip_parsers:
        print("parsers alone on the big file ...", file=sys.stderr)
        for tool, snippet in (("aemo-mdff-reader", AEMO_SNIPPET), ("nemreader", NEMREADER_SNIPPET)):
            parsers.append(measure_snippet(tool, snippet, big, big_path, out_dir))

    targets = ratio_targets(baseline, runs)
    report = markdown(big, baseline, runs, parsers, targets)
    print(report)
    (out_dir / "pipeline_bench.md").write_text(report)
    figures = {
        "big_file": {"name": big_path.name, "mb": big_path.stat().st_size / MB},
        "baseline": {**asdict(baseline), "readings_per_s": baseline.readings_per_s},
        "pipeline": [{**asdict(r), "readings_per_s": r.readings_per_s} for r in runs.values()],
        "parsers_alone": [{**asdict(m), "readings_per_s": m.readings_per_s} for m in parsers],
        "targets": [{"name": n, "value": v, "pass": ok} for n, v, ok in targets],
    }
    (out_dir / "pipeline_bench.json").write_text(json.dumps(figures, indent=2) + "\n")
    failed = [r for r in runs.values() if r.exit_code != 0]
    for r in failed:
        print(f"pipeline run '{r.workload}' failed (exit {r.exit_code}); see {out_dir / 'logs'}")
    return 2 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-parsers", action="store_true", help="leave out (c)")
    parser.add_argument("--big-nmis", type=int, default=BIG.nmis, help="NMIs in the big file")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR / "out")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ToolFailure as exc:
        print(f"pipeline_bench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
