"""The pipeline's two Airflow connections as clients: the one place that builds them.

Tasks look connections up through the task SDK, the review plugin through the
api-server's secrets backends; both hand the connection to ``postgres``.
"""

from __future__ import annotations

from typing import Any

POSTGRES_CONN_ID = "nem12_postgres"
S3_CONN_ID = "nem12_s3"


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
