"""A real PostgreSQL server (pgserver: PostgreSQL 16 from the venv), one database per test."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator

import pgserver
import psycopg
import pytest
from pgserver._commands import pg_ctl

from nem12.warehouse.schema import apply_schema


@pytest.fixture(scope="session")
def postgres(tmp_path_factory) -> Iterator[pgserver.PostgresServer]:
    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"), cleanup_mode="stop")
    yield server
    server.cleanup()
    # pgserver loses track of a server the fault cases restarted: stop it by its data folder
    with contextlib.suppress(subprocess.CalledProcessError):
        pg_ctl(["-m", "fast", "-w", "stop"], pgdata=server.pgdata, user=server.system_user)


@pytest.fixture
def conn(postgres) -> Iterator[psycopg.Connection]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.psql(f"CREATE DATABASE {name};")
    uri = postgres.get_uri(name)
    with psycopg.connect(uri, autocommit=True) as connection:
        apply_schema(connection)
        yield connection
    postgres.psql(f"DROP DATABASE {name} WITH (FORCE);")
