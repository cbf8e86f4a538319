"""``make demo``: the whole pipeline on real services from the venv, in one command.

Starts PostgreSQL (pgserver) and an S3 endpoint (moto) on loopback, uploads
sample files (or ``--files DIR``), runs ``nem12_ingest`` through Airflow's own
task runner (``airflow dags test``), prints a summary and, as the very last
line, one JSON object. Services stop at the end.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from nem12.devtools.generate import GeneratorSpec, generate_bytes, zip_bytes

if TYPE_CHECKING:
    from nem12.devtools.services import LocalServices

PROJECT = Path(__file__).resolve().parents[3]


def sample_files() -> list[dict[str, bytes]]:
    """Two deliveries: the first run's files, then corrections and redeliveries."""
    base = GeneratorSpec(
        nmis=3, days=3, interval_length=30, seed=3, update_datetime=datetime(2024, 2, 1, 9, 0)
    )
    corrected = GeneratorSpec(
        **{
            **base.__dict__,
            "seed": 13,
            "update_datetime": datetime(2024, 3, 1, 9, 0),
            "header_datetime": datetime(2024, 3, 1, 9, 30),
        }
    )
    older = GeneratorSpec(
        **{
            **base.__dict__,
            "seed": 23,
            "update_datetime": datetime(2024, 1, 15, 9, 0),
            "header_datetime": datetime(2024, 1, 15, 9, 30),
        }
    )
    other = GeneratorSpec(nmis=2, days=2, interval_length=5, seed=4)
    nested = GeneratorSpec(nmis=1, days=2, interval_length=15, seed=5)
    invalid = GeneratorSpec(nmis=1, days=2, seed=6, defects=("end_missing",))
    partial = GeneratorSpec(nmis=2, days=2, seed=7, defects=("value_negative",))
    first = {
        "landing/NEM12#0001#MDPGEN#RETAILER.csv": generate_bytes(base),
        "landing/NEM12#0002#MDPGEN#RETAILER.csv.gz": gzip.compress(generate_bytes(other)),
        "landing/NEM12#0003#MDPGEN#RETAILER.zip": zip_bytes(
            {
                "inner.zip": zip_bytes({"NEM12#0003a#MDPGEN#RETAILER.csv": generate_bytes(nested)}),
            }
        ),
        "landing/NEM12#0004#MDPGEN#RETAILER.csv": generate_bytes(invalid),
        "landing/NEM12#0005#MDPGEN#RETAILER.csv": generate_bytes(partial),
    }
    second = {
        "landing/NEM12#0006#MDPGEN#RETAILER.csv": generate_bytes(corrected),
        "landing/NEM12#0007#MDPGEN#RETAILER.csv": generate_bytes(older),
        "landing/NEM12#0001-resent#MDPGEN#RETAILER.csv": generate_bytes(base),
    }
    return [first, second]


def airflow_env(home: Path, services_env: dict[str, str], reports: Path) -> dict[str, str]:
    """Airflow's settings for the local wiring: a project-local home, our dags and plugins."""
    env = dict(os.environ)
    env.update(services_env)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "NEM12_REPORTS_DIR": str(reports),
            "NO_PROXY": "*",
            # Airflow's components start their helpers as `airflow ...` from PATH
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


def airflow(args: list[str], env: dict[str, str], log: Path) -> None:
    """Run an Airflow CLI command, its output to ``log``; stop the demo if it fails."""
    binary = str(Path(sys.executable).parent / "airflow")
    with log.open("a") as out:
        done = subprocess.run([binary, *args], env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"airflow {' '.join(args)} failed; see {log}")


def prepare_airflow(env: dict[str, str], log: Path, load_slots: int = 2) -> None:
    """Airflow's metadata database and the pipeline's pools, as a deployment sets them up."""
    airflow(["db", "migrate"], env, log)
    airflow(["pools", "set", "nem12_load", str(load_slots), "parse-and-load slots"], env, log)
    airflow(["pools", "set", "nem12_merge", "1", "one merge at a time"], env, log)


