"""The review queries: the one module that knows the SQL behind the review view.

Reviewers look for what was wrong with which file, and where, to send it back
to the meter data provider: the ledger (filtered, paged), one file with its
findings grouped by rule (and a NEM13 file's reads, the NEM12 days it brought
and their alerts), the files of one DAG run, how often each rule fired by
sender, and the alerts raised (filtered, paged). A day's versions come from
``nem12.warehouse.history``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from nem12.format import spec
from nem12.format.rules import RULES
from nem12.warehouse.schema import FILE_STATUSES, READ_SHOWN, SCHEMA, SEVERITIES

#: Ledger columns a Files page row shows.
_FILE_COLUMNS = (
    "file_id, key, first_seen, from_participant, to_participant, status, quality, readings, "
    "inserted, updated, unchanged, superseded, moved_to, report_location"
)


@dataclass(frozen=True)
class FileFilter:
    """What the Files page asks for; every field optional."""

    status: str | None = None
    sender: str | None = None
    arrived_from: date | None = None
    arrived_to: date | None = None
    search: str | None = None  # part of a key, or an NMI


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def _where(chosen: FileFilter) -> tuple[str, dict[str, Any]]:
    clauses, params = [], {}
    if chosen.status:
        if chosen.status not in FILE_STATUSES:
            raise ValueError(f"unknown status {chosen.status!r}")
        clauses.append("l.status = %(status)s")
        params["status"] = chosen.status
    if chosen.sender:
        clauses.append("l.from_participant = %(sender)s")
        params["sender"] = chosen.sender
    if chosen.arrived_from:
        clauses.append("l.first_seen >= %(arrived_from)s")
        params["arrived_from"] = chosen.arrived_from
    if chosen.arrived_to:
        clauses.append("l.first_seen < %(arrived_to)s")
        params["arrived_to"] = chosen.arrived_to + timedelta(days=1)
    if chosen.search:
        clauses.append(
            "(l.key ILIKE %(like)s OR EXISTS (SELECT 1 FROM "
            f"{SCHEMA}.finding f WHERE f.file_id = l.file_id AND f.nmi = %(search)s)"
            f" OR EXISTS (SELECT 1 FROM {SCHEMA}.read_version v"
            " WHERE v.file_id = l.file_id AND v.nmi = %(search)s))"
        )
        params["like"] = f"%{chosen.search}%"
        params["search"] = chosen.search
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def files(conn: psycopg.Connection, chosen: FileFilter, page: int = 1, per_page: int = 50) -> Page:
    """The ledger, newest first, as the Files page shows it."""
    where, params = _where(chosen)
    source = f"{SCHEMA}.file_ledger l{where}"
    order = "l.first_seen DESC, l.file_id DESC"
    return _paged(conn, _FILE_COLUMNS, source, order, params, page, per_page)


def _paged(
    conn: psycopg.Connection,
    columns: str,
    source: str,
    order: str,
    params: dict[str, Any],
    page: int,
    per_page: int,
) -> Page:
    """One page of ``SELECT columns FROM source ORDER BY order``, with the total."""
    page = max(page, 1)
    with conn.cursor(row_factory=dict_row) as cursor:
        total = cursor.execute(f"SELECT count(*) AS n FROM {source}", params).fetchone()
        rows = cursor.execute(
            f"SELECT {columns} FROM {source} ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s",
            {**params, "limit": per_page, "offset": (page - 1) * per_page},
        ).fetchall()
    return Page(rows, int(total["n"]) if total else 0, page, per_page)


def senders(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        f"SELECT DISTINCT from_participant FROM {SCHEMA}.file_ledger "
        "WHERE from_participant IS NOT NULL ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def file(conn: psycopg.Connection, file_id: int) -> dict[str, Any] | None:
    """One ledger row with everything the File page shows."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            f"SELECT {_FILE_COLUMNS}, bucket, etag, version_id, sha256, size_bytes, "
            f"header_datetime, coalesce(members, '[]') AS members "
            f"FROM {SCHEMA}.file_ledger l WHERE file_id = %s",
            (file_id,),
        ).fetchone()


