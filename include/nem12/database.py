"""PostgreSQL access for the pipeline: schema, file ledger and staging loads (psycopg 3).

Parse-and-load tasks only ever write ``reading_staging`` (rows keyed by their
file), so parallel loads never contend on the meter-reading table; the merge
(``nem12.merge``) is the one writer of ``meter_reading``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from datetime import timedelta, timezone
from typing import NamedTuple

import polars as pl
import psycopg
from psycopg.types.json import Jsonb

from nem12.output import prefetched, value_as_text
from nem12.parsing import FileParser, FileReport

NEM_TZ = timezone(timedelta(hours=10))

SCHEMA = "nem12"

#: Every status a ``file_ledger`` row can have, in the order a file moves through them;
#: ``replaced``: the version was overwritten or removed under its key before it could be read.
FILE_STATUSES = (
    "registered",
    "validated",
    "staged",
    "loaded",
    "partial",
    "rejected",
    "duplicate",
    "replaced",
)
#: Statuses of files the pipeline has not finished with (the next run picks them up).
UNFINISHED = ("registered", "validated", "staged")
#: A file in one of these is done with: later steps of any run leave it alone.
FINISHED = tuple(status for status in FILE_STATUSES if status not in UNFINISHED)
#: Finished for good: a replaced version that shows up again under its key is read then.
FINISHED_FOR_GOOD = tuple(status for status in FINISHED if status != "replaced")

#: Bumped with every change to DDL (applied by the owner of the schema).
SCHEMA_VERSION = 4

#: The least privilege the tasks need once the schema exists: read and write
#: rows, no DDL. Run as the schema's owner; ``{role}`` is the tasks' login role.
TASK_ROLE_SQL = f"""
GRANT USAGE ON SCHEMA {SCHEMA} TO {{role}};
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {SCHEMA} TO {{role}};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {SCHEMA} TO {{role}};
"""

#: Free space kept on meter_reading's pages for corrections: MDFF revisions
#: (estimates replaced by actuals) rewrite whole days, a page's rows at once, and
#: at 50 each row's first new version fits beside the old one.
METER_FILLFACTOR = 50

#: Idempotent DDL: applying it again changes nothing.
DDL = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};

CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (
    version      integer PRIMARY KEY,
    applied_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.file_ledger (
    file_id          bigserial PRIMARY KEY,
    bucket           text NOT NULL,
    key              text NOT NULL,
    etag             text,
    size_bytes       bigint,
    sha256           text,
    header_datetime  timestamptz,
    first_seen       timestamptz NOT NULL DEFAULT now(),
    status           text NOT NULL DEFAULT 'registered',
    quality          text,
    readings         bigint,
    inserted         bigint,
    updated          bigint,
    unchanged        bigint,
    superseded       bigint,
    report_location  text,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (bucket, key, etag)
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.finding (
    file_id      bigint NOT NULL REFERENCES {SCHEMA}.file_ledger ON DELETE CASCADE,
    file         text NOT NULL,
    rule         text NOT NULL,
    severity     text NOT NULL,
    line         bigint,
    record_type  text,
    nmi          text,
    message      text NOT NULL
);
CREATE INDEX IF NOT EXISTS finding_file_id ON {SCHEMA}.finding (file_id);

CREATE UNLOGGED TABLE IF NOT EXISTS {SCHEMA}.reading_staging (
    file_id              bigint NOT NULL,
    member               integer NOT NULL,
    nmi                  text NOT NULL,
    nmi_suffix           text NOT NULL,
    interval_start       timestamptz NOT NULL,
    interval_length      smallint NOT NULL,
    value                numeric NOT NULL,
    uom                  text NOT NULL,
    quality_method       text NOT NULL,
    reason_code          text,
    reason_description   text,
    update_datetime      timestamptz
);
-- v2: staging holds only what the merge reads, and no index (cheaper COPY);
-- the merge finds a file's rows through staged_stream or by one scan.
ALTER TABLE {SCHEMA}.reading_staging
    DROP COLUMN IF EXISTS msats_load_datetime, DROP COLUMN IF EXISTS line_number;
DROP INDEX IF EXISTS {SCHEMA}.reading_staging_file_id;

-- Per staged file, member and stream: the span of its intervals, so the merge
-- can tell without touching the readings which files cannot collide.
CREATE UNLOGGED TABLE IF NOT EXISTS {SCHEMA}.staged_stream (
    file_id      bigint NOT NULL,
    member       integer NOT NULL,
    nmi          text NOT NULL,
    nmi_suffix   text NOT NULL,
    first_start  timestamptz NOT NULL,
    last_start   timestamptz NOT NULL,
    readings     bigint NOT NULL,
    PRIMARY KEY (file_id, member, nmi, nmi_suffix)
);

CREATE TABLE IF NOT EXISTS {SCHEMA}.meter_reading (
    nmi                  text NOT NULL,
    nmi_suffix           text NOT NULL,
    interval_start       timestamptz NOT NULL,
    interval_length      smallint NOT NULL,
    value                numeric NOT NULL,
    uom                  text NOT NULL,
    quality_method       text NOT NULL,
    reason_code          text,
    reason_description   text,
    update_datetime      timestamptz,
    header_datetime      timestamptz,
    file_id              bigint NOT NULL,
    merged_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (nmi, nmi_suffix, interval_start)
);

-- v3: half of each page left free, so a correction can write a reading's new
-- version beside the old one (a HOT update: no new index entry, less WAL).
-- Applies to pages written from now on. A fillfactor an owner chose is kept.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_class c, unnest(c.reloptions) AS o
                   WHERE c.oid = '{SCHEMA}.meter_reading'::regclass
                     AND o LIKE 'fillfactor=%') THEN
        ALTER TABLE {SCHEMA}.meter_reading SET (fillfactor = {METER_FILLFACTOR});
    END IF;
END
$$;

-- v4: the version each row registered (VersionId on a versioned bucket) and
-- where its bytes lie once done (archive or quarantine; a re-used name gets
-- a name of its own there).
ALTER TABLE {SCHEMA}.file_ledger
    ADD COLUMN IF NOT EXISTS version_id text,
    ADD COLUMN IF NOT EXISTS moved_to text,
    ADD COLUMN IF NOT EXISTS from_participant text,
    ADD COLUMN IF NOT EXISTS to_participant text,
    ADD COLUMN IF NOT EXISTS members jsonb;
-- The review view lists the ledger newest first, by sender and arrival.
CREATE INDEX IF NOT EXISTS file_ledger_first_seen ON {SCHEMA}.file_ledger (first_seen DESC);
CREATE INDEX IF NOT EXISTS file_ledger_from ON {SCHEMA}.file_ledger (from_participant);
CREATE INDEX IF NOT EXISTS finding_rule ON {SCHEMA}.finding (rule);
CREATE INDEX IF NOT EXISTS finding_nmi ON {SCHEMA}.finding (nmi);
-- The text of the offending record, bounded (findings.RAW_TEXT_CHARS).
ALTER TABLE {SCHEMA}.finding ADD COLUMN IF NOT EXISTS raw text;

-- Which DAG runs touched which files, and in which task.
CREATE TABLE IF NOT EXISTS {SCHEMA}.file_run (
    file_id   bigint NOT NULL REFERENCES {SCHEMA}.file_ledger ON DELETE CASCADE,
    dag_id    text NOT NULL,
    run_id    text NOT NULL,
    task_id   text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, dag_id, run_id, task_id)
);
CREATE INDEX IF NOT EXISTS file_run_run ON {SCHEMA}.file_run (run_id);
-- Each registration looks up content already taken, each sensing unfinished rows.
CREATE INDEX IF NOT EXISTS file_ledger_sha256 ON {SCHEMA}.file_ledger (sha256);
CREATE INDEX IF NOT EXISTS file_ledger_unfinished ON {SCHEMA}.file_ledger (bucket)
    WHERE status IN ('registered', 'validated', 'staged');

-- Every change the merge announced (the nem12_meter_reading Asset event),
-- recorded by the nem12_changes DAG once per event.
CREATE TABLE IF NOT EXISTS {SCHEMA}.table_change (
    source_dag_id  text NOT NULL,
    source_run_id  text NOT NULL,
    announced_at   timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    files          bigint,
    inserted       bigint,
    updated        bigint,
    unchanged      bigint,
    superseded     bigint,
    PRIMARY KEY (source_dag_id, source_run_id)
);

-- One row: what the ledger says at a glance (for people and monitoring).
CREATE OR REPLACE VIEW {SCHEMA}.ledger_summary AS
SELECT
    (SELECT coalesce(jsonb_object_agg(status, files), '{{}}'::jsonb)
       FROM (SELECT status, count(*) AS files FROM {SCHEMA}.file_ledger GROUP BY status) s)
        AS files_by_status,
    (SELECT min(first_seen) FROM {SCHEMA}.file_ledger
      WHERE status IN ('registered', 'validated', 'staged')) AS oldest_unprocessed,
    (SELECT max(updated_at) FROM {SCHEMA}.file_ledger
      WHERE status IN ('loaded', 'partial')) AS last_merge,
    (SELECT count(*) FROM {SCHEMA}.meter_reading) AS readings;
"""

