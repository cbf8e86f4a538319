"""The file ledger: every write and read of ``file_ledger``, ``finding`` and ``file_run``.

A ledger row is one object version; its status moves as ``FILE_STATUSES``
lists. Steps hand on ledger ids, never data.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import NamedTuple

import psycopg
from psycopg.types.json import Jsonb

from nem12.format.parsing import ParseResult
from nem12.warehouse.schema import FINISHED, FINISHED_FOR_GOOD, SCHEMA, UNFINISHED

NEM_TZ = timezone(timedelta(hours=10))


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


def register_files(
    conn: psycopg.Connection, versions: list[tuple[str, str, str, int]]
) -> list[LedgerRow]:
    """``register_file`` for many (bucket, key, etag, size) in one statement, ids
    given in their order; the rows in the same order."""
    if not versions:
        return []
    buckets, keys, etags, sizes = (list(column) for column in zip(*versions, strict=True))
    rows = conn.execute(
        f"""
        INSERT INTO {SCHEMA}.file_ledger (bucket, key, etag, size_bytes)
        SELECT bucket, key, etag, size_bytes
        FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[])
             WITH ORDINALITY AS v(bucket, key, etag, size_bytes, place)
        ORDER BY place
        ON CONFLICT (bucket, key, etag) DO UPDATE SET updated_at = now()
        RETURNING bucket, key, etag, file_id, status, sha256, version_id
        """,
        (buckets, keys, etags, sizes),
    ).fetchall()
    found = {(b, k, e): LedgerRow(int(i), s, h, v) for b, k, e, i, s, h, v in rows}
    return [found[(bucket, key, etag)] for bucket, key, etag, _ in versions]


def taken_contents(
    conn: psycopg.Connection, held: list[tuple[str, int]]
) -> dict[int, tuple[int, str]]:
    """``taken_content`` for many (sha256, file id): file id -> the earlier (id, key)."""
    if not held:
        return {}
    rows = conn.execute(
        f"""
        SELECT h.file_id, t.file_id, t.key
        FROM unnest(%s::text[], %s::bigint[]) AS h(sha256, file_id)
        CROSS JOIN LATERAL (
            SELECT file_id, key FROM {SCHEMA}.file_ledger l
            WHERE l.sha256 = h.sha256 AND l.file_id < h.file_id
              AND l.status NOT IN ('rejected', 'duplicate', 'replaced')
            ORDER BY l.file_id LIMIT 1
        ) AS t
        """,
        ([sha for sha, _ in held], [file_id for _, file_id in held]),
    ).fetchall()
    return {int(file_id): (int(earlier), key) for file_id, earlier, key in rows}


#: Earlier than every file: what ``taken_content`` compares a file not registered with.
_ANY_FILE = (1 << 63) - 1


def taken_content(
    conn: psycopg.Connection, sha256: str, file_id: int | None = None
) -> tuple[int, str] | None:
    """The earlier file (id, key) whose content this is, unless it was rejected or
    replaced; earlier than ``file_id``, or than any (None: a file not registered)."""
    earlier_than = _ANY_FILE if file_id is None else file_id
    return taken_contents(conn, [(sha256, earlier_than)]).get(earlier_than)


def archived_twins(
    conn: psycopg.Connection, versions: list[tuple[str, str, int, int]]
) -> dict[int, tuple[int, str, str, str]]:
    """Earlier files of the same ETag and size as these (bucket, etag, size, file id),
    loaded and archived: file id -> (id, key, sha256, moved_to). S3's ETag is the
    MD5 of the bytes (of its parts' MD5s for a multipart upload), so with the size
    it tells a re-sent file without reading it."""
    if not versions:
        return {}
    rows = conn.execute(
        f"""
        SELECT v.file_id, t.file_id, t.key, t.sha256, t.moved_to
        FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[])
             AS v(bucket, etag, size_bytes, file_id)
        CROSS JOIN LATERAL (
            SELECT file_id, key, sha256, moved_to FROM {SCHEMA}.file_ledger l
            WHERE l.bucket = v.bucket AND l.etag = v.etag AND l.size_bytes = v.size_bytes
              AND l.file_id < v.file_id AND l.status IN ('loaded', 'partial')
              AND l.sha256 IS NOT NULL AND l.moved_to IS NOT NULL
            ORDER BY l.file_id LIMIT 1
        ) AS t
        """,
        tuple(list(column) for column in zip(*versions, strict=True)),
    ).fetchall()
    return {int(file_id): (int(i), key, sha, moved) for file_id, i, key, sha, moved in rows}


def record_version(
    conn: psycopg.Connection, file_id: int, sha256: str, version_id: str | None, status: str
) -> None:
    """The registered version's SHA-256 and VersionId, once its bytes are held."""
    record_versions(conn, [(file_id, sha256, version_id, status)])


