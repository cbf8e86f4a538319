"""Faults: a file re-sent under the same name while a run holds the earlier version.

The pipeline's own steps run on real PostgreSQL and S3 (moto over HTTP); a
second version is put under the key at each point of a run. Every case ends
with both versions accounted for: two ledger rows, the newest version's
readings in the table (by the version rules), the bytes of each version kept
under archive/ or rejected/, nothing under landing/ or held/. Each runs on an
unversioned bucket (deletes with If-Match, small versions held in the
database), the same with a HEAD before each delete (as on an endpoint that does
not enforce If-Match, MinIO) and every version held in S3, and a versioned one
(by VersionId).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime

import psycopg
import pytest

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.devtools.services import LocalServices
from nem12.pipeline import steps, storage
from nem12.pipeline.settings import Settings
from nem12.warehouse import schema
from tests.conftest import empty_services
from tests.faults.scenarios import keys_of

KEY = "landing/NEM12#REUSED#MDPGEN#RETAILER.csv"
#: The first delivery: two days of one stream.
V1 = generate_bytes(GeneratorSpec(nmis=1, days=2, channels=("E1",), seed=1))
#: The re-sent file: a correction of the second day and the next day, newer UpdateDateTime.
V2 = generate_bytes(
    GeneratorSpec(
        nmis=1,
        days=2,
        channels=("E1",),
        seed=1,
        start_date=date(2024, 1, 2),
        update_datetime=datetime(2024, 3, 1, 9, 0),
        header_datetime=datetime(2024, 3, 1, 9, 30),
        variable_day_share=0.0,
    )
)
#: A first delivery the rules reject (no header), for the quarantine window.
V1_BAD = generate_bytes(
    GeneratorSpec(nmis=1, days=2, channels=("E1",), seed=1, defects=("header_missing",))
)


@pytest.fixture(scope="module")
def services(shared_services) -> LocalServices:
    empty_services(shared_services)
    return shared_services


@dataclass
class Bucket:
    """A fresh bucket and ledger per case, and the pipeline's steps on them."""

    services: LocalServices
    conn: psycopg.Connection
    settings: Settings
    s3: object
    injected: list[str] = field(default_factory=list)

    def put(self, data: bytes) -> str:
        return self.s3.put_object(Bucket=self.settings.bucket, Key=KEY, Body=data)["ETag"].strip(
            '"'
        )

    def keys(self, prefix: str = "") -> dict[str, bytes]:
        listed = self.s3.list_objects_v2(Bucket=self.settings.bucket, Prefix=prefix)
        return {
            o["Key"]: self.s3.get_object(Bucket=self.settings.bucket, Key=o["Key"])["Body"].read()
            for o in listed.get("Contents", [])
        }

    def run(self, after: str | None = None, inject: Callable[[], None] | None = None) -> None:
        """One run of the steps, calling ``inject`` after the step named ``after``."""

        def step(name: str) -> None:
            if name == after and inject is not None:
                inject()

        found = self.new_objects()
        step("sense")
        files = steps.register(self.s3, self.conn, self.settings, found)
        step("register")
        outcome = steps.validate(
            self.s3, self.conn, self.settings, files, f"run-{uuid.uuid4().hex[:6]}"
        )
        step("validate")
        staged = steps.load_group(self.s3, self.conn, self.settings, outcome.accepted)
        step("load")
        duplicates = [f for f in files if f.status == "duplicate"]
        steps.merge(self.s3, self.conn, self.settings, list(staged), also_archive=duplicates)

    def new_objects(self) -> list:
        return steps.new_objects(self.s3, self.conn, self.settings)

    def ledger(self) -> list[tuple]:
        return self.conn.execute(
            "SELECT key, etag, status, moved_to FROM nem12.file_ledger ORDER BY file_id"
        ).fetchall()

    def table(self) -> dict[tuple, int]:
        rows = self.conn.execute(
            "SELECT nmi, nmi_suffix, interval_start, file_id FROM nem12.meter_reading"
        ).fetchall()
        return {(r[0], r[1], r[2]): r[3] for r in rows}


@pytest.fixture(
    params=["unversioned", "unenforced", "versioned"],
    ids=["unversioned bucket", "unversioned, HEAD before each, held in S3", "versioned bucket"],
)
def bucket(request, services, tmp_path, monkeypatch) -> Iterator[Bucket]:
    name = f"b-{uuid.uuid4().hex[:10]}"
    s3 = services.s3_client()
    s3.create_bucket(Bucket=name)
    if request.param == "unenforced":
        monkeypatch.setattr(storage, "conditions", lambda *_: storage.UNENFORCED)
    if request.param == "versioned":
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    with psycopg.connect(services.postgres_dsn, autocommit=True) as conn:
        schema.apply_schema(conn)
        conn.execute(
            "TRUNCATE nem12.meter_day, nem12.day_staging, "
            "nem12.finding, nem12.file_ledger RESTART IDENTITY CASCADE"
        )
        settings = Settings(bucket=name, reports_dir=str(tmp_path / "reports"))
        if request.param == "unenforced":
            settings = replace(settings, hold_in_database_bytes=0)
        yield Bucket(services, conn, settings, s3)


def newest_wins(*versions: tuple[int, bytes]) -> dict[tuple, int]:
    """Each reading's file id by the version rules: later versions here are newer."""
    expected: dict[tuple, int] = {}
    for file_id, data in versions:
        expected.update(dict.fromkeys(keys_of(data), file_id))
    return expected


