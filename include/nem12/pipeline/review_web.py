"""The review view's pages: a FastAPI app the Airflow plugin mounts on the api-server.

Pages are plain HTML with their style inline (nothing is fetched from another
host); every route needs a logged-in Airflow user unless built with
``auth=False`` (tests). Data comes from ``nem12.warehouse.review`` and
``nem12.warehouse.history`` (a day's versions) only.
"""

from __future__ import annotations

import csv
import io
import json
import mimetypes
import posixpath
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg

from nem12.format.rules import RULES
from nem12.warehouse import history, review
from nem12.warehouse.schema import FILE_STATUSES, SEVERITIES, apply_schema
from nem12.warehouse.usage import UsageQuery, usage

Connect = Callable[[], psycopg.Connection]

#: The vendored copies of what Data Docs load from CDNs.
ASSETS = Path(__file__).parent / "review_assets"
#: Each CDN link of Data Docs and the copy that stands for it (``review_assets/cdn.json``).
CDN_ASSETS: dict[str, str] = json.loads((ASSETS / "cdn.json").read_text())
#: Any other link to another host in a report (GX's logo, newsletter) goes nowhere.
_ELSEWHERE = re.compile(r"""(src|href)=(["'])https?://[^"']*\2""")


def offline(html: str, base: str) -> str:
    """A Data Docs page that loads only from this server: CDN links to the vendored copies."""
    for url, asset in CDN_ASSETS.items():
        html = html.replace(url, f"{base}/assets/{asset}")
    return _ELSEWHERE.sub(lambda m: f"{m.group(1)}={m.group(2)}#{m.group(2)}", html)


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1rem 1.5rem;color:#1d2733}
a{color:#0b5cad}table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #dde3ea;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f6f9}.error{color:#b00020;font-weight:600}.warning{color:#8a5a00}
.rejected{background:#fde8ea}.partial{background:#fff6dc}code{font-size:12px;word-break:break-all}
nav a{margin-right:1rem}form *{margin-right:.4rem}
td.changed{background:#ffe08a;font-weight:600}.held{background:#e3f1e3}
.medium{color:#8a5a00}.high{color:#b34700;font-weight:600}.critical{color:#b00020;font-weight:700}
table.versions td,table.versions th{white-space:nowrap}
"""


def _page(base: str, title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><nav><a href='{base}/'>Files</a>"
        f"<a href='{base}/alerts'>Alerts</a><a href='{base}/days'>Day versions</a>"
        f"<a href='{base}/rules'>Rules</a></nav><h1>{escape(title)}</h1>{body}</body></html>"
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return escape(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    return escape(str(value))


def _utc(value: datetime | None) -> str:
    """A moment of this system (merged, replaced, raised) in UTC, to the second."""
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _nem(value: datetime | None) -> str:
    """A datetime a file wrote (UpdateDateTime, header DateTime), in NEM time."""
    if value is None:
        return ""
    return value.astimezone(history.NEM_TZ).strftime("%Y-%m-%d %H:%M:%S")


def _moment(text: str | None) -> datetime | None:
    """An "as of" moment: ISO text, UTC unless it names its offset."""
    from fastapi import HTTPException

    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise HTTPException(400, f"as_of is not an ISO date and time: {text!r}") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _local(moment: datetime | None) -> str:
    """A moment as a datetime-local input shows it: UTC, to the second."""
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _day(text: str | None, name: str) -> date | None:
    from fastapi import HTTPException

    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise HTTPException(400, f"{name} is not a date (YYYY-MM-DD): {text!r}") from exc


def _day_path(base: str, nmi: str, suffix: str, day: date) -> str:
    """The versions page of one stream's day."""
    return f"{base}/days/{quote(nmi, safe='')}/{quote(suffix, safe='')}/{day.isoformat()}"


def _plain(value: Any) -> Any:
    """A query row's value as JSON: decimals as strings (exact), dates as ISO text."""
    if isinstance(value, Decimal):
        return history.decimal_text(value)
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def _alerts_table(rows: list[dict[str, Any]], base: str) -> str:
    if not rows:
        return "<p>none</p>"
    head = (
        "<tr><th>raised</th><th>severity</th><th>rule</th><th>NMI</th><th>suffix</th>"
        "<th>day</th><th>observed</th><th>threshold</th><th>message</th><th>config</th>"
        "<th>notified</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_utc(a['raised_at'])}</td>"
        f"<td class='{escape(a['severity'])}'>{escape(a['severity'])}</td>"
        f"<td>{_cell(a['rule'])}</td><td>{_cell(a['nmi'])}</td><td>{_cell(a['nmi_suffix'])}</td>"
        f"<td><a href='{_day_path(base, a['nmi'], a['nmi_suffix'], a['interval_date'])}'>"
        f"{a['interval_date'].isoformat()}</a></td>"
        f"<td>{_cell(history.decimal_text(a['observed']))}</td>"
        f"<td>{_cell(history.decimal_text(a['threshold']))}</td>"
        f"<td>{_cell(a['message'])}</td><td>{_cell(a['config_version'])}</td>"
        f"<td>{_utc(a['notified_at']) or 'not yet'}</td></tr>"
        for a in rows
    )
    return f"<table>{head}{body}</table>"


def _days_table(days: review.Page, base: str) -> str:
    """The NEM12 days a file brought, each current or replaced, linked to its versions."""
    if not days.total:
        return ""
    rows = "".join(
        f"<tr><td>{_cell(d['nmi'])}</td><td>{_cell(d['nmi_suffix'])}</td>"
        f"<td><a href='{_day_path(base, d['nmi'], d['nmi_suffix'], d['interval_date'])}'>"
        f"{d['interval_date'].isoformat()}</a></td><td>{_cell(d['quality_method'])}</td>"
        f"<td>{_cell(history.decimal_text(d['total']))} {_cell(d['uom'])}</td>"
        + (
            "<td>current</td>"
            if d["current"]
            else f"<td>replaced by <a href='{base}/files/{d['replaced_by']}'>file "
            f"{d['replaced_by']}</a></td>"
        )
        + "</tr>"
        for d in days.rows
    )
    shown = f" (the first {len(days.rows)})" if days.total > len(days.rows) else ""
    return (
        f"<h2>NEM12 days: {days.total}{shown}</h2>"
        "<table><tr><th>NMI</th><th>suffix</th><th>day (versions)</th><th>quality</th>"
        f"<th>total</th><th>now</th></tr>{rows}</table>"
    )


def _versions_table(versions: list[history.DayVersion], base: str, held: int | None) -> str:
    """A day's versions side by side: a column pair (value, quality) per version, its
    facts on top, then one row per interval; cells that differ from the version
    before are marked ``changed``; ``held``: the version held as of the moment asked."""

    def facts(name: str, cell: Callable[[history.DayVersion], str]) -> str:
        return (
            f"<tr><th>{name}</th>"
            + "".join(f"<td colspan='2'>{cell(v)}</td>" for v in versions)
            + "</tr>"
        )

    def file_link(file_id: int | None) -> str:
        return f"<a href='{base}/files/{file_id}'>file {file_id}</a>"

    def quality(method: str, reason: str | None) -> str:
        return escape(method) + (f" ({escape(reason)})" if reason else "")

    heads = "".join(
        f"<th colspan='2'{_HELD if n == held else ''}>version {n + 1}"
        + (" (current)" if v.replaced_at is None else "")
        + (" (held then)" if n == held else "")
        + "</th>"
        for n, v in enumerate(versions)
    )
    top = (
        facts("file", lambda v: file_link(v.file_id))
        + facts("UpdateDateTime (NEM time)", lambda v: _nem(v.update_datetime))
        + facts("header DateTime (NEM time)", lambda v: _nem(v.header_datetime))
        + facts("merged at", lambda v: _utc(v.merged_at))
        + facts("replaced at", lambda v: _utc(v.replaced_at))
        + facts(
            "replaced by",
            lambda v: file_link(v.replaced_by) if v.replaced_by is not None else "current",
        )
        + facts("quality", lambda v: quality(v.quality_method, v.reason_code))
        + facts("interval length", lambda v: f"{v.interval_length} min")
        + facts("total", lambda v: f"{history.decimal_text(v.total)} {escape(v.uom)}")
    )
    rows = "".join(
        f"<tr><th>{row.start.strftime('%H:%M')}</th>"
        + "".join(
            (
                f"<td{_mark(row.value_changed[n])}>"
                f"{_cell(history.decimal_text(c.value)) if c else ''}</td>"
                f"<td{_mark(row.quality_changed[n])}>"
                f"{quality(c.quality_method, c.reason_code) if c else ''}</td>"
            )
            for n, c in enumerate(row.cells)
        )
        + "</tr>"
        for row in history.side_by_side(versions)
    )
    return (
        f"<table class='versions'><tr><th></th>{heads}</tr>{top}"
        "<tr><th>interval start (NEM time)</th>"
        + "<th>value</th><th>quality</th>" * len(versions)
        + f"</tr>{rows}</table>"
    )


def _read_versions_table(reads: list[history.ReadVersion], base: str) -> str:
    """NEM13 read versions: the read (datetimes in NEM time), its file, when it was held."""
    rows = "".join(
        f"<tr><td>{_cell(r.nmi_suffix)}</td><td>{_cell(r.register_id)}</td>"
        f"<td>{_nem(r.previous_register_read_datetime)}</td>"
        f"<td>{_nem(r.current_register_read_datetime)}</td>"
        f"<td>{_cell(r.current_register_read_text)}</td><td>{_cell(r.current_quality_method)}</td>"
        f"<td>{_cell(history.decimal_text(r.quantity))} {_cell(r.uom)}</td>"
        f"<td><a href='{base}/files/{r.file_id}'>file {r.file_id}</a></td>"
        f"<td>{_utc(r.merged_at)}</td><td>{_utc(r.replaced_at)}</td>"
        + (
            "<td>current</td>"
            if r.current
            else f"<td>replaced by <a href='{base}/files/{r.replaced_by}'>file "
            f"{r.replaced_by}</a>{'' if r.ever_held else ' (never held)'}</td>"
        )
        + "</tr>"
        for r in reads
    )
    return (
        "<table><tr><th>suffix</th><th>register</th><th>previous read (NEM time)</th>"
        "<th>current read (NEM time)</th><th>read</th><th>quality</th><th>quantity</th>"
        "<th>file</th><th>merged at</th><th>replaced at</th><th>now</th></tr>"
        f"{rows}</table>"
    )


_HELD = " class='held'"


def _mark(changed: bool) -> str:
    return " class='changed' title='differs from the version before'" if changed else ""


def _files_table(rows: list[dict[str, Any]], base: str) -> str:
    head = (
        "<tr><th>file</th><th>arrived</th><th>from</th><th>to</th><th>status</th>"
        "<th>quality</th><th>readings</th><th>inserted</th><th>updated</th>"
        "<th>unchanged</th><th>superseded</th></tr>"
    )
    body = "".join(
        f"<tr class='{escape(str(r['status']))}'>"
        f"<td><a href='{base}/files/{r['file_id']}'>{_cell(r['key'])}</a></td>"
        + "".join(
            f"<td>{_cell(r[c])}</td>"
            for c in (
                "first_seen",
                "from_participant",
                "to_participant",
                "status",
                "quality",
                "readings",
                "inserted",
                "updated",
                "unchanged",
                "superseded",
            )
        )
        + "</tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def _reads_table(reads: review.Page, base: str) -> str:
    """A NEM13 file's reads, each current or replaced (by which file)."""
    if not reads.total:
        return ""
    heads = "".join(
        f"<th>{escape(c)}{' (NEM time)' if c.endswith('_datetime') else ''}</th>"
        for c in review.READ_COLUMNS
    )
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{_cell(r[c])}</td>" for c in review.READ_COLUMNS)
        + (
            "<td>current</td>"
            if r["current"]
            else f"<td>replaced by <a href='{base}/files/{r['replaced_by']}'>file "
            f"{r['replaced_by']}</a></td>"
            if r["replaced_by"] is not None
            else "<td>not current</td>"
        )
        + "</tr>"
        for r in reads.rows
    )
    shown = f" (the first {len(reads.rows)})" if reads.total > len(reads.rows) else ""
    return (
        f"<h2>NEM13 reads: {reads.total}{shown}</h2>"
        f"<table><tr>{heads}<th>now</th></tr>{rows}</table>"
    )


def _pager(what: str, found: Any, filters: dict[str, Any], json_href: str | None = None) -> str:
    """A list page's count and its links to the newer and older pages (and its JSON),
    keeping the filters that are set."""
    query = {k: v for k, v in filters.items() if v}
    pager = f"<p>{found.total} {what}, page {found.page} of {found.pages}"
    if found.page > 1:
        pager += f" <a href='?{urlencode({**query, 'page': found.page - 1})}'>newer</a>"
    if found.page < found.pages:
        pager += f" <a href='?{urlencode({**query, 'page': found.page + 1})}'>older</a>"
    if json_href:
        pager += f" <a href='{json_href}?{urlencode({**query, 'page': found.page})}'>JSON</a>"
    return pager + "</p>"


def create_app(
    connect: Connect,
    reports_root: str,
    s3: Callable[[], Any] | None = None,
    auth: bool = True,
    base: str = "/nem12",
):
    """The review app; ``reports_root`` is the reports folder or ``s3://bucket/prefix``
    (read with the client ``s3()`` gives)."""
    from fastapi import Depends, FastAPI, HTTPException, Query
    from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

    dependencies = []
    if auth:
        from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
        from airflow.api_fastapi.core_api.security import requires_access_view

        dependencies.append(Depends(requires_access_view(AccessView.PLUGINS)))
    app = FastAPI(title="NEM12 review", dependencies=dependencies, docs_url=None, redoc_url=None)

    @contextmanager
    def db() -> Iterator[psycopg.Connection]:
        with connect() as conn:
            apply_schema(conn)  # a view opened before the first run shows an empty ledger
            yield conn

    @app.get("/", response_class=HTMLResponse)
    def files_page(
        status: str | None = None,
        sender: str | None = None,
        arrived_from: date | None = None,
        arrived_to: date | None = None,
        q: str | None = None,
        page: int = Query(1, ge=1),
    ) -> str:
        if status and status not in FILE_STATUSES:
            raise HTTPException(400, f"status must be one of {', '.join(FILE_STATUSES)}")
        chosen = review.FileFilter(
            status or None, sender or None, arrived_from, arrived_to, q or None
        )
        with db() as conn:
            found = review.files(conn, chosen, page)
            known = review.senders(conn)
        options = "".join(
            f"<option{' selected' if s == status else ''}>{escape(s)}</option>"
            for s in ("", *FILE_STATUSES)
        )
        senders = "".join(
            f"<option{' selected' if s == sender else ''}>{escape(s)}</option>"
            for s in ("", *known)
        )
        form = (
            f"<form>status <select name='status'>{options}</select>"
            f"sender <select name='sender'>{senders}</select>"
            f"arrived <input type='date' name='arrived_from' value='{_cell(arrived_from)}'>"
            f"to <input type='date' name='arrived_to' value='{_cell(arrived_to)}'>"
            f"<input name='q' placeholder='key or NMI' value='{_cell(q)}'>"
            "<button>Filter</button></form>"
        )
        query = {
            "status": status,
            "sender": sender,
            "arrived_from": arrived_from,
            "arrived_to": arrived_to,
            "q": q,
        }
        pager = _pager("files", found, query)
        return _page(base, "Files", form + pager + _files_table(found.rows, base))

    def _file_or_404(conn: psycopg.Connection, file_id: int) -> dict[str, Any]:
        row = review.file(conn, file_id)
        if row is None:
            raise HTTPException(404, f"no file {file_id} in the ledger")
        return row

    @app.get("/files/{file_id}", response_class=HTMLResponse)
    def file_page(file_id: int) -> str:
        with db() as conn:
            row = _file_or_404(conn, file_id)
            found = review.findings(conn, file_id)
            runs = review.runs_of_file(conn, file_id)
            reads = review.reads_of_file(conn, file_id)
            days = review.days_of_file(conn, file_id)
            alerts = review.alerts_of_file(conn, file_id) if days.total else []
        facts = "".join(
            f"<tr><th>{escape(k)}</th><td>{_cell(row[k])}</td></tr>"
            for k in (
                "key",
                "status",
                "quality",
                "from_participant",
                "to_participant",
                "header_datetime",
                "first_seen",
                "size_bytes",
                "sha256",
                "etag",
                "version_id",
                "readings",
                "inserted",
                "updated",
                "unchanged",
                "superseded",
                "moved_to",
            )
        )
        member_rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{_cell(m.get(k))}</td>"
                for k in (
                    "name",
                    "version",
                    "datetime",
                    "from",
                    "to",
                    "status",
                    "blocks",
                    "rejected_blocks",
                    "readings",
                    "findings",
                )
            )
            + "</tr>"
            for m in row["members"]
        )
        members = (
            "<h2>MDFF files in it</h2><table><tr><th>member</th><th>version</th>"
            "<th>header DateTime</th><th>from</th><th>to</th><th>status</th><th>blocks</th>"
            "<th>blocks rejected</th><th>readings</th><th>findings</th></tr>"
            f"{member_rows}</table>"
        )
        report = ""
        if row["report_location"]:
            link = report_link(reports_root, row["report_location"])
            report = f"<p><a href='{base}/{link}'>validation report</a></p>"
        by_rule: dict[str, list[dict[str, Any]]] = {}
        for f in found:
            by_rule.setdefault(f["rule"], []).append(f)
        groups = "".join(
            f"<h3 class='{escape(items[0]['severity'])}'>{escape(rule)} "
            f"({escape(items[0]['severity'])}, {len(items)})</h3>"
            f"<p>{escape(RULES[rule].message if rule in RULES else '')}</p><table>"
            "<tr><th>member</th><th>line</th><th>record</th><th>NMI</th><th>message</th>"
            "<th>record as sent</th></tr>"
            + "".join(
                f"<tr><td>{_cell(i['file'])}</td><td>{_cell(i['line'])}</td>"
                f"<td>{_cell(i['record_type'])}</td><td>{_cell(i['nmi'])}</td>"
                f"<td>{_cell(i['message'])}</td><td><code>{_cell(i['raw'])}</code></td></tr>"
                for i in items
            )
            + "</table>"
            for rule, items in by_rule.items()
        )
        run_rows = "".join(
            f"<tr><td>{_cell(r['dag_id'])}</td>"
            f"<td><a href='{base}/runs/{quote(r['run_id'], safe='')}'>{_cell(r['run_id'])}</a></td>"
            f"<td>{_cell(', '.join(r['tasks']))}</td></tr>"
            for r in runs
        )
        body = (
            f"<table>{facts}</table>{members}{report}{_reads_table(reads, base)}"
            f"{_days_table(days, base)}"
            + (
                f"<h2>Alerts on its days: {len(alerts)}</h2>{_alerts_table(alerts, base)}"
                if days.total
                else ""
            )
            + f"<p>Findings: <a href='{base}/files/{file_id}/findings.csv'>CSV</a> "
            f"<a href='{base}/files/{file_id}/findings.json'>JSON</a></p>{groups or '<p>none</p>'}"
            f"<h2>Runs</h2><table><tr><th>DAG</th><th>run</th><th>tasks</th></tr>{run_rows}</table>"
        )
        return _page(base, str(row["key"]), body)

    @app.get("/days", response_class=HTMLResponse)
    def days_page(
        nmi: str | None = None,
        day: str | None = None,
        suffix: str | None = None,
        as_of: str | None = None,
    ) -> Response:
        """Find a day by NMI and date: its NEM12 streams (each linked to its versions)
        and the versions of the NEM13 reads whose period meets it."""
        chosen, moment = _day(day, "day"), _moment(as_of)
        form = (
            f"<form action='{base}/days'>NMI <input name='nmi' value='{_cell(nmi)}' required>"
            f"day <input type='date' name='day' value='{_cell(chosen)}' required>"
            f"suffix <input name='suffix' size='4' value='{_cell(suffix)}' placeholder='any'>"
            f"as of (UTC) <input type='datetime-local' step='1' name='as_of' "
            f"value='{_local(moment)}'><button>Show versions</button></form>"
        )
        if not nmi or chosen is None:
            return HTMLResponse(_page(base, "Day versions", form))
        if suffix:
            target = _day_path(base, nmi, suffix, chosen)
            return RedirectResponse(
                target + (f"?{urlencode({'as_of': as_of})}" if as_of else ""), 303
            )
        after = chosen + timedelta(days=1)
        with db() as conn:
            days = history.day_versions(conn, nmi, chosen, after, moment)
            reads = history.read_versions(conn, nmi, chosen, after, moment)
        streams: dict[str, list[history.DayVersion]] = {}
        for v in days:
            streams.setdefault(v.nmi_suffix, []).append(v)
        query = f"?{urlencode({'as_of': as_of})}" if as_of else ""
        stream_rows = "".join(
            f"<tr><td><a href='{_day_path(base, nmi, s, chosen)}{query}'>{escape(s)}</a></td>"
            f"<td>{len(vs)}</td><td><a href='{base}/files/{vs[-1].file_id}'>"
            f"file {vs[-1].file_id}</a></td>"
            f"<td>{escape(vs[-1].quality_method)}</td>"
            f"<td>{history.decimal_text(vs[-1].total)} {escape(vs[-1].uom)}</td></tr>"
            for s, vs in streams.items()
        )
        held = "held as of " + _utc(moment) if moment else "stored"
        body = form + (
            f"<h2>NEM12 streams</h2><table><tr><th>suffix</th><th>versions {held}</th>"
            f"<th>latest version</th><th>quality</th><th>total</th></tr>{stream_rows}</table>"
            if streams
            else f"<p>No NEM12 day {held} for {escape(nmi)} on {chosen}.</p>"
        )
        if reads:
            body += f"<h2>NEM13 read versions {held}</h2>" + _read_versions_table(reads, base)
        return HTMLResponse(_page(base, f"Day versions: {nmi} on {chosen}", body))

    def _versions_of(
        conn: psycopg.Connection, nmi: str, suffix: str, day: date, moment: datetime | None
    ) -> tuple[list[history.DayVersion], list[history.DayVersion]]:
        """Every version of the day, and those held as of ``moment`` (all if none)."""
        after = day + timedelta(days=1)
        every = history.day_versions(conn, nmi, day, after, suffixes=(suffix,))
        if not every:
            raise HTTPException(404, f"no version of {nmi} {suffix} on {day} is stored")
        if moment is None:
            return every, every
        return every, history.day_versions(conn, nmi, day, after, moment, (suffix,))

    @app.get("/days/{nmi}/{suffix}/{day}", response_class=HTMLResponse)
    def day_page(nmi: str, suffix: str, day: date, as_of: str | None = None) -> str:
        """One stream's day: its versions side by side, or with ``as_of`` beside the
        others the one held then."""
        moment = _moment(as_of)
        with db() as conn:
            every, held = _versions_of(conn, nmi, suffix, day, moment)
            alerts = review.alerts(
                conn, review.AlertFilter(nmi=nmi, suffix=suffix, day_from=day, day_to=day)
            )
        here = _day_path(base, nmi, suffix, day)
        form = (
            f"<form action='{here}'>as of (UTC) <input type='datetime-local' step='1' "
            f"name='as_of' value='{_local(moment)}'><button>Show what was held</button>"
            + (f" <a href='{here}'>all versions</a>" if moment else "")
            + "</form>"
        )
        shown, marked = every, None
        if moment is None:
            summary = (
                "<p>1 version, current.</p>"
                if len(every) == 1
                else f"<p>{len(every)} versions, oldest first; the last is current.</p>"
            )
        else:  # the versions that had come by then, the one held then marked
            shown = [v for v in every if v.merged_at <= moment]
            if held:
                marked = shown.index(held[0])
                summary = (
                    f"<p>As of {_utc(moment)} the table held version {marked + 1} "
                    f"(<a href='{base}/files/{held[0].file_id}'>file {held[0].file_id}</a>, "
                    f"merged {_utc(held[0].merged_at)}); {len(every)} versions in all.</p>"
                )
            else:
                summary = (
                    f"<p>As of {_utc(moment)} the table held nothing for this day: its first "
                    f"version was merged {_utc(every[0].merged_at)}.</p>"
                )
        body = (
            form
            + summary
            + "<p>Marked cells differ from the version before them.</p>"
            + (_versions_table(shown, base, marked) if shown else "")
            + f"<p><a href='{here}/versions.json"
            + (f"?{urlencode({'as_of': as_of})}" if as_of else "")
            + "'>JSON</a></p>"
            + f"<h2>Alerts on this day: {alerts.total}</h2>{_alerts_table(alerts.rows, base)}"
        )
        return _page(base, f"Versions of {nmi} {suffix} on {day}", body)

    @app.get("/days/{nmi}/{suffix}/{day}/versions.json")
    def day_json(nmi: str, suffix: str, day: date, as_of: str | None = None) -> JSONResponse:
        """A day's versions (with ``as_of`` the one held then, if any) and their intervals
        side by side, decimals as strings."""
        moment = _moment(as_of)
        with db() as conn:
            _, held = _versions_of(conn, nmi, suffix, day, moment)
        return JSONResponse(
            {
                "nmi": nmi,
                "nmi_suffix": suffix,
                "interval_date": day.isoformat(),
                "as_of": moment.isoformat() if moment else None,
                "versions": [v.as_json() for v in held],
                "intervals": [row.as_json() for row in history.side_by_side(held)],
            }
        )

    def _alert_filter(
        severity: list[str], rule: str | None, nmi: str | None, day_from: str | None,
        day_to: str | None,
    ) -> review.AlertFilter:  # fmt: skip
        try:
            return review.AlertFilter(
                tuple(s for s in severity if s),
                rule or None,
                nmi or None,
                None,
                _day(day_from, "day_from"),
                _day(day_to, "day_to"),
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc

    @app.get("/alerts", response_class=HTMLResponse)
    def alerts_page(
        severity: str | None = None,
        rule: str | None = None,
        nmi: str | None = None,
        day_from: str | None = None,
        day_to: str | None = None,
        page: int = Query(1, ge=1),
    ) -> str:
        chosen = _alert_filter([severity or ""], rule, nmi, day_from, day_to)
        with db() as conn:
            found = review.alerts(conn, chosen, page)
            rules = review.alert_rules(conn)
        severities = "".join(
            f"<option{' selected' if s == severity else ''}>{escape(s)}</option>"
            for s in ("", *SEVERITIES)
        )
        known = "".join(
            f"<option{' selected' if r == rule else ''}>{escape(r)}</option>" for r in ("", *rules)
        )
        form = (
            f"<form>severity <select name='severity'>{severities}</select>"
            f"rule <select name='rule'>{known}</select>"
            f"NMI <input name='nmi' value='{_cell(nmi)}'>"
            f"days <input type='date' name='day_from' value='{_cell(day_from)}'>"
            f"to <input type='date' name='day_to' value='{_cell(day_to)}'>"
            "<button>Filter</button></form>"
        )
        query = {
            "severity": severity,
            "rule": rule,
            "nmi": nmi,
            "day_from": day_from,
            "day_to": day_to,
        }
        pager = _pager("alerts", found, query, json_href=f"{base}/alerts.json")
        return _page(base, "Alerts", form + pager + _alerts_table(found.rows, base))

    @app.get("/alerts.json")
    def alerts_json(
        severity: list[str] | None = Query(None, description="a severity; repeat"),  # noqa: B008
        rule: str | None = None,
        nmi: str | None = None,
        day_from: str | None = Query(None, description="first NEM day, YYYY-MM-DD"),
        day_to: str | None = Query(None, description="last NEM day (included)"),
        page: int = Query(1, ge=1),
    ) -> JSONResponse:
        """The alerts, newest first, 100 a page; decimals as strings."""
        chosen = _alert_filter(severity or [], rule, nmi, day_from, day_to)
        with db() as conn:
            found = review.alerts(conn, chosen, page)
        return JSONResponse(
            {
                "total": found.total,
                "page": found.page,
                "pages": found.pages,
                "alerts": [
                    {
                        **{k: _plain(v) for k, v in a.items()},
                        "versions": _day_path(base, a["nmi"], a["nmi_suffix"], a["interval_date"]),
                    }
                    for a in found.rows
                ],
            }
        )

    @app.get("/usage.json")
    def usage_json(
        nmi: list[str] = Query(description="an NMI; repeat for several"),  # noqa: B008
        date_from: date = Query(alias="from", description="first NEM day"),  # noqa: B008
        date_to: date = Query(alias="to", description="the day after the last"),  # noqa: B008
        group_by: str = Query("day", description="interval, day, month or quality"),
        suffix: list[str] | None = Query(None, description="an NMI suffix"),  # noqa: B008
        quality: list[str] | None = Query(None, description="a quality flag"),  # noqa: B008
    ) -> JSONResponse:
        """Energy per NMI and suffix, exact (decimals as strings), with the intervals behind
        each figure and how many were estimated or substituted."""
        try:
            query = UsageQuery(
                tuple(nmi),
                date_from,
                date_to,
                group_by,  # type: ignore[arg-type]  (checked by UsageQuery)
                tuple(suffix or ()),
                tuple(quality or ()),
            )
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        with db() as conn:
            rows = usage(conn, query)
        return JSONResponse([row.as_json() for row in rows])

    @app.get("/files/{file_id}/findings.json")
    def findings_json(file_id: int) -> JSONResponse:
        with db() as conn:
            row = _file_or_404(conn, file_id)
            found = review.findings(conn, file_id)
        return JSONResponse(
            found,
            headers={"Content-Disposition": f"attachment; filename=findings-{row['file_id']}.json"},
        )

    @app.get("/files/{file_id}/findings.csv")
    def findings_csv(file_id: int) -> Response:
        with db() as conn:
            row = _file_or_404(conn, file_id)
            found = review.findings(conn, file_id)
        out = io.StringIO()
        columns = ["file", "rule", "severity", "line", "record_type", "nmi", "message", "raw"]
        writer = csv.DictWriter(out, columns)
        writer.writeheader()
        writer.writerows(found)
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": f"attachment; filename=findings-{row['file_id']}.csv"},
        )

    @app.get("/runs/{run_id}", response_class=HTMLResponse)
    def run_page(run_id: str) -> str:
        with db() as conn:
            rows = review.files_of_run(conn, run_id)
        reports = sorted({r["report_location"] for r in rows if r["report_location"]})
        links = "".join(
            f"<p><a href='{base}/{report_link(reports_root, loc)}'>validation report</a></p>"
            for loc in reports
        )
        return _page(base, f"Run {run_id}", links + _files_table(rows, base))

    @app.get("/rules", response_class=HTMLResponse)
    def rules_page(days: int = Query(30, ge=1, le=3660)) -> str:
        until = datetime.now(UTC) + timedelta(minutes=1)
        with db() as conn:
            counts = review.rule_counts(conn, until - timedelta(days=days), until)
        rows = "".join(
            f"<tr><td>{escape(r.id)}</td><td class='{r.severity}'>{r.severity}</td>"
            f"<td>{r.scope}</td><td>{escape(r.message)}</td>"
            f"<td>{sum(counts.get(r.id, {}).values())}</td>"
            f"<td>{escape(', '.join(f'{k}: {v}' for k, v in sorted(counts.get(r.id, {}).items())))}"
            "</td></tr>"
            for r in RULES.values()
        )
        return _page(
            base,
            f"Rules, last {days} days",
            "<table><tr><th>rule</th><th>severity</th><th>scope</th><th>meaning</th>"
            f"<th>fired</th><th>by sender</th></tr>{rows}</table>",
        )

    @app.get("/reports/{path:path}")
    def report_file(path: str) -> Response:
        data = read_report(reports_root, path, s3)
        if data is None:
            raise HTTPException(404, "no such report file")
        media = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if media == "text/html":
            data = offline(data.decode("utf-8"), base).encode("utf-8")
        return Response(data, media_type=media)

    @app.get("/assets/{path:path}")
    def asset_file(path: str) -> Response:
        data = read_report(str(ASSETS), path)
        if data is None:
            raise HTTPException(404, "no such asset")
        return Response(data, media_type=mimetypes.guess_type(path)[0] or "font/woff2")

    return app


def safe_report_path(path: str) -> str | None:
    """``path`` inside the reports root, normalised; None if it would leave the root."""
    if "\x00" in path or "\\" in path:
        return None
    normal = posixpath.normpath("/" + path).lstrip("/")
    if not normal or normal.startswith("..") or normal != path.strip("/"):
        return None
    return normal


def read_report(reports_root: str, path: str, s3: Callable[[], Any] | None = None) -> bytes | None:
    """A report file's bytes from the local folder or S3 prefix; None if absent or unsafe."""
    inside = safe_report_path(path)
    if inside is None:
        return None
    if reports_root.startswith("s3://"):
        from botocore.exceptions import ClientError

        if s3 is None:
            return None
        bucket, _, prefix = reports_root[len("s3://") :].partition("/")
        key = f"{prefix.rstrip('/')}/{inside}" if prefix else inside
        try:
            return s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError:
            return None
    root = Path(reports_root).resolve()
    target = (root / inside).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        return None
    return target.read_bytes()


def report_link(reports_root: str, location: str) -> str:
    """The view's link to a report the ledger names by its full location."""
    root = reports_root.rstrip("/")
    if location.startswith(root + "/"):
        return "reports/" + quote(location[len(root) + 1 :])
    local = str(Path(reports_root).resolve())
    if location.startswith(local + "/"):
        return "reports/" + quote(location[len(local) + 1 :])
    return "reports/"
