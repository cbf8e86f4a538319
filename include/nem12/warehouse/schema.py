"""The warehouse's schema in PostgreSQL (psycopg 3): tables, statuses, and how it is applied.

NEM12 versions data by the day, and so does the warehouse: ``meter_day``
holds one row per (nmi, nmi_suffix, interval_date) with the day's values as
an exact ``numeric[]``; ``meter_reading`` is a view of it, one row per
interval. NEM13 reads live in ``meter_read`` (one row per current 250 read).
Parse-and-load tasks only ever write ``day_staging`` and ``read_staging``
(rows keyed by their file), so parallel loads never contend on the meter
tables; the merge (``nem12.warehouse.merge``) is their one writer.
"""

from __future__ import annotations

import logging

import psycopg

from nem12.format import spec

SCHEMA = "nem12"

log = logging.getLogger(__name__)

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
SCHEMA_VERSION = 9

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


def _ledger_summary(readings: str, reads: str | None = None) -> str:
    """The one-row summary view; ``readings`` counts the meter table's readings,
    ``reads`` (from version 6) the NEM13 reads."""
    return f"""
CREATE OR REPLACE VIEW {SCHEMA}.ledger_summary AS
SELECT
    (SELECT coalesce(jsonb_object_agg(status, files), '{{}}'::jsonb)
       FROM (SELECT status, count(*) AS files FROM {SCHEMA}.file_ledger GROUP BY status) s)
        AS files_by_status,
    (SELECT min(first_seen) FROM {SCHEMA}.file_ledger
      WHERE status IN ('registered', 'validated', 'staged')) AS oldest_unprocessed,
    (SELECT max(updated_at) FROM {SCHEMA}.file_ledger
      WHERE status IN ('loaded', 'partial')) AS last_merge,
    ({readings}) AS readings{f", ({reads}) AS reads" if reads else ""};"""


#: Idempotent DDL up to version 4 (one row per interval); ``DDL_V5`` builds on it.
DDL_V4 = f"""
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
    IF (SELECT relkind FROM pg_class WHERE oid = '{SCHEMA}.meter_reading'::regclass) = 'r'
       AND NOT EXISTS (SELECT 1 FROM pg_class c, unnest(c.reloptions) AS o
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
{_ledger_summary(f"SELECT count(*) FROM {SCHEMA}.meter_reading")}
"""


def _column_lines(types: dict[str, str]) -> str:
    """Column definitions of a CREATE TABLE, one per line."""
    return ",\n".join(f"    {column:<28} {kind}" for column, kind in types.items())


#: A day's key, then what each version of the day holds (staged and stored alike).
DAY_KEY = ("nmi", "nmi_suffix", "interval_date")
_DAY_TYPES = {
    "nmi": "text NOT NULL",
    "nmi_suffix": "text NOT NULL",
    "interval_date": "date NOT NULL",
    "interval_length": "smallint NOT NULL",
    "uom": "text NOT NULL",
    "interval_values": "numeric[] NOT NULL",
    "quality_method": "text NOT NULL",
    "reason_code": "text",
    "reason_description": "text",
    "interval_quality": "jsonb",
    "update_datetime": "timestamptz",
    "total": "numeric NOT NULL",
    **dict.fromkeys(spec.QUALITY_COUNT_COLUMNS, "smallint NOT NULL"),
}
DAY_FIELDS = tuple(c for c in _DAY_TYPES if c not in DAY_KEY)
_DAY_COLUMNS = _column_lines(_DAY_TYPES)

