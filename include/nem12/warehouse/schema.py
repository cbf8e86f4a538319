"""The warehouse's schema in PostgreSQL (psycopg 3): tables, statuses, and how it is applied.

Parse-and-load tasks only ever write ``reading_staging`` (rows keyed by their
file), so parallel loads never contend on the meter-reading table; the merge
(``nem12.warehouse.merge``) is the one writer of ``meter_reading``.
"""

from __future__ import annotations

import psycopg

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