#: Staging columns in the order COPY receives them (after file_id).
STAGED_COLUMNS = (
    "nmi",
    "nmi_suffix",
    "interval_start",
    "interval_length",
    "value",
    "uom",
    "quality_method",
    "reason_code",
    "reason_description",
    "update_datetime",
)


def schema_version(conn: psycopg.Connection) -> int | None:
    """The schema version the database holds (None before the first apply)."""
    row = conn.execute(f"SELECT to_regclass('{SCHEMA}.schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    found = conn.execute(f"SELECT max(version) FROM {SCHEMA}.schema_version").fetchone()
    return int(found[0]) if found and found[0] is not None else None


def apply_schema(conn: psycopg.Connection) -> None:
    """Create what is missing; safe to run on every task start.

    A database already at ``SCHEMA_VERSION`` is left alone, so the tasks can
    run as a role without DDL rights once an owner applied the schema
    (``TASK_ROLE_SQL``).
    """
    found = schema_version(conn)
    if found is not None and found >= SCHEMA_VERSION:  # a newer worker may have applied more
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('nem12 schema'))")
        conn.execute(DDL)
        conn.execute(
            f"INSERT INTO {SCHEMA}.schema_version (version) VALUES (%s) ON CONFLICT DO NOTHING",
            (SCHEMA_VERSION,),
        )


