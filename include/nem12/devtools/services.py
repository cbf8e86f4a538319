"""Real services from the virtualenv for the demo and the tests, no Docker needed.

PostgreSQL 16 comes from ``pgserver`` (a real server, data under a folder we
choose); the S3 API from ``moto``'s HTTP server on loopback. The pipeline
reaches them exactly as it reaches production: through the Airflow
connections ``nem12_postgres`` and ``nem12_s3`` given as ``AIRFLOW_CONN_*``,
logging in to its own database as a role whose password PostgreSQL checks
(a new random one at every start), so tests can tell it never reaches a log.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from nem12.pipeline.connections import POSTGRES_CONN_ID, S3_CONN_ID

#: moto accepts any credentials; these only exist on loopback.
LOCAL_S3_KEY, LOCAL_S3_SECRET = "nem12-local", "nem12-local-secret"
#: The pipeline's database and login role (as in docker-compose).
LOCAL_DATABASE = LOCAL_ROLE = "nem12"
#: Checked for the pipeline's role before pgserver's trust lines (the superuser keeps trust).
_PASSWORD_HBA_LINE = f"local all {LOCAL_ROLE} scram-sha-256\n"


@dataclass(frozen=True)
class LocalServices:
    """Where the started services are; ``postgres_dsn`` is the superuser's, on the pipeline's
    database, for looking at what the pipeline did."""

    postgres_dsn: str
    postgres_socket_dir: str
    s3_endpoint: str
    bucket: str
    postgres_password: str = ""

    def role_dsn(self) -> str:
        """The pipeline role's login, as the tasks use it (password checked)."""
        return (
            f"host={self.postgres_socket_dir} dbname={LOCAL_DATABASE} user={LOCAL_ROLE} "
            f"password={self.postgres_password}"
        )

    def s3_client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_endpoint,
            aws_access_key_id=LOCAL_S3_KEY,
            aws_secret_access_key=LOCAL_S3_SECRET,
            region_name="us-east-1",
        )

    def airflow_env(self) -> dict[str, str]:
        """The connections and settings the DAGs read, as environment variables."""
        postgres = {
            "conn_type": "postgres",
            "host": self.postgres_socket_dir,
            "login": LOCAL_ROLE,
            "password": self.postgres_password,
            "schema": LOCAL_DATABASE,
        }
        s3 = {
            "conn_type": "aws",
            "login": LOCAL_S3_KEY,
            "password": LOCAL_S3_SECRET,
            "extra": {"endpoint_url": self.s3_endpoint, "region_name": "us-east-1"},
        }
        return {
            f"AIRFLOW_CONN_{POSTGRES_CONN_ID.upper()}": json.dumps(postgres),
            f"AIRFLOW_CONN_{S3_CONN_ID.upper()}": json.dumps(s3),
            "NEM12_BUCKET": self.bucket,
        }


#: Bulk-load settings: a buffer pool that holds a big file's index, fewer
#: checkpoints while big files land, room for the merge's sorts.
BULK_LOAD_SETTINGS = {
    "shared_buffers": "2GB",  # the one that needs a restart
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "work_mem": "64MB",
    "maintenance_work_mem": "512MB",
}


def _pipeline_role(postgres, password: str) -> None:
    """The pipeline's role with a password PostgreSQL checks, owning the pipeline's database."""
    import psycopg
    from psycopg import sql

    hba = Path(postgres.pgdata) / "pg_hba.conf"
    rules = hba.read_text()
    if _PASSWORD_HBA_LINE not in rules:
        hba.write_text(_PASSWORD_HBA_LINE + rules)
    with psycopg.connect(postgres.get_uri(), autocommit=True) as conn:
        for name, value in BULK_LOAD_SETTINGS.items():
            conn.execute(
                sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
            )
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (LOCAL_ROLE,)).fetchone()
        verb = "ALTER" if exists else "CREATE"
        conn.execute(
            sql.SQL(verb + " ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(LOCAL_ROLE), sql.Literal(password)
            )
        )
        if not conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (LOCAL_DATABASE,)
        ).fetchone():
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(LOCAL_DATABASE), sql.Identifier(LOCAL_ROLE)
                )
            )
        conn.execute("SELECT pg_reload_conf()")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def local_services(data_dir: Path, bucket: str = "nem12") -> Iterator[LocalServices]:
    """Start PostgreSQL and S3 on this machine, create the bucket; stop both after."""
    import pgserver
    from moto.server import ThreadedMotoServer
    from pgserver._commands import pg_ctl

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request lines

    data_dir.mkdir(parents=True, exist_ok=True)
    postgres = pgserver.get_server(data_dir / "postgres", cleanup_mode="stop")
    port = free_port()
    s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3_server.start()
    try:
        password = secrets.token_urlsafe(24)
        _pipeline_role(postgres, password)
        pg_ctl(["-m", "fast", "-w", "restart"], pgdata=postgres.pgdata, user=postgres.system_user)
        uri = postgres.get_uri(LOCAL_DATABASE)
        socket_dir = parse_qs(urlparse(uri).query)["host"][0]
        services = LocalServices(uri, socket_dir, f"http://127.0.0.1:{port}", bucket, password)
        # moto keeps its buckets per process: start from an empty S3 every time
        urllib.request.urlopen(
            urllib.request.Request(f"{services.s3_endpoint}/moto-api/reset", method="POST")
        ).close()
        services.s3_client().create_bucket(Bucket=bucket)
        yield services
    finally:
        s3_server.stop()
        postgres.cleanup()
        # pgserver's cleanup knows the server it started, not the restarted one
        with suppress(Exception):
            pg_ctl(["-m", "fast", "-w", "stop"], pgdata=postgres.pgdata, user=postgres.system_user)