#: Version 5: a day per row. The long table of v4, if any, is renamed
#: ``meter_reading_v4`` and converted by ``migrate_v4`` in resumable batches.
DDL_V5 = f"""
DROP VIEW IF EXISTS {SCHEMA}.ledger_summary;
DO $$
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = to_regclass('{SCHEMA}.meter_reading')) = 'r' THEN
        ALTER TABLE {SCHEMA}.meter_reading RENAME TO meter_reading_v4;
        ALTER INDEX IF EXISTS {SCHEMA}.meter_reading_pkey RENAME TO meter_reading_v4_pkey;
    END IF;
END
$$;
DROP TABLE IF EXISTS {SCHEMA}.reading_staging, {SCHEMA}.staged_stream;

-- One row per staged 300 record. The values are
-- stored uncompressed here (compressing them twice costs time for nothing).
CREATE UNLOGGED TABLE IF NOT EXISTS {SCHEMA}.day_staging (
    file_id                      bigint NOT NULL,
    member                       integer NOT NULL,
    line_number                  bigint NOT NULL,
{_DAY_COLUMNS}
);
ALTER TABLE {SCHEMA}.day_staging ALTER COLUMN interval_values SET STORAGE EXTERNAL;
-- A retried load finds its file's rows, the merge each day it ranks.
CREATE INDEX IF NOT EXISTS day_staging_row ON {SCHEMA}.day_staging (file_id, member, line_number);

-- The meter table: one day of one data stream per row, as NEM12 versions it.
-- interval_values: the day's IntervalValues in order, exact, as written;
-- quality_method, reason_code, reason_description: the 300 record's;
-- interval_quality: where a V day's intervals differ from those, its 400
-- ranges as [{{"first_interval", "last_interval", "quality_method",
-- "reason_code", "reason_description"}}] covering every interval;
-- total and the *_intervals counts: the day's sum and intervals per QualityFlag.
CREATE TABLE IF NOT EXISTS {SCHEMA}.meter_day (
{_DAY_COLUMNS},
    header_datetime              timestamptz,
    file_id                      bigint NOT NULL,
    merged_at                    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (nmi, nmi_suffix, interval_date)
);

-- A day's readings: interval number, start minute, value and quality. One
-- definition for the view and the merge's per-reading outcomes; the value
-- without trailing zeros, as the long table of v4 held it. A V day's ranges
-- cover its intervals exactly once (the 400 rules), so each range takes its
-- slice of the values; ranges that do not add up to the day (never written
-- by the parser) are looked up interval by interval.
CREATE OR REPLACE FUNCTION {SCHEMA}.day_readings(
    day_values numeric[], day_length smallint, day_quality text, day_reason_code text,
    day_reason_description text, day_interval_quality jsonb)
RETURNS TABLE (interval_number integer, start_minute integer, value numeric,
               quality_method text, reason_code text, reason_description text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    WITH ranges AS MATERIALIZED (
        SELECT r.* FROM jsonb_to_recordset(day_interval_quality) AS r(
            first_interval integer, last_interval integer, quality_method text,
            reason_code text, reason_description text)
    ), covering AS (
        SELECT coalesce(sum(last_interval - first_interval + 1), 0)
               = coalesce(cardinality(day_values), 0) AS exactly FROM ranges
    )
    SELECT v.i::integer, ((v.i - 1) * day_length)::integer, trim_scale(v.value),
           day_quality, day_reason_code, day_reason_description
    FROM unnest(day_values) WITH ORDINALITY AS v(value, i)
    WHERE day_interval_quality IS NULL AND v.value IS NOT NULL
    UNION ALL
    SELECT (r.first_interval + v.k - 1)::integer,
           ((r.first_interval + v.k - 2) * day_length)::integer, trim_scale(v.value),
           r.quality_method, r.reason_code, r.reason_description
    FROM ranges r
    CROSS JOIN LATERAL unnest(day_values[r.first_interval:r.last_interval])
        WITH ORDINALITY AS v(value, k)
    WHERE (SELECT exactly FROM covering) AND v.value IS NOT NULL
    UNION ALL
    SELECT v.i::integer, ((v.i - 1) * day_length)::integer, trim_scale(v.value),
           coalesce(q.quality_method, day_quality),
           CASE WHEN q.quality_method IS NULL THEN day_reason_code ELSE q.reason_code END,
           CASE WHEN q.quality_method IS NULL THEN day_reason_description
                ELSE q.reason_description END
    FROM unnest(day_values) WITH ORDINALITY AS v(value, i)
    LEFT JOIN LATERAL (
        SELECT r.quality_method, r.reason_code, r.reason_description FROM ranges r
        WHERE v.i BETWEEN r.first_interval AND r.last_interval LIMIT 1
    ) q ON true
    WHERE day_interval_quality IS NOT NULL AND NOT (SELECT exactly FROM covering)
      AND v.value IS NOT NULL
$fn$;

-- Every reading with its day (for queries that bound the day and use the key).
CREATE OR REPLACE VIEW {SCHEMA}.meter_interval AS
SELECT d.nmi, d.nmi_suffix, d.interval_date,
       (d.interval_date::timestamp AT TIME ZONE '{spec.NEM_TIME_ZONE}')
           + r.start_minute * interval '1 minute' AS interval_start,
       d.interval_length, r.value, d.uom, r.quality_method, r.reason_code,
       r.reason_description, d.update_datetime, d.header_datetime, d.file_id, d.merged_at
FROM {SCHEMA}.meter_day d
CROSS JOIN LATERAL {SCHEMA}.day_readings(
    d.interval_values, d.interval_length, d.quality_method, d.reason_code,
    d.reason_description, d.interval_quality) r;

-- The v4 interface: one row per interval, the long table's columns.
CREATE OR REPLACE VIEW {SCHEMA}.meter_reading AS
SELECT nmi, nmi_suffix, interval_start, interval_length, value, uom, quality_method,
       reason_code, reason_description, update_datetime, header_datetime, file_id, merged_at
FROM {SCHEMA}.meter_interval;

-- An NMI's readings in [from, to): bounds the days, so the key does the work.
CREATE OR REPLACE FUNCTION {SCHEMA}.meter_readings(nmi text, from_start timestamptz,
                                                   to_start timestamptz)
RETURNS SETOF {SCHEMA}.meter_reading
LANGUAGE sql STABLE AS $fn$
    SELECT nmi, nmi_suffix, interval_start, interval_length, value, uom, quality_method,
           reason_code, reason_description, update_datetime, header_datetime, file_id, merged_at
    FROM {SCHEMA}.meter_interval m
    WHERE m.nmi = meter_readings.nmi
      AND m.interval_date BETWEEN (from_start AT TIME ZONE '{spec.NEM_TIME_ZONE}')::date
                              AND (to_start AT TIME ZONE '{spec.NEM_TIME_ZONE}')::date
      AND m.interval_start >= from_start AND m.interval_start < to_start
$fn$;

-- Where a resumable conversion of the long table stands (gone once done).
CREATE TABLE IF NOT EXISTS {SCHEMA}.migration_v5 (
    done_through_nmi  text NOT NULL,
    at                timestamptz NOT NULL DEFAULT now()
);

{
    _ledger_summary(
        f"SELECT coalesce(sum({spec.MINUTES_PER_DAY} / interval_length), 0)::bigint "
        f"FROM {SCHEMA}.meter_day"
    )
}
"""