class LedgerRow(NamedTuple):
    """What the ledger holds of an object version when it is registered."""

    file_id: int
    status: str
    sha256: str | None
    version_id: str | None


def register_file(
    conn: psycopg.Connection,
    bucket: str,
    key: str,
    etag: str | None,
    size_bytes: int | None,
    sha256: str | None = None,
) -> LedgerRow:
    """The ledger row of an object version, added on first sight."""
    row = conn.execute(
        f"""
        INSERT INTO {SCHEMA}.file_ledger (bucket, key, etag, size_bytes, sha256)
        VALUES (%s, %s, %s, %s, %s)
        ON CONFLICT (bucket, key, etag) DO UPDATE SET updated_at = now()
        RETURNING file_id, status, sha256, version_id
        """,
        (bucket, key, etag, size_bytes, sha256),
    ).fetchone()
    assert row is not None
    return LedgerRow(int(row[0]), row[1], row[2], row[3])


def taken_content(
    conn: psycopg.Connection, sha256: str, file_id: int | None = None
) -> tuple[int, str] | None:
    """The earlier file (id, key) whose content this is, unless it was rejected or
    replaced; earlier than ``file_id``, or than any (None: a file not registered)."""
    row = conn.execute(
        f"SELECT file_id, key FROM {SCHEMA}.file_ledger "
        "WHERE sha256 = %s AND (%s::bigint IS NULL OR file_id < %s) "
        "AND status NOT IN ('rejected', 'duplicate', 'replaced') ORDER BY file_id LIMIT 1",
        (sha256, file_id, file_id),
    ).fetchone()
    return (int(row[0]), row[1]) if row else None


