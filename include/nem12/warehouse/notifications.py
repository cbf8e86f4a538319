"""What the notifiers send and what they have sent: the SQL of ``notification`` and of
the alerts and run files a notification tells of.

A row of ``notification`` (kind, subject, channel) says a channel took one
subject: kind ``alert`` (subject: the alert id) or ``run`` (subject:
``dag_id/run_id``). It is written only after the channel took the message,
so a retried task sends again exactly what no channel acknowledged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.rows import dict_row

from nem12.warehouse.schema import SCHEMA, SEVERITIES

#: Critical first.
_SEVERITY_RANK = "array_position(ARRAY[{}]::text[], severity) DESC".format(
    ", ".join(f"'{s}'" for s in SEVERITIES)
)

ALERT_COLUMNS = (
    "alert_id",
    "rule",
    "nmi",
    "nmi_suffix",
    "interval_date",
    "severity",
    "observed",
    "threshold",
    "message",
    "config_version",
    "raised_at",
)


def unsent_alerts(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every alert not notified yet: critical first, then by day, stream and rule."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            f"SELECT {', '.join(ALERT_COLUMNS)} FROM {SCHEMA}.alert "
            f"WHERE notified_at IS NULL "
            f"ORDER BY {_SEVERITY_RANK}, interval_date, nmi, nmi_suffix, rule, alert_id"
        ).fetchall()


def mark_notified(conn: psycopg.Connection, alert_ids: Iterable[int]) -> int:
    """Alerts every channel of theirs took; how many were still unmarked."""
    return conn.execute(
        f"UPDATE {SCHEMA}.alert SET notified_at = now() "
        "WHERE alert_id = ANY(%s) AND notified_at IS NULL",
        (list(alert_ids),),
    ).rowcount


def sent(conn: psycopg.Connection, kind: str, channel: str, subjects: list[str]) -> set[str]:
    """Those of ``subjects`` the channel has taken already."""
    rows = conn.execute(
        f"SELECT subject FROM {SCHEMA}.notification "
        "WHERE kind = %s AND channel = %s AND subject = ANY(%s)",
        (kind, channel, subjects),
    ).fetchall()
    return {row[0] for row in rows}


def record_sent(conn: psycopg.Connection, kind: str, channel: str, subjects: list[str]) -> None:
    """That the channel took these subjects (a second record of one changes nothing)."""
    conn.execute(
        f"INSERT INTO {SCHEMA}.notification (kind, subject, channel) "
        "SELECT %s, s, %s FROM unnest(%s::text[]) AS s ON CONFLICT DO NOTHING",
        (kind, channel, subjects),
    )


def run_files(conn: psycopg.Connection, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    """The files a DAG run touched, by id, as the ledger holds them now; ``format``:
    the first member's MDFF version (NEM12 or NEM13; None if unread)."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            f"""
            SELECT l.file_id, l.key, l.status, l.quality, l.readings, l.inserted, l.updated,
                   l.unchanged, l.superseded, l.moved_to, l.report_location,
                   l.members -> 0 ->> 'version' AS format
            FROM {SCHEMA}.file_ledger l
            WHERE l.file_id IN (SELECT file_id FROM {SCHEMA}.file_run
                                WHERE dag_id = %s AND run_id = %s)
            ORDER BY l.file_id
            """,
            (dag_id, run_id),
        ).fetchall()


def first_findings(
    conn: psycopg.Connection, file_ids: list[int], limit: int
) -> dict[int, tuple[list[dict[str, Any]], int]]:
    """Each file's first ``limit`` findings (errors first, then by line, file-wide ones
    before any line) and how many it has in all: file id -> (findings, total)."""
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"""
            SELECT file_id, rule, severity, line, message, total FROM (
                SELECT f.*, count(*) OVER (PARTITION BY file_id) AS total,
                       row_number() OVER (PARTITION BY file_id
                           ORDER BY severity = 'error' DESC, line NULLS FIRST, rule) AS n
                FROM {SCHEMA}.finding f WHERE file_id = ANY(%s)
            ) ranked WHERE n <= %s ORDER BY file_id, n
            """,
            (file_ids, limit),
        ).fetchall()
    found: dict[int, tuple[list[dict[str, Any]], int]] = {}
    for row in rows:
        file_id, total = row.pop("file_id"), int(row.pop("total"))
        found.setdefault(file_id, ([], total))[0].append(row)
    return found
