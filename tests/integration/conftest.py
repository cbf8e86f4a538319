"""Fixtures the integration tests share."""

from __future__ import annotations

import pytest

from nem12.warehouse import schema


@pytest.fixture
def env(services):
    """The services from nothing, a connection to the pipeline's database with its
    schema applied, and an S3 client: (services, conn, s3)."""
    import psycopg

    with psycopg.connect(services.postgres_dsn, autocommit=True) as conn:
        schema.apply_schema(conn)
        yield services, conn, services.s3_client()