def record_versions(
    conn: psycopg.Connection, versions: list[tuple[int, str, str | None, str]]
) -> None:
    """``record_version`` for many (file id, sha256, version id, status)."""
    with conn.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {SCHEMA}.file_ledger SET sha256 = %s, version_id = %s, status = %s, "
            "moved_to = NULL, updated_at = now() WHERE file_id = %s",
            [
                (sha256, version_id, status, file_id)
                for file_id, sha256, version_id, status in versions
            ],
        )


def hold_contents(conn: psycopg.Connection, held: list[tuple[int, bytes]]) -> None:
    """Hold registered versions' bytes in the database (small ones): (file id, bytes)."""
    with conn.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {SCHEMA}.held_content (file_id, content) VALUES (%s, %s) "
            "ON CONFLICT (file_id) DO UPDATE SET content = EXCLUDED.content",
            held,
        )


def held_contents(conn: psycopg.Connection, file_ids: list[int]) -> dict[int, bytes]:
    """The bytes held in the database of those of ``file_ids`` that have them."""
    rows = conn.execute(
        f"SELECT file_id, content FROM {SCHEMA}.held_content WHERE file_id = ANY(%s)",
        (file_ids,),
    ).fetchall()
    return {int(file_id): bytes(content) for file_id, content in rows}


def drop_held(conn: psycopg.Connection, file_ids: list[int]) -> None:
    """Done with these versions: their bytes held in the database go."""
    conn.execute(f"DELETE FROM {SCHEMA}.held_content WHERE file_id = ANY(%s)", (file_ids,))


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


def set_moved_to_many(conn: psycopg.Connection, moved: list[tuple[int, str]]) -> None:
    """Where each file's bytes lie now, (file id, key) pairs, in one statement."""
    if moved:
        conn.execute(
            f"UPDATE {SCHEMA}.file_ledger l SET moved_to = m.key "
            "FROM unnest(%s::bigint[], %s::text[]) AS m(file_id, key) WHERE l.file_id = m.file_id",
            ([file_id for file_id, _ in moved], [key for _, key in moved]),
        )


def registered_versions(conn: psycopg.Connection, file_ids: list[int]) -> list[tuple]:
    """(file_id, key, size, status, etag, sha256, version_id) of ``file_ids``, by id."""
    return conn.execute(
        f"SELECT file_id, key, size_bytes, status, etag, sha256, version_id "
        f"FROM {SCHEMA}.file_ledger WHERE file_id = ANY(%s) ORDER BY file_id",
        (file_ids,),
    ).fetchall()


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
    return file_id in mark_staged_many(conn, [file_id])


def mark_staged_many(conn: psycopg.Connection, file_ids: list[int]) -> set[int]:
    """``mark_staged`` for many files in one statement: the ids now staged."""
    rows = conn.execute(
        f"UPDATE {SCHEMA}.file_ledger SET status = 'staged', updated_at = now() "
        "WHERE file_id = ANY(%s) AND status <> ALL(%s) RETURNING file_id",
        (file_ids, list(FINISHED)),
    ).fetchall()
    return {int(file_id) for (file_id,) in rows}


def set_report_location(conn: psycopg.Connection, file_ids: list[int], location: str) -> None:
    conn.execute(
        f"UPDATE {SCHEMA}.file_ledger SET report_location = %s WHERE file_id = ANY(%s)",
        (location, file_ids),
    )


def _text(value: str | None) -> str | None:
    """Text PostgreSQL can store: a finding may quote a NUL byte of a binary file."""
    return value.replace("\x00", "\\x00") if value else value


def _member(report: ParseResult) -> dict[str, object]:
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


#: One parsed object as ``record_parses`` keeps it: file id, each member's report,
#: the object's quality, and the text of the records its findings name.
Parsed = tuple[int, list[ParseResult], str, dict[tuple[str, int], str]]


