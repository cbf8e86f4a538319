"""What the file ledger says at a glance, for ``nem12 status`` and monitoring.

Reads ``nem12.ledger_summary`` and ``nem12.file_ledger`` only. The last merge
is the newest ``updated_at`` of a loaded or partial file: a merge updates all
its files in one transaction, so they share that ``now()`` and their counts
add up to the merge's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from nem12.warehouse.schema import FILE_STATUSES, SCHEMA, UNFINISHED


class LedgerUnavailable(Exception):
    """The database cannot be reached or holds no nem12 schema."""


@dataclass(frozen=True)
class UnprocessedFile:
    """The file waiting longest for the pipeline to finish with it."""

    key: str
    status: str
    first_seen: str
    age_seconds: int


@dataclass(frozen=True)
class LastMerge:
    """When the newest merge committed and what it did to meter_reading."""

    at: str
    files: int
    inserted: int
    updated: int
    unchanged: int
    superseded: int


@dataclass(frozen=True)
class LedgerStatus:
    """Files by status, the oldest unprocessed file and the last merge, as of ``checked_at``."""

    checked_at: str
    files_by_status: dict[str, int]
    files: int
    oldest_unprocessed: UnprocessedFile | None
    last_merge: LastMerge | None
    readings: int
    reads: int  # NEM13

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def read_status(conn: psycopg.Connection) -> LedgerStatus:
    """The ledger's summary now; LedgerUnavailable if the schema is not there."""
    found = conn.execute(f"SELECT to_regclass('{SCHEMA}.ledger_summary')").fetchone()
    if not found or found[0] is None:
        raise LedgerUnavailable(f"no {SCHEMA}.ledger_summary in this database (schema not applied)")
    row = conn.execute(
        f"SELECT now(), files_by_status, last_merge, readings, reads FROM {SCHEMA}.ledger_summary"
    ).fetchone()
    assert row is not None
    checked_at, by_status, last_merge_at, readings, reads = row
    files_by_status = {status: 0 for status in FILE_STATUSES}
    files_by_status.update({str(k): int(v) for k, v in sorted(by_status.items())})

    oldest = conn.execute(
        f"""
        SELECT key, status, first_seen, floor(extract(epoch FROM now() - first_seen))::bigint
        FROM {SCHEMA}.file_ledger WHERE status = ANY(%s)
        ORDER BY first_seen, file_id LIMIT 1
        """,
        (list(UNFINISHED),),
    ).fetchone()
    last_merge = None
    if last_merge_at is not None:
        merged = conn.execute(
            f"""
            SELECT count(*), coalesce(sum(inserted), 0), coalesce(sum(updated), 0),
                   coalesce(sum(unchanged), 0), coalesce(sum(superseded), 0)
            FROM {SCHEMA}.file_ledger
            WHERE status IN ('loaded', 'partial') AND updated_at = %s
            """,
            (last_merge_at,),
        ).fetchone()
        assert merged is not None
        last_merge = LastMerge(_utc(last_merge_at), *(int(n) for n in merged))
    return LedgerStatus(
        checked_at=_utc(checked_at),
        files_by_status=files_by_status,
        files=sum(files_by_status.values()),
        oldest_unprocessed=(
            UnprocessedFile(oldest[0], oldest[1], _utc(oldest[2]), int(oldest[3]))
            if oldest
            else None
        ),
        last_merge=last_merge,
        readings=int(readings),
        reads=int(reads),
    )


def fetch_status(dsn: str, connect_timeout: int = 10) -> LedgerStatus:
    """Read the status in one read-only snapshot; LedgerUnavailable for any database failure."""
    try:
        with psycopg.connect(dsn, connect_timeout=connect_timeout) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            return read_status(conn)
    except psycopg.OperationalError as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LedgerUnavailable(f"cannot reach PostgreSQL: {first_line}") from exc
    except psycopg.Error as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise LedgerUnavailable(f"cannot read the ledger: {first_line}") from exc


def _age(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m"


def format_status(status: LedgerStatus) -> str:
    """The human-readable table ``nem12 status`` prints."""
    lines = ["files by status"]
    lines += [f"  {name:<12}{count:>8}" for name, count in status.files_by_status.items()]
    lines.append(f"  {'total':<12}{status.files:>8}")
    oldest = status.oldest_unprocessed
    lines.append(
        "oldest unprocessed  "
        + (
            f"{oldest.key} ({oldest.status}, first seen {oldest.first_seen}, "
            f"{_age(oldest.age_seconds)} ago)"
            if oldest
            else "none"
        )
    )
    merge = status.last_merge
    lines.append(
        "last merge          "
        + (
            f"{merge.at}: {merge.files} files, {merge.inserted} inserted, "
            f"{merge.updated} updated, {merge.unchanged} unchanged, "
            f"{merge.superseded} superseded"
            if merge
            else "none"
        )
    )
    lines.append(f"readings            {status.readings}")
    lines.append(f"NEM13 reads         {status.reads}")
    return "\n".join(lines)
