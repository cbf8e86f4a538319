"""Shared helpers: parse a source completely and look at what came out; the servers.

The integration and fault tests share one plain PostgreSQL (``postgres``, a database
per test through ``conn``) and one ``local_services`` PostgreSQL and S3 (``services``,
emptied for each test), each started once per run. Tests that stop or restart a
server start their own.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from nem12.format.parsing import ParseConfig, ParseResult, parse_source
from nem12.format.spec import OUTPUT_SCHEMAS

FIXTURES = Path(__file__).parent / "fixtures"
AEMO = FIXTURES / "aemo"
#: nem-reader's text examples that shared/nem12-examples does not hold (see its README)
NEM_READER_EXTRA = FIXTURES / "nem-reader-extra"
AEMO_NEM13 = FIXTURES / "aemo-nem13"  # AEMO's 31 NEM13 example zips (see its README)


def pytest_unconfigure(config: pytest.Config) -> None:
    """pgserver says goodbye from an exit hook, after pytest closed the streams its
    log lines would go to (each printed as a 'Logging error' traceback)."""
    logging.getLogger("pgserver").disabled = True


@dataclass
class Parsed:
    """Every file's parse result, and what the files not rejected hold: NEM12
    readings, NEM13 reads."""

    results: list[ParseResult]
    readings: pl.DataFrame
    reads: pl.DataFrame

    @property
    def result(self) -> ParseResult:
        assert len(self.results) == 1, [r.file for r in self.results]
        return self.results[0]

    def rules(self, severity: str | None = None) -> set[str]:
        return {
            f.rule
            for r in self.results
            for f in r.findings
            if severity is None or f.severity == severity
        }


def parse_all(source, name: str | None = None, config: ParseConfig | None = None) -> Parsed:
    results: list[ParseResult] = []
    kept: dict[str, list[pl.DataFrame]] = {"NEM12": [], "NEM13": []}
    for parse in parse_source(source, name=name, config=config):
        batches = list(parse.batches())
        results.append(parse.result)
        if parse.result.status != "rejected":
            kept[parse.version].extend(batches)
    readings, reads = (
        (
            pl.concat(frames) if frames else pl.DataFrame(schema=OUTPUT_SCHEMAS[version])
        ).with_columns(pl.col(pl.Categorical, pl.Enum).cast(pl.String))
        for version, frames in kept.items()
    )
    return Parsed(results, readings, reads)


@pytest.fixture
def parse():
    return parse_all


@contextlib.contextmanager
def postgres_server(data_dir: Path):
    """A pgserver PostgreSQL on ``data_dir``, stopped after even if a test restarted it."""
    import pgserver
    from pgserver._commands import pg_ctl

    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server
    finally:
        server.cleanup()
        # pgserver loses track of a server the fault cases restarted: stop it by its data folder
        with contextlib.suppress(subprocess.CalledProcessError):
            pg_ctl(["-m", "fast", "-w", "stop"], pgdata=server.pgdata, user=server.system_user)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    with postgres_server(tmp_path_factory.mktemp("pgdata")) as server:
        yield server


@pytest.fixture
def conn(postgres):
    """A new database with the schema on ``postgres``, dropped after the test."""
    import psycopg

    from nem12.warehouse.schema import apply_schema

    name = f"t_{uuid.uuid4().hex[:12]}"
    postgres.psql(f"CREATE DATABASE {name};")
    with psycopg.connect(postgres.get_uri(name), autocommit=True) as connection:
        apply_schema(connection)
        yield connection
    postgres.psql(f"DROP DATABASE {name} WITH (FORCE);")


@pytest.fixture(scope="session")
def shared_services(tmp_path_factory):
    """PostgreSQL and S3 as ``make demo`` starts them, once per run: take them through
    ``services`` or ``empty_services``, which start every user from nothing."""
    from nem12.devtools.services import local_services

    with local_services(tmp_path_factory.mktemp("services")) as started:
        yield started


def empty_services(services) -> None:
    """As just started: an empty S3 with the one bucket, a new empty pipeline database."""
    import psycopg
    from psycopg import sql

    from nem12.devtools.services import LOCAL_DATABASE, LOCAL_ROLE

    reset = f"{services.s3_endpoint}/moto-api/reset"
    urllib.request.urlopen(urllib.request.Request(reset, method="POST")).close()
    services.s3_client().create_bucket(Bucket=services.bucket)
    with psycopg.connect(services.postgres_dsn, dbname="postgres", autocommit=True) as admin:
        database, role = sql.Identifier(LOCAL_DATABASE), sql.Identifier(LOCAL_ROLE)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(database))
        admin.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(database, role))


@pytest.fixture
def services(shared_services):
    empty_services(shared_services)
    return shared_services