def resend(bucket: Bucket) -> Callable[[], None]:
    def inject() -> None:
        bucket.injected.append(bucket.put(V2))

    return inject


ARCHIVED = {
    "archive/NEM12#REUSED#MDPGEN#RETAILER.csv": V1,
    "archive/NEM12#REUSED#MDPGEN#RETAILER.file2.csv": V2,
}


def both_loaded_and_archived(bucket: Bucket, first: str, second: str, case: str, tally) -> None:
    """Two ledger rows loaded, each version's bytes archived, the newest readings kept."""
    assert bucket.ledger() == [
        (KEY, first, "loaded", "archive/NEM12#REUSED#MDPGEN#RETAILER.csv"),
        (KEY, second, "loaded", "archive/NEM12#REUSED#MDPGEN#RETAILER.file2.csv"),
    ]
    expected = newest_wins((1, V1), (2, V2))
    assert bucket.table() == expected
    assert bucket.keys("landing/") == {} and bucket.keys("held/") == {}
    assert bucket.keys("archive/") == ARCHIVED
    figures = tally.record(case, 1, set(expected), bucket.conn)
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)


@pytest.mark.parametrize("after", ["register", "validate", "load"])
def test_a_version_resent_while_a_run_holds_the_first_is_loaded_by_the_next(
    bucket, after, fault_tally
):
    first = bucket.put(V1)
    bucket.run(after=after, inject=resend(bucket))
    assert bucket.keys("landing/") == {KEY: V2}  # left for the next run, not archived as v1
    bucket.run()
    second = bucket.injected[0]
    both_loaded_and_archived(bucket, first, second, f"re-sent after {after}", fault_tally)


def test_a_version_replaced_before_it_could_be_read_is_recorded_as_replaced(bucket, fault_tally):
    first = bucket.put(V1)
    bucket.run(after="sense", inject=resend(bucket))
    assert bucket.ledger() == [(KEY, first, "replaced", None)]
    assert bucket.table() == {}
    bucket.run()
    assert bucket.ledger() == [
        (KEY, first, "replaced", None),
        (KEY, bucket.injected[0], "loaded", "archive/NEM12#REUSED#MDPGEN#RETAILER.csv"),
    ]
    expected = newest_wins((2, V2))
    assert bucket.table() == expected
    figures = fault_tally.record(
        "re-sent between sense and register", 1, set(expected), bucket.conn
    )
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)


def test_a_version_resent_during_the_quarantine_move_stays_for_the_next_run(bucket, fault_tally):
    """The new version lands after the rejected one is copied, before it is deleted."""
    first = bucket.put(V1_BAD)
    inject = resend(bucket)

    def before_delete(params, **_) -> None:
        if params["Key"] == KEY and not bucket.injected:
            inject()

    bucket.s3.meta.events.register("before-parameter-build.s3.DeleteObject", before_delete)
    bucket.run()
    bucket.s3.meta.events.unregister("before-parameter-build.s3.DeleteObject", before_delete)
    assert bucket.keys("landing/") == {KEY: V2}
    assert bucket.keys("rejected/").keys() == {
        "rejected/NEM12#REUSED#MDPGEN#RETAILER.csv",
        "rejected/NEM12#REUSED#MDPGEN#RETAILER.csv.findings.json",
    }
    assert bucket.keys("rejected/")["rejected/NEM12#REUSED#MDPGEN#RETAILER.csv"] == V1_BAD
    bucket.run()
    assert bucket.ledger() == [
        (KEY, first, "rejected", "rejected/NEM12#REUSED#MDPGEN#RETAILER.csv"),
        (KEY, bucket.injected[0], "loaded", "archive/NEM12#REUSED#MDPGEN#RETAILER.csv"),
    ]
    expected = newest_wins((2, V2))
    assert bucket.table() == expected
    assert bucket.keys("archive/") == {"archive/NEM12#REUSED#MDPGEN#RETAILER.csv": V2}
    figures = fault_tally.record(
        "re-sent during the quarantine move", 1, set(expected), bucket.conn
    )
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)


def test_a_run_killed_after_register_is_finished_though_its_key_now_holds_another(
    bucket, fault_tally
):
    """The killed run's version is no longer listed under landing/: the ledger brings it."""
    first = bucket.put(V1)
    steps.register(
        bucket.s3, bucket.conn, bucket.settings, bucket.new_objects()
    )  # ... and the run dies
    second = bucket.put(V2)
    assert [(o.key, o.etag) for o in bucket.new_objects()] == [(KEY, second), (KEY, first)]
    bucket.run()
    both_loaded_and_archived(
        bucket, first, second, "run killed after register, then re-sent", fault_tally
    )


def test_a_held_copy_that_changed_is_an_error_never_parsed_in_its_place(bucket):
    bucket.put(V1)
    files = steps.register(
        bucket.s3,
        bucket.conn,
        bucket.settings,
        steps.new_objects(bucket.s3, bucket.conn, bucket.settings),
    )
    if bucket.settings.hold_in_database_bytes >= len(V1):
        bucket.conn.execute("UPDATE nem12.held_content SET content = %s", (V2,))
    else:
        held = files[0].held(bucket.settings)
        bucket.s3.put_object(Bucket=bucket.settings.bucket, Key=held.held_key, Body=V2)
    with pytest.raises(storage.ContentMismatch, match="registered"):
        steps.load_group(bucket.s3, bucket.conn, bucket.settings, files)
    assert bucket.conn.execute("SELECT count(*) FROM nem12.day_staging").fetchone() == (0,)
    assert bucket.ledger()[0][2] == "registered"