#: A NEM13 read's key, then what each version of the read holds (staged, stored and
#: kept alike): one 250 record with its 550's fields, in ``spec.READ_SCHEMA``'s order.
READ_KEY = ("nmi", "nmi_suffix", "current_register_read_datetime")
_SQL_TYPES = {
    "String": "text",
    "Decimal": "numeric",
    "Datetime": "timestamptz",
    "Date": "date",
    "Int64": "bigint",
}
_READ_REQUIRED = {
    "nmi",
    "nmi_suffix",
    "direction_indicator",
    "previous_register_read",
    "previous_register_read_text",
    "previous_register_read_datetime",
    "previous_quality_method",
    "current_register_read",
    "current_register_read_text",
    "current_register_read_datetime",
    "current_quality_method",
    "quantity",
    "uom",
}
_READ_TYPES = {
    column: _SQL_TYPES[type(dtype).__name__] + (" NOT NULL" if column in _READ_REQUIRED else "")
    for column, dtype in spec.READ_SCHEMA.items()
    if column != "line_number"
}
READ_FIELDS = tuple(c for c in _READ_TYPES if c not in READ_KEY)
#: What people are shown of a read (the review view, history): its 250's main fields.
READ_SHOWN = (
    "nmi",
    "nmi_suffix",
    "register_id",
    "meter_serial_number",
    "direction_indicator",
    "previous_register_read_text",
    "previous_register_read_datetime",
    "current_register_read_text",
    "current_register_read_datetime",
    "current_quality_method",
    "quantity",
    "uom",
)
_READ_COLUMNS = ",\n".join(f"    {column:<32} {kind}" for column, kind in _READ_TYPES.items())