def record_version(
    conn: psycopg.Connection, file_id: int, sha256: str, version_id: str | None, status: str
) -> None:
    """The registered version's SHA-256 and VersionId, once its bytes are held."""
    conn.execute(
        f"UPDATE {SCHEMA}.file_ledger SET sha256 = %s, version_id = %s, status = %s, "
        "moved_to = NULL, updated_at = now() WHERE file_id = %s",
        (sha256, version_id, status, file_id),
    )


def mark_replaced(conn: psycopg.Connection, file_id: int) -> bool:
    """Status replaced, unless an overlapping run finished the version meanwhile."""
    return (
        conn.execute(
            f"UPDATE {SCHEMA}.file_ledger SET status = 'replaced', updated_at = now() "
            "WHERE file_id = %s AND status <> ALL(%s)",
            (file_id, list(FINISHED_FOR_GOOD)),
        ).rowcount
        == 1
    )


def unfinished_versions(conn: psycopg.Connection, bucket: str) -> list[tuple]:
    """(key, etag, size, first_seen) of every version registered in ``bucket`` and not
    finished: the next run takes them up from their held copies."""
    return conn.execute(
        f"SELECT key, etag, size_bytes, first_seen FROM {SCHEMA}.file_ledger "
        "WHERE bucket = %s AND status = ANY(%s) ORDER BY file_id",
        (bucket, list(UNFINISHED)),
    ).fetchall()


def record_table_change(
    conn: psycopg.Connection, dag_id: str, run_id: str, announced_at: object, counts: dict
) -> bool:
    """One announced change of the meter table; False if this event was recorded before."""
    return (
        conn.execute(
            f"""
            INSERT INTO {SCHEMA}.table_change (source_dag_id, source_run_id, announced_at,
                files, inserted, updated, unchanged, superseded)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT DO NOTHING
            """,
            (
                dag_id,
                run_id,
                announced_at,
                *(
                    counts.get(k)
                    for k in ("files", "inserted", "updated", "unchanged", "superseded")
                ),
            ),
        ).rowcount
        == 1
    )


def record_runs(
    conn: psycopg.Connection, file_ids: list[int], dag_id: str, run_id: str, task_id: str
) -> None:
    """That a DAG run's task touched these files (for the review view)."""
    conn.execute(
        f"INSERT INTO {SCHEMA}.file_run (file_id, dag_id, run_id, task_id) "
        "SELECT f, %s, %s, %s FROM unnest(%s::bigint[]) AS f "
        f"WHERE f IN (SELECT file_id FROM {SCHEMA}.file_ledger) ON CONFLICT DO NOTHING",
        (dag_id, run_id, task_id, file_ids),
    )


def set_moved_to(conn: psycopg.Connection, file_id: int, key: str) -> None:
    conn.execute(
        f"UPDATE {SCHEMA}.file_ledger SET moved_to = %s WHERE file_id = %s", (key, file_id)
    )


def registered_versions(conn: psycopg.Connection, file_ids: list[int]) -> list[tuple]:
    """(file_id, key, size, status, etag, sha256, version_id) of ``file_ids``, by id."""
    return conn.execute(
        f"SELECT file_id, key, size_bytes, status, etag, sha256, version_id "
        f"FROM {SCHEMA}.file_ledger WHERE file_id = ANY(%s) ORDER BY file_id",
        (file_ids,),
    ).fetchall()


#: Rows per COPY message, and how many messages a thread formats ahead of the
#: one being sent: parsing overlaps the server's ingest in ~30 MB of text.
COPY_ROWS = 1 << 16
COPY_PIECES_AHEAD = 4