def summary(conn) -> dict[str, object]:
    rows = conn.execute(
        "SELECT key, status, quality, readings, inserted, updated, unchanged, superseded, "
        "report_location FROM nem12.file_ledger ORDER BY file_id"
    ).fetchall()
    files = [
        {
            "key": r[0],
            "status": r[1],
            "quality": r[2],
            "readings": r[3],
            "inserted": r[4],
            "updated": r[5],
            "unchanged": r[6],
            "superseded": r[7],
        }
        for r in rows
    ]
    by_status: dict[str, int] = {}
    for f in files:
        by_status[str(f["status"])] = by_status.get(str(f["status"]), 0) + 1
    merged = conn.execute("SELECT readings FROM nem12.ledger_summary").fetchone()[0]
    reports = sorted({r[8] for r in rows if r[8]})
    return {
        "files_by_status": by_status,
        "files": files,
        "readings_merged": merged,
        "report_locations": reports,
    }


def run(
    files_dir: Path | None, workdir: Path, check: Callable[[LocalServices], None] | None = None
) -> dict[str, object]:
    """Run the demo; ``check`` (tests) looks at the services before they stop."""
    import psycopg

    from nem12.devtools.services import local_services

    started = time.monotonic()
    shutil.rmtree(workdir, ignore_errors=True)  # every demo starts from empty services
    workdir.mkdir(parents=True)
    log = workdir / "airflow.log"
    log.write_text("")
    reports = workdir / "reports"
    with local_services(workdir / "services") as services:
        env = airflow_env(workdir / "airflow", services.airflow_env(), reports)
        prepare_airflow(env, log)
        s3 = services.s3_client()
        deliveries = (
            [
                {
                    f"landing/{p.relative_to(files_dir)}": p.read_bytes()
                    for p in sorted(files_dir.rglob("*"))
                    if p.is_file()
                }
            ]
            if files_dir
            else sample_files()
        )
        for number, delivery in enumerate(deliveries, start=1):
            for key, data in delivery.items():
                s3.put_object(Bucket=services.bucket, Key=key, Body=data)
            print(
                f"delivery {number}: {len(delivery)} objects; running nem12_ingest ...",
                file=sys.stderr,
            )
            airflow(["dags", "test", "nem12_ingest", f"2024-01-01T0{number}:00:00+00:00"], env, log)
        with psycopg.connect(services.postgres_dsn) as conn:
            result = summary(conn)
        if check is not None:
            check(services)
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops like Ctrl-C; a second signal cannot cut the shutdown short."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}


def serve(workdir: Path, executor: str, port: int) -> int:
    """``make airflow`` (LocalExecutor) and ``make cluster`` (Celery, two workers): the
    services and Airflow's components until Ctrl-C or SIGTERM, which stop them all."""
    from nem12.devtools.cluster import airflow_cluster
    from nem12.devtools.services import local_services

    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        with local_services(workdir / "services") as services:
            env = airflow_env(workdir / "airflow", services.airflow_env(), workdir / "reports")
            with airflow_cluster(
                workdir / "cluster", services, env, executor, port=port
            ) as cluster:
                print(
                    f"Airflow ({executor}) on {cluster.api_url}, login admin / {cluster.password}\n"
                    f"S3 endpoint {services.s3_endpoint}, bucket {services.bucket}: put files "
                    f"under landing/. Logs in {cluster.root}. Ctrl-C stops everything.",
                    flush=True,
                )
                while not (
                    ended := [n for n, p in cluster.processes.items() if p.poll() is not None]
                ):
                    time.sleep(1)
                print(f"{', '.join(ended)} stopped; see {cluster.root}", file=sys.stderr)
                return 1
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=Path, help="ingest the files in this folder instead")
    parser.add_argument("--workdir", type=Path, default=PROJECT / ".demo")
    parser.add_argument(
        "--serve",
        choices=sorted(EXECUTORS),
        help="start the services and Airflow's components with this executor instead",
    )
    parser.add_argument("--port", type=int, default=8080, help="the api-server's port (UI)")
    args = parser.parse_args(argv)
    if args.serve:
        return serve(args.workdir, EXECUTORS[args.serve], args.port)
    if args.files is not None and not args.files.is_dir():
        print(f"demo: {args.files} is not a folder", file=sys.stderr)
        return 2
    result = run(args.files, args.workdir)
    for f in result["files"]:  # type: ignore[union-attr]
        print(f"{f['status']:>10}  {f['readings'] or 0:>8} readings  {f['key']}")
    print(f"readings in meter_reading: {result['readings_merged']}")
    print(f"validation reports: {', '.join(result['report_locations']) or '-'}")  # type: ignore[arg-type]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