#: Version 6: NEM13 reads. ``meter_read`` holds the current reads, ``read_version``
#: every version ever merged (the merge decides by all of them, see ``merge``).
DDL_V6 = f"""
-- A re-sent file is told by its ETag and size before it is read (ledger.archived_twin).
CREATE INDEX IF NOT EXISTS file_ledger_etag ON {SCHEMA}.file_ledger (etag);
CREATE INDEX IF NOT EXISTS file_ledger_moved_to ON {SCHEMA}.file_ledger (moved_to);

-- One row per staged 250 record (with its 550), keyed by its file.
CREATE UNLOGGED TABLE IF NOT EXISTS {SCHEMA}.read_staging (
    file_id                          bigint NOT NULL,
    member                           integer NOT NULL,
    line_number                      bigint NOT NULL,
{_READ_COLUMNS}
);
CREATE INDEX IF NOT EXISTS read_staging_row
    ON {SCHEMA}.read_staging (file_id, member, line_number);

-- Every version of every read the merge took in, current or not: a read
-- arriving late is judged against all of them, so the outcome does not
-- depend on the order files arrive in.
CREATE TABLE IF NOT EXISTS {SCHEMA}.read_version (
    file_id                          bigint NOT NULL,
    member                           integer NOT NULL,
    line_number                      bigint NOT NULL,
{_READ_COLUMNS},
    header_datetime                  timestamptz,
    merged_at                        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (file_id, member, line_number)
);
CREATE INDEX IF NOT EXISTS read_version_stream
    ON {SCHEMA}.read_version (nmi, nmi_suffix, current_register_read_datetime);

-- The accumulation meter table: the current reads of each data stream, whose
-- periods (previous to current read datetime) do not overlap. A read is
-- current when no newer version (UpdateDateTime, header DateTime, arrival)
-- of the stream overlaps its period: a re-sent read replaces the one at its
-- CurrentRegisterReadDateTime, and an actual read replaces the estimate whose
-- period it overlaps, whatever their datetimes.
CREATE TABLE IF NOT EXISTS {SCHEMA}.meter_read (
{_READ_COLUMNS},
    header_datetime                  timestamptz,
    file_id                          bigint NOT NULL,
    merged_at                        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY ({", ".join(READ_KEY)})
);

-- Each current read's quantity spread over the NEM days of its period, in
-- proportion to the time in each day (as nem-reader's split_days does), for
-- joining with interval data. Exact to numeric division's 16+ digits.
CREATE OR REPLACE VIEW {SCHEMA}.meter_read_daily AS
WITH period AS (
    SELECT r.*,
           previous_register_read_datetime AT TIME ZONE '{spec.NEM_TIME_ZONE}' AS read_from,
           current_register_read_datetime AT TIME ZONE '{spec.NEM_TIME_ZONE}' AS read_to
    FROM {SCHEMA}.meter_read r
)
SELECT p.nmi, p.nmi_suffix, p.register_id, p.meter_serial_number, p.direction_indicator,
       d.day::date AS read_date, p.uom,
       p.quantity
           * extract(epoch FROM least(d.day + interval '1 day', p.read_to)
                                 - greatest(d.day, p.read_from))
           / extract(epoch FROM p.read_to - p.read_from) AS quantity,
       p.current_quality_method AS quality_method, p.current_register_read_datetime,
       p.file_id
FROM period p
CROSS JOIN LATERAL generate_series(
    date_trunc('day', p.read_from), p.read_to - interval '1 microsecond', interval '1 day'
) AS d(day)
WHERE p.read_to > p.read_from;

{
    _ledger_summary(
        f"SELECT coalesce(sum({spec.MINUTES_PER_DAY} / interval_length), 0)::bigint "
        f"FROM {SCHEMA}.meter_day",
        f"SELECT count(*) FROM {SCHEMA}.meter_read",
    )
}
"""