def findings(conn: psycopg.Connection, file_id: int) -> list[dict[str, Any]]:
    """A file's findings, by rule (errors first) and line."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            f"SELECT file, rule, severity, line, record_type, nmi, message, raw "
            f"FROM {SCHEMA}.finding WHERE file_id = %s "
            "ORDER BY severity = 'error' DESC, rule, line NULLS FIRST",
            (file_id,),
        ).fetchall()


#: What the File page shows of each NEM13 read a file brought.
READ_COLUMNS = ("line_number", *READ_SHOWN)


def reads_of_file(conn: psycopg.Connection, file_id: int, limit: int = 500) -> Page:
    """The NEM13 reads a file brought, in file order (datetimes in NEM time, as the
    file wrote them): each ``current`` if it is the stored read now, else the newer
    read that replaced it (``replaced_by``: its file)."""
    columns = ", ".join(
        f"to_char(v.{c} AT TIME ZONE '{spec.NEM_TIME_ZONE}', 'YYYY-MM-DD HH24:MI:SS') AS {c}"
        if c.endswith("_datetime")
        else f"v.{c}"
        for c in READ_COLUMNS
    )
    with conn.cursor(row_factory=dict_row) as cursor:
        total = cursor.execute(
            f"SELECT count(*) AS n FROM {SCHEMA}.read_version WHERE file_id = %s", (file_id,)
        ).fetchone()
        rows = cursor.execute(
            f"""
            SELECT {columns}, m.file_id = v.file_id AS current, r.file_id AS replaced_by
            FROM {SCHEMA}.read_version v
            LEFT JOIN {SCHEMA}.meter_read m
                   ON (m.nmi, m.nmi_suffix, m.current_register_read_datetime)
                    = (v.nmi, v.nmi_suffix, v.current_register_read_datetime)
            LEFT JOIN LATERAL (
                SELECT c.file_id FROM {SCHEMA}.meter_read c
                WHERE c.nmi = v.nmi AND c.nmi_suffix = v.nmi_suffix AND c.file_id <> v.file_id
                  AND c.previous_register_read_datetime < v.current_register_read_datetime
                  AND c.current_register_read_datetime > v.previous_register_read_datetime
                ORDER BY c.current_register_read_datetime LIMIT 1
            ) r ON true
            WHERE v.file_id = %s
            ORDER BY v.member, v.line_number
            LIMIT %s
            """,
            (file_id, limit),
        ).fetchall()
    for row in rows:
        row["current"] = bool(row["current"])
        if row["current"]:
            row["replaced_by"] = None
    return Page(rows, int(total["n"]) if total else 0, 1, limit)


def runs_of_file(conn: psycopg.Connection, file_id: int) -> list[dict[str, Any]]:
    """The DAG runs that touched a file, and their tasks."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            f"SELECT dag_id, run_id, array_agg(task_id ORDER BY at) AS tasks, min(at) AS at "
            f"FROM {SCHEMA}.file_run WHERE file_id = %s GROUP BY dag_id, run_id ORDER BY 4",
            (file_id,),
        ).fetchall()