def _copy_text(file_id: int, member: int, batch: pl.DataFrame) -> Iterator[bytes]:
    """A batch as COPY csv: exact decimals, ISO timestamps with their UTC offset."""
    columns = [
        pl.lit(file_id).alias("file_id"),
        pl.lit(member).alias("member"),
        *[value_as_text() if c == "value" else pl.col(c).cast(pl.String) for c in STAGED_COLUMNS],
    ]
    for piece in batch.iter_slices(COPY_ROWS):
        text = io.BytesIO()
        piece.select(columns).write_csv(text, include_header=False, null_value="\\N")
        yield text.getvalue()


def _stream_spans(batch: pl.DataFrame) -> pl.DataFrame:
    return batch.group_by("nmi", "nmi_suffix").agg(
        first_start=pl.col("interval_start").min(),
        last_start=pl.col("interval_start").max(),
        readings=pl.len(),
    )


def stage_readings(conn: psycopg.Connection, file_id: int, parsers: Iterable[FileParser]) -> int:
    """Replace the file's staging rows with the accepted readings of its members.

    One transaction: a load that dies leaves the previous rows, never half of
    them, so a retried load is idempotent. A member rejected only at its end
    (a missing 900, say) has its rows removed before the commit. Each kept
    member's streams and their spans go to ``staged_stream`` for the merge.
    """
    rows = 0
    rejected: list[int] = []
    spans: list[pl.DataFrame] = []
    columns = ", ".join(("file_id", "member", *STAGED_COLUMNS))
    with conn.transaction(), conn.cursor() as cursor:
        # Overlapping runs loading the same file take turns; the second replaces the rows.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtext('nem12 stage'), (%s %% 2147483647)::int)",
            (file_id,),
        )
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.staged_stream WHERE file_id = %(id)s) "
            f"OR EXISTS (SELECT 1 FROM {SCHEMA}.file_ledger WHERE file_id = %(id)s "
            "AND status = 'staged')",
            {"id": file_id},
        )
        restaging = cursor.fetchone()
        if restaging and restaging[0]:  # a retry after a committed load; else nothing to scan
            for table in ("reading_staging", "staged_stream"):
                cursor.execute(f"DELETE FROM {SCHEMA}.{table} WHERE file_id = %s", (file_id,))

        def pieces() -> Iterator[bytes]:
            nonlocal rows
            for member, parser in enumerate(parsers):
                member_spans: list[pl.DataFrame] = []
                for batch in parser.batches():
                    yield from _copy_text(file_id, member, batch)
                    member_spans.append(_stream_spans(batch))
                assert parser.report is not None
                if parser.report.status == "rejected":
                    rejected.append(member)
                else:
                    rows += parser.report.readings
                    spans.extend(s.with_columns(member=pl.lit(member)) for s in member_spans)

        with cursor.copy(
            f"COPY {SCHEMA}.reading_staging ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')"
        ) as copy:
            for text in prefetched(pieces(), depth=COPY_PIECES_AHEAD):  # parse while it sends
                copy.write(text)
        if rejected:
            cursor.execute(
                f"DELETE FROM {SCHEMA}.reading_staging WHERE file_id = %s AND member = ANY(%s)",
                (file_id, rejected),
            )
        if spans:
            streams = (
                pl.concat(spans)
                .group_by("member", "nmi", "nmi_suffix")
                .agg(
                    pl.col("first_start").min(),
                    pl.col("last_start").max(),
                    pl.col("readings").sum(),
                )
                .sort("member", "nmi", "nmi_suffix")
            )
            cursor.executemany(
                f"INSERT INTO {SCHEMA}.staged_stream (file_id, member, nmi, nmi_suffix, "
                "first_start, last_start, readings) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(file_id, *row) for row in streams.iter_rows()],
            )
    return rows


def set_status(conn: psycopg.Connection, file_id: int, status: str) -> None:
    conn.execute(
        f"UPDATE {SCHEMA}.file_ledger SET status = %s, updated_at = now() WHERE file_id = %s",
        (status, file_id),
    )