#: Version 7: every day version a merge replaces is kept, with when and by which
#: file, so that what was held for a day at any time is one query (``history``).
DDL_V7 = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.meter_day_version (
{_DAY_COLUMNS},
    header_datetime              timestamptz,
    file_id                      bigint NOT NULL,
    merged_at                    timestamptz NOT NULL,
    replaced_at                  timestamptz NOT NULL,
    replaced_by                  bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS meter_day_version_day
    ON {SCHEMA}.meter_day_version (nmi, nmi_suffix, interval_date);
CREATE INDEX IF NOT EXISTS meter_day_version_replaced
    ON {SCHEMA}.meter_day_version (replaced_at);
"""


#: Who reads ``day_change`` in order, each from its own cursor.
CHANGE_CONSUMERS = ("day_rollup", "alert")
#: Alert severities, least to most severe.
SEVERITIES = ("medium", "high", "critical")

#: The rollup's intervals per quality class, by QualityFlag letter; N (null data:
#: no reading) is ``missing_intervals``.
ROLLUP_CLASS_COLUMNS = {
    letter: "missing_intervals" if letter == "N" else f"{name}_intervals"
    for letter, name in spec.QUALITY_CLASSES.items()
}
ROLLUP_QUALITY_COLUMNS = tuple(c for c in ROLLUP_CLASS_COLUMNS.values() if c != "missing_intervals")
_ROLLUP_TYPES = {
    "nmi": "text NOT NULL",
    "nmi_suffix": "text NOT NULL",
    "interval_date": "date NOT NULL",
    "uom": "text NOT NULL",
    "interval_length": "smallint NOT NULL",
    "intervals": "smallint NOT NULL",
    "total": "numeric NOT NULL",
    **dict.fromkeys(ROLLUP_QUALITY_COLUMNS, "smallint NOT NULL"),
    "missing_intervals": "smallint NOT NULL",
    "file_id": "bigint NOT NULL",
}
#: A rollup row's columns, in table order (``refreshed_at`` follows).
ROLLUP_COLUMNS = tuple(_ROLLUP_TYPES)
_ROLLUP_DDL_COLUMNS = _column_lines(_ROLLUP_TYPES)

#: Version 8: downstream of the meter table. The merge notes every day it
#: changes in ``day_change``; the nem12_daily DAG reads the changes from its
#: cursor, refreshes those days of ``day_rollup`` and raises ``alert`` rows.
DDL_V8 = f"""
-- One row per day a merge changed (a newer version won), in merge order:
-- merges run one at a time, so change_id grows in commit order.
CREATE TABLE IF NOT EXISTS {SCHEMA}.day_change (
    change_id      bigserial PRIMARY KEY,
    nmi            text NOT NULL,
    nmi_suffix     text NOT NULL,
    interval_date  date NOT NULL,
    file_id        bigint NOT NULL,
    changed_at     timestamptz NOT NULL DEFAULT now()
);
-- How far each consumer of day_change has read (the changes up to change_id are done).
CREATE TABLE IF NOT EXISTS {SCHEMA}.change_cursor (
    consumer       text PRIMARY KEY,
    change_id      bigint NOT NULL DEFAULT 0,
    moved_at       timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {SCHEMA}.change_cursor (consumer)
SELECT unnest(ARRAY{list(CHANGE_CONSUMERS)}) ON CONFLICT DO NOTHING;

-- The daily rollup: a stream's day as the meter table holds it, summed.
-- intervals: 1440 / interval_length; missing_intervals: those the MDP had
-- no reading for (QualityFlag N, null data); file_id: the version's file.
CREATE TABLE IF NOT EXISTS {SCHEMA}.day_rollup (
{_ROLLUP_DDL_COLUMNS},
    refreshed_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (nmi, nmi_suffix, interval_date)
);

-- Alerts: one per rule, stream and day (a re-run finds it and adds nothing).
-- rule: the rule's name in the alert config; observed and threshold: the
-- figures it compared; notified_at: when the notifiers took it (null: not yet).
CREATE TABLE IF NOT EXISTS {SCHEMA}.alert (
    alert_id       bigserial PRIMARY KEY,
    rule           text NOT NULL,
    nmi            text NOT NULL,
    nmi_suffix     text NOT NULL,
    interval_date  date NOT NULL,
    severity       text NOT NULL CHECK (severity IN ({", ".join(f"'{s}'" for s in SEVERITIES)})),
    observed       numeric,
    threshold      numeric,
    message        text NOT NULL,
    config_version text NOT NULL,
    raised_at      timestamptz NOT NULL DEFAULT now(),
    notified_at    timestamptz,
    UNIQUE (rule, nmi, nmi_suffix, interval_date)
);
CREATE INDEX IF NOT EXISTS alert_unsent ON {SCHEMA}.alert (alert_id) WHERE notified_at IS NULL;
CREATE INDEX IF NOT EXISTS alert_day ON {SCHEMA}.alert (interval_date);

-- Notifications sent (a retried task sends each once): kind run or file,
-- subject its run id or file id, channel the notifier's name in the config.
CREATE TABLE IF NOT EXISTS {SCHEMA}.notification (
    kind           text NOT NULL,
    subject        text NOT NULL,
    channel        text NOT NULL,
    sent_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, subject, channel)
);
"""

#: Version 9: small registered versions' bytes held in the database, not under
#: the held prefix in S3 (two S3 requests fewer per small file).
DDL_V9 = f"""
-- A registered version's bytes while the pipeline works on it (NEM12_HOLD_IN_DATABASE_BYTES);
-- the row goes when the version is archived or quarantined.
CREATE TABLE IF NOT EXISTS {SCHEMA}.held_content (
    file_id        bigint PRIMARY KEY REFERENCES {SCHEMA}.file_ledger (file_id) ON DELETE CASCADE,
    content        bytea NOT NULL
);
"""

#: A database upgraded with days already merged (after any v4 conversion): every
#: stored day counts as changed once, so the rollup takes in the history; the
#: alerts start after it (a year of history raised at once would bury the news).
_SEED_CHANGES = f"""
INSERT INTO {SCHEMA}.day_change (nmi, nmi_suffix, interval_date, file_id)
SELECT nmi, nmi_suffix, interval_date, file_id FROM {SCHEMA}.meter_day
WHERE NOT EXISTS (SELECT 1 FROM {SCHEMA}.day_change)
  AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.day_rollup)
