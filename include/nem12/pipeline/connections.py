"""The pipeline's two Airflow connections as clients: the one place that builds them.

Tasks look connections up through the task SDK, the review plugin through the
api-server's secrets backends; both hand the connection to ``postgres``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

POSTGRES_CONN_ID = "nem12_postgres"
S3_CONN_ID = "nem12_s3"
#: The environment variable holding ``nem12_postgres`` in Airflow's own convention.
POSTGRES_CONN_VARIABLE = "AIRFLOW_CONN_NEM12_POSTGRES"


def postgres(connection: Any):
    """A psycopg connection (autocommit) from an Airflow connection's fields."""
    import psycopg

    params = {
        "host": connection.host,
        "port": connection.port,
        "dbname": connection.schema,
        "user": connection.login,
        "password": connection.password,
    }
    return psycopg.connect(**{k: v for k, v in params.items() if v}, autocommit=True)


def s3():
    """A boto3 S3 client from the connection ``nem12_s3`` (``endpoint_url`` for MinIO)."""
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=S3_CONN_ID).get_conn()


def postgres_dsn_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """``nem12_postgres`` from ``AIRFLOW_CONN_NEM12_POSTGRES`` (URI or JSON) as a libpq
    string, for the ``nem12`` command outside Airflow; None if it is not set."""
    env = os.environ if environ is None else environ
    conn = env.get(POSTGRES_CONN_VARIABLE, "").strip()
    if not conn:
        return None
    if not conn.startswith("{"):
        return conn  # postgres://user:password@host:port/database, libpq reads it
    try:
        found = json.loads(conn)
    except ValueError:
        raise ValueError(f"{POSTGRES_CONN_VARIABLE} is neither a URI nor JSON") from None
    from psycopg.conninfo import make_conninfo

    params = {
        "host": found.get("host"),
        "port": found.get("port"),
        "dbname": found.get("schema"),
        "user": found.get("login"),
        "password": found.get("password"),
    }
    return make_conninfo(**{k: v for k, v in params.items() if v})