def files_of_run(conn: psycopg.Connection, run_id: str) -> list[dict[str, Any]]:
    """The files one DAG run touched and how each ended."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            f"SELECT {_FILE_COLUMNS} FROM {SCHEMA}.file_ledger l WHERE l.file_id IN "
            f"(SELECT file_id FROM {SCHEMA}.file_run WHERE run_id = %s) ORDER BY l.file_id",
            (run_id,),
        ).fetchall()


def rule_counts(
    conn: psycopg.Connection, since: datetime, until: datetime
) -> dict[str, dict[str, int]]:
    """How often each rule fired per sender over a period (by the files' arrival)."""
    rows = conn.execute(
        f"SELECT f.rule, coalesce(l.from_participant, '?'), count(*) "
        f"FROM {SCHEMA}.finding f JOIN {SCHEMA}.file_ledger l USING (file_id) "
        "WHERE l.first_seen >= %s AND l.first_seen < %s GROUP BY 1, 2",
        (since, until),
    ).fetchall()
    counts: dict[str, dict[str, int]] = {rule: {} for rule in RULES}
    for rule, sender, n in rows:
        counts.setdefault(rule, {})[sender] = int(n)
    return counts


def days_of_file(conn: psycopg.Connection, file_id: int, limit: int = 500) -> Page:
    """The NEM12 days a file brought that are kept: its versions now in ``meter_day``
    (``current``) or since replaced (``replaced_by``: the file that did), by stream
    and day. A day it brought that a newer version already held is not kept."""
    days = f"""
        SELECT nmi, nmi_suffix, interval_date, quality_method, total, uom,
               true AS current, NULL::bigint AS replaced_by
        FROM {SCHEMA}.meter_day WHERE file_id = %(file_id)s
        UNION ALL
        SELECT nmi, nmi_suffix, interval_date, quality_method, total, uom, false, replaced_by
        FROM {SCHEMA}.meter_day_version WHERE file_id = %(file_id)s
    """
    with conn.cursor(row_factory=dict_row) as cursor:
        rows = cursor.execute(
            f"SELECT *, count(*) OVER () AS n FROM ({days}) d "
            "ORDER BY nmi, nmi_suffix, interval_date LIMIT %(limit)s",
            {"file_id": file_id, "limit": limit},
        ).fetchall()
    total = int(rows[0]["n"]) if rows else 0
    for row in rows:
        del row["n"]
    return Page(rows, total, 1, limit)


#: What the Alerts page shows of each alert.
ALERT_COLUMNS = (
    "alert_id",
    "raised_at",
    "severity",
    "rule",
    "nmi",
    "nmi_suffix",
    "interval_date",
    "observed",
    "threshold",
    "message",
    "config_version",
    "notified_at",
)
_ALERT_SELECT = ", ".join(f"a.{c}" for c in ALERT_COLUMNS)


@dataclass(frozen=True)
class AlertFilter:
    """What the Alerts page asks for; every field optional. Days are NEM days,
    both ends included."""

    severities: tuple[str, ...] = ()
    rule: str | None = None
    nmi: str | None = None
    suffix: str | None = None
    day_from: date | None = None
    day_to: date | None = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.severities if s not in SEVERITIES]
        if unknown:
            raise ValueError(f"unknown severity {unknown[0]!r}: one of {', '.join(SEVERITIES)}")


def _alert_where(chosen: AlertFilter) -> tuple[str, dict[str, Any]]:
    clauses, params = [], {}
    if chosen.severities:
        clauses.append("a.severity = ANY(%(severities)s)")
        params["severities"] = list(chosen.severities)
    for name, clause in (
        ("rule", "a.rule = %(rule)s"),
        ("nmi", "a.nmi = %(nmi)s"),
        ("suffix", "a.nmi_suffix = %(suffix)s"),
        ("day_from", "a.interval_date >= %(day_from)s"),
        ("day_to", "a.interval_date <= %(day_to)s"),
    ):
        if getattr(chosen, name) is not None:
            clauses.append(clause)
            params[name] = getattr(chosen, name)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def alerts(
    conn: psycopg.Connection, chosen: AlertFilter, page: int = 1, per_page: int = 100
) -> Page:
    """The alerts raised, newest first, as the Alerts page shows them."""
    where, params = _alert_where(chosen)
    order = "a.raised_at DESC, a.alert_id DESC"
    return _paged(conn, _ALERT_SELECT, f"{SCHEMA}.alert a{where}", order, params, page, per_page)


def alert_rules(conn: psycopg.Connection) -> list[str]:
    """The rules that raised an alert, for the Alerts page's filter."""
    return [r[0] for r in conn.execute(f"SELECT DISTINCT rule FROM {SCHEMA}.alert ORDER BY 1")]


def alerts_of_file(conn: psycopg.Connection, file_id: int) -> list[dict[str, Any]]:
    """The alerts on the days a file brought (``days_of_file``), newest first."""
    with conn.cursor(row_factory=dict_row) as cursor:
        return cursor.execute(
            f"""
            SELECT {_ALERT_SELECT} FROM {SCHEMA}.alert a
            WHERE EXISTS (SELECT 1 FROM {SCHEMA}.meter_day d
                          WHERE (d.nmi, d.nmi_suffix, d.interval_date)
                              = (a.nmi, a.nmi_suffix, a.interval_date)
                            AND d.file_id = %(file_id)s)
               OR EXISTS (SELECT 1 FROM {SCHEMA}.meter_day_version d
                          WHERE (d.nmi, d.nmi_suffix, d.interval_date)
                              = (a.nmi, a.nmi_suffix, a.interval_date)
                            AND d.file_id = %(file_id)s)
            ORDER BY a.raised_at DESC, a.alert_id DESC
            """,
            {"file_id": file_id},
        ).fetchall()