ORDER BY nmi, nmi_suffix, interval_date;
UPDATE {SCHEMA}.change_cursor
SET change_id = (SELECT coalesce(max(change_id), 0) FROM {SCHEMA}.day_change), moved_at = now()
WHERE consumer = 'alert' AND change_id = 0
"""

#: Readings per batch of the v4 conversion (whole NMIs, so a batch may hold more).
MIGRATION_BATCH_READINGS = 500_000

_VERSION_ORDER = (
    "coalesce(update_datetime, '-infinity') DESC, coalesce(header_datetime, '-infinity') DESC, "
    "file_id DESC"
)

#: The long rows of NMIs in (after, through] as day rows. A day's newest version
#: wins (its rows share it); rows of an older version (a day re-sent at another
#: interval length left them) are dropped. A day whose intervals all share one
#: quality keeps it as the day's; any other becomes V with its runs as ranges.
_CONVERT_V4 = f"""
CREATE TEMP TABLE converted ON COMMIT DROP AS
WITH long AS (
    SELECT r.*, (r.interval_start AT TIME ZONE '{spec.NEM_TIME_ZONE}')::date AS interval_date,
           rank() OVER (
               PARTITION BY r.nmi, r.nmi_suffix,
                            (r.interval_start AT TIME ZONE '{spec.NEM_TIME_ZONE}')::date
               ORDER BY {_VERSION_ORDER}) AS version_rank
    FROM {SCHEMA}.meter_reading_v4 r
    WHERE r.nmi > %(after)s AND r.nmi <= %(through)s
), current AS (
    SELECT l.*,
           (extract(epoch FROM l.interval_start - (l.interval_date::timestamp
                AT TIME ZONE '{spec.NEM_TIME_ZONE}')) / 60 / l.interval_length)::integer + 1
               AS interval_number
    FROM long l WHERE l.version_rank = 1
), runs AS (
    SELECT c.*,
           c.interval_number - row_number() OVER (
               PARTITION BY c.nmi, c.nmi_suffix, c.interval_date, c.quality_method,
                            c.reason_code, c.reason_description
               ORDER BY c.interval_number) AS run
    FROM current c
), ranges AS (
    SELECT nmi, nmi_suffix, interval_date,
           jsonb_agg(jsonb_build_object(
               'first_interval', first_interval, 'last_interval', last_interval,
               'quality_method', quality_method, 'reason_code', reason_code,
               'reason_description', reason_description) ORDER BY first_interval) AS ranges,
           count(*) AS qualities
    FROM (SELECT nmi, nmi_suffix, interval_date, quality_method, reason_code,
                 reason_description, min(interval_number) AS first_interval,
                 max(interval_number) AS last_interval
          FROM runs GROUP BY nmi, nmi_suffix, interval_date, quality_method, reason_code,
                             reason_description, run) r
    GROUP BY nmi, nmi_suffix, interval_date
), days AS (
    SELECT nmi, nmi_suffix, interval_date, min(interval_length) AS interval_length,
           max(interval_length) AS longest, min(uom) AS uom,
           array_agg(value ORDER BY interval_number) AS interval_values,
           count(*) AS intervals, max(interval_number) AS last_number,
           min(quality_method) AS quality_method, min(reason_code) AS reason_code,
           min(reason_description) AS reason_description,
           min(update_datetime) AS update_datetime, min(header_datetime) AS header_datetime,
           min(file_id) AS file_id, max(merged_at) AS merged_at, sum(value) AS total,
           {
    ", ".join(
        f"count(*) FILTER (WHERE left(quality_method, 1) = '{letter}') AS {column}"
        for letter, column in zip(spec.QUALITY_CLASSES, spec.QUALITY_COUNT_COLUMNS, strict=True)
    )
}
    FROM current GROUP BY nmi, nmi_suffix, interval_date
)
SELECT d.nmi, d.nmi_suffix, d.interval_date, d.interval_length, d.uom, d.interval_values,
       CASE WHEN r.qualities = 1 THEN d.quality_method ELSE 'V' END AS quality_method,
       CASE WHEN r.qualities = 1 THEN d.reason_code END AS reason_code,
       CASE WHEN r.qualities = 1 THEN d.reason_description END AS reason_description,
       CASE WHEN r.qualities > 1 THEN r.ranges END AS interval_quality,
       d.update_datetime, d.header_datetime, d.file_id, d.merged_at, d.total,
       {", ".join(f"d.{column}" for column in spec.QUALITY_COUNT_COLUMNS)},
       d.intervals <> {spec.MINUTES_PER_DAY} / d.interval_length
           OR d.last_number <> d.intervals OR d.longest <> d.interval_length AS incomplete
