"""Faults: the S3 endpoint unreachable while sensing and while reading.

The step fails loudly (Airflow retries it with backoff) and leaves the ledger
and staging as they were, so the retry starts clean.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError

from nem12.devtools.services import free_port
from nem12.pipeline import steps
from nem12.pipeline.settings import Settings


def dead_s3():
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )


def ledger(conn) -> list[tuple]:
    return conn.execute("SELECT key, status FROM nem12.file_ledger ORDER BY key").fetchall()


def test_sensing_with_s3_down_raises_and_changes_nothing(conn):
    with pytest.raises(EndpointConnectionError):
        steps.new_objects(dead_s3(), conn, Settings())
    assert ledger(conn) == []


def test_reading_with_s3_down_raises_and_stages_nothing(conn):
    file = steps.Registered(file_id=1, key="landing/a.csv", size=10, status="registered")
    conn.execute(
        "INSERT INTO nem12.file_ledger (file_id, bucket, key, etag) "
        "VALUES (1, 'nem12', 'landing/a.csv', 'e')"
    )
    with pytest.raises(EndpointConnectionError):
        steps.load_group(dead_s3(), conn, Settings(), [file])
    assert conn.execute("SELECT count(*) FROM nem12.day_staging").fetchone() == (0,)
    assert ledger(conn) == [("landing/a.csv", "registered")]