def finished_files(conn: psycopg.Connection, file_ids: list[int]) -> set[int]:
    """Those of ``file_ids`` another run has finished with (overlapping runs)."""
    rows = conn.execute(
        f"SELECT file_id FROM {SCHEMA}.file_ledger WHERE file_id = ANY(%s) AND status = ANY(%s)",
        (file_ids, list(FINISHED)),
    ).fetchall()
    return {row[0] for row in rows}


def mark_staged(conn: psycopg.Connection, file_id: int) -> bool:
    """Status staged, unless a concurrent run's merge finished the file meanwhile."""
    return (
        conn.execute(
            f"UPDATE {SCHEMA}.file_ledger SET status = 'staged', updated_at = now() "
            "WHERE file_id = %s AND status <> ALL(%s)",
            (file_id, list(FINISHED)),
        ).rowcount
        == 1
    )


def set_report_location(conn: psycopg.Connection, file_ids: list[int], location: str) -> None:
    conn.execute(
        f"UPDATE {SCHEMA}.file_ledger SET report_location = %s WHERE file_id = ANY(%s)",
        (location, file_ids),
    )


def _text(value: str | None) -> str | None:
    """Text PostgreSQL can store: a finding may quote a NUL byte of a binary file."""
    return value.replace("\x00", "\\x00") if value else value


def _member(report: FileReport) -> dict[str, object]:
    """What the ledger keeps of one MDFF file of an object: its header and outcome."""
    header = report.header
    return {
        "name": _text(report.file),
        "status": report.status,
        "version": _text(header.version),
        "datetime": header.datetime.isoformat() if header.datetime else None,
        "from": _text(header.from_participant),
        "to": _text(header.to_participant),
        "blocks": report.blocks,
        "rejected_blocks": report.rejected_blocks,
        "readings": report.readings,
        "findings": len(report.findings),
    }


def record_parse(
    conn: psycopg.Connection,
    file_id: int,
    reports: list[FileReport],
    quality: str,
    texts: dict[tuple[str, int], str] | None = None,
) -> None:
    """Keep what parsing found: header DateTime (NEM time), quality and findings, each
    with the text of its record from ``texts`` ((member, line) -> text).

    An object may hold several MDFF files (zip members); the first member's
    header DateTime stands for the object in version ordering.
    """
    header = next((r.header.datetime for r in reports if r.header.datetime), None)
    sender = next((r.header.from_participant for r in reports if r.header.from_participant), None)
    recipient = next((r.header.to_participant for r in reports if r.header.to_participant), None)
    texts = texts or {}
    findings = [(f, texts.get((f.file, f.line or 0))) for r in reports for f in r.findings]
    with conn.transaction():
        conn.execute(
            f"""
            UPDATE {SCHEMA}.file_ledger
            SET header_datetime = %s, quality = %s, status = %s, readings = %s,
                from_participant = %s, to_participant = %s, members = %s, updated_at = now()
            WHERE file_id = %s
            """,
            (
                header.replace(tzinfo=NEM_TZ) if header else None,
                quality,
                "rejected" if quality == "rejected" else "validated",
                sum(r.readings for r in reports),
                _text(sender),
                _text(recipient),
                Jsonb([_member(r) for r in reports]),
                file_id,
            ),
        )
        conn.execute(f"DELETE FROM {SCHEMA}.finding WHERE file_id = %s", (file_id,))
        with conn.cursor() as cursor:
            cursor.executemany(
                f"""
                INSERT INTO {SCHEMA}.finding
                    (file_id, file, rule, severity, line, record_type, nmi, message, raw)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
                """,
                [
                    (
                        file_id,
                        _text(f.file),
                        f.rule,
                        f.severity,
                        f.line,
                        _text(f.record_type),
                        _text(f.nmi),
                        _text(f.message),
                        _text(raw),
                    )
                    for f, raw in findings
                ],
            )