FROM days d JOIN ranges r USING (nmi, nmi_suffix, interval_date)
"""

_DAY_COLUMNS = (
    "nmi, nmi_suffix, interval_date, interval_length, uom, interval_values, quality_method, "
    "reason_code, reason_description, interval_quality, update_datetime, header_datetime, "
    f"file_id, merged_at, total, {', '.join(spec.QUALITY_COUNT_COLUMNS)}"
)


#: The way back to version 4 (run as the owner, then deploy a v4 release): the
#: view's rows become the long table again, the day table goes, and so do the
#: NEM13 reads (v4 rejected NEM13 files; export ``meter_read`` first to keep them).
DOWNGRADE_TO_V4 = f"""
CREATE TABLE {SCHEMA}.meter_reading_long AS SELECT * FROM {SCHEMA}.meter_reading;
ALTER TABLE {SCHEMA}.meter_reading_long ADD PRIMARY KEY (nmi, nmi_suffix, interval_start);
ALTER TABLE {SCHEMA}.meter_reading_long ALTER COLUMN merged_at SET DEFAULT now();
DROP FUNCTION {SCHEMA}.meter_readings(text, timestamptz, timestamptz);
DROP VIEW {SCHEMA}.ledger_summary, {SCHEMA}.meter_reading;
DROP VIEW IF EXISTS {SCHEMA}.meter_read_daily;
DROP TABLE IF EXISTS {SCHEMA}.meter_read, {SCHEMA}.read_version, {SCHEMA}.read_staging;
DROP TABLE IF EXISTS {SCHEMA}.meter_day_version;
DROP TABLE IF EXISTS {SCHEMA}.day_change, {SCHEMA}.change_cursor, {SCHEMA}.day_rollup;
DROP TABLE IF EXISTS {SCHEMA}.alert, {SCHEMA}.notification;
DROP TABLE IF EXISTS {SCHEMA}.held_content;
DROP VIEW {SCHEMA}.meter_interval;
DROP FUNCTION {SCHEMA}.day_readings(numeric[], smallint, text, text, text, jsonb);
DROP TABLE {SCHEMA}.meter_day, {SCHEMA}.day_staging;
DROP TABLE IF EXISTS {SCHEMA}.migration_v5;
ALTER TABLE {SCHEMA}.meter_reading_long RENAME TO meter_reading;
ALTER INDEX {SCHEMA}.meter_reading_long_pkey RENAME TO meter_reading_pkey;
-- below 4, so that the v4 release's first task applies its DDL (staging, summary)
DELETE FROM {SCHEMA}.schema_version WHERE version >= 4;
"""


class MigrationError(RuntimeError):
    """The long table holds a day the day table cannot represent."""


def migrate_v4(conn: psycopg.Connection, batch_readings: int = MIGRATION_BATCH_READINGS) -> int:
    """Convert ``meter_reading_v4`` into ``meter_day``, whole NMIs per transaction.

    Where it stands is committed with each batch (``migration_v5``): an
    interrupted conversion resumes where it stopped. Returns the days written.
    The long table is dropped once every NMI is converted.
    """
    written = 0
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('nem12 schema'))")
            if (
                conn.execute(f"SELECT to_regclass('{SCHEMA}.meter_reading_v4')").fetchone()[0]
                is None
            ):
                return written
            done = (
                conn.execute(f"SELECT max(done_through_nmi) FROM {SCHEMA}.migration_v5").fetchone()[
                    0
                ]
                or ""
            )
            through = conn.execute(
                f"SELECT coalesce((SELECT nmi FROM {SCHEMA}.meter_reading_v4 WHERE nmi > %(after)s"
                " ORDER BY nmi OFFSET %(n)s LIMIT 1),"
                f" (SELECT max(nmi) FROM {SCHEMA}.meter_reading_v4 WHERE nmi > %(after)s))",
                {"after": done, "n": batch_readings},
            ).fetchone()[0]
            if through is None:
                conn.execute(f"DROP TABLE {SCHEMA}.meter_reading_v4, {SCHEMA}.migration_v5")
                return written
            conn.execute(_CONVERT_V4, {"after": done, "through": through})
            broken = conn.execute(
                "SELECT count(*), min(nmi || ' ' || nmi_suffix || ' ' || interval_date)"
                " FROM converted WHERE incomplete"
            ).fetchone()
            if broken[0]:
                raise MigrationError(
                    f"{SCHEMA}.meter_reading_v4: {broken[0]} days are not whole days of one"
                    f" interval length, the first {broken[1]}; nothing of this batch was converted"
                )
            rows = conn.execute(
                f"INSERT INTO {SCHEMA}.meter_day ({_DAY_COLUMNS})"
                f" SELECT {_DAY_COLUMNS} FROM converted RETURNING 1"
            ).fetchall()
            conn.execute("DROP TABLE converted")
            conn.execute(
                f"INSERT INTO {SCHEMA}.migration_v5 (done_through_nmi) VALUES (%s)", (through,)
            )
            written += len(rows)
            log.info("schema v5: %d days converted, NMIs through %s", written, through)


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
        # each version's DDL makes the summary anew, with the columns of its time
        conn.execute(f"DROP VIEW IF EXISTS {SCHEMA}.ledger_summary")
        conn.execute(DDL_V4)
        conn.execute(DDL_V5)
        conn.execute(DDL_V6)
        conn.execute(DDL_V7)
        conn.execute(DDL_V8)
        conn.execute(DDL_V9)
    migrate_v4(conn)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('nem12 schema'))")
        if found is None or found < 8:
            conn.execute(_SEED_CHANGES)
        conn.execute(
            f"INSERT INTO {SCHEMA}.schema_version (version) VALUES (%s) ON CONFLICT DO NOTHING",
            (SCHEMA_VERSION,),
        )