def record_parse(
    conn: psycopg.Connection,
    file_id: int,
    reports: list[ParseResult],
    quality: str,
    texts: dict[tuple[str, int], str] | None = None,
) -> None:
    """Keep what parsing found of one object (see ``record_parses``)."""
    record_parses(conn, [(file_id, reports, quality, texts or {})])


def record_parses(conn: psycopg.Connection, parsed: list[Parsed]) -> None:
    """Keep what parsing found, for many objects in one transaction: header DateTime
    (NEM time), quality and findings, each with the text of its record ((member,
    line) -> text).

    An object may hold several MDFF files (zip members); the first member's
    header DateTime stands for the object in version ordering.
    """
    if not parsed:
        return
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(
            f"""
            UPDATE {SCHEMA}.file_ledger
            SET header_datetime = %s, quality = %s, status = %s, readings = %s,
                from_participant = %s, to_participant = %s, members = %s, updated_at = now()
            WHERE file_id = %s
            """,
            [_parse_outcome(file_id, reports, quality) for file_id, reports, quality, _ in parsed],
        )
        cursor.execute(
            f"DELETE FROM {SCHEMA}.finding WHERE file_id = ANY(%s)",
            ([file_id for file_id, *_ in parsed],),
        )
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
                    _text(texts.get((f.file, f.line or 0))),
                )
                for file_id, reports, _, texts in parsed
                for r in reports
                for f in r.findings
            ],
        )


def _parse_outcome(file_id: int, reports: list[ParseResult], quality: str) -> tuple:
    """The ledger columns ``record_parses`` sets for one object, in its UPDATE's order."""
    header = next((r.header.datetime for r in reports if r.header.datetime), None)
    sender = next((r.header.from_participant for r in reports if r.header.from_participant), None)
    recipient = next((r.header.to_participant for r in reports if r.header.to_participant), None)
    return (
        header.replace(tzinfo=NEM_TZ) if header else None,
        quality,
        "rejected" if quality == "rejected" else "validated",
        sum(r.readings for r in reports),
        _text(sender),
        _text(recipient),
        Jsonb([_member(r) for r in reports]),
        file_id,
    )


def finished_versions(conn: psycopg.Connection, bucket: str, keys: list[str]) -> set[tuple]:
    """(key, etag) of the versions under ``keys`` the pipeline finished with for good."""
    return set(
        conn.execute(
            f"SELECT key, etag FROM {SCHEMA}.file_ledger "
            "WHERE bucket = %s AND key = ANY(%s) AND status = ANY(%s)",
            (bucket, keys, list(FINISHED_FOR_GOOD)),
        ).fetchall()
    )


def keys_of(conn: psycopg.Connection, file_ids: list[int]) -> list[tuple[int, str]]:
    """(file_id, key) of ``file_ids``, by id."""
    return conn.execute(
        f"SELECT file_id, key FROM {SCHEMA}.file_ledger WHERE file_id = ANY(%s) ORDER BY file_id",
        (file_ids,),
    ).fetchall()


def record_merged(conn: psycopg.Connection, counts: dict[int, dict[str, int]]) -> dict[int, str]:
    """Merged files' outcome counts (file id -> counts), in one statement; each file
    ends loaded, or partial if blocks were rejected: file id -> status.

    Runs inside the merge's transaction; a file whose row is gone is left out.
    """
    ids = list(counts)
    column = {
        o: [counts[f][o] for f in ids] for o in ("inserted", "updated", "unchanged", "superseded")
    }
    ended = conn.execute(
        f"""
        UPDATE {SCHEMA}.file_ledger l
        SET status = CASE WHEN l.quality = 'partial' THEN 'partial' ELSE 'loaded' END,
            readings = c.inserted + c.updated + c.unchanged + c.superseded,
            inserted = c.inserted, updated = c.updated, unchanged = c.unchanged,
            superseded = c.superseded, updated_at = now()
        FROM unnest(%(ids)s::bigint[], %(inserted)s::bigint[], %(updated)s::bigint[],
                    %(unchanged)s::bigint[], %(superseded)s::bigint[])
             AS c(file_id, inserted, updated, unchanged, superseded)
        WHERE l.file_id = c.file_id
        RETURNING l.file_id, l.status
        """,
        {"ids": ids, **column},
    ).fetchall()
    return dict(ended)
