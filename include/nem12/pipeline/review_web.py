"""The review view's pages: a FastAPI app the Airflow plugin mounts on the api-server.

Pages are plain HTML with their style inline (nothing is fetched from another
host); every route needs a logged-in Airflow user unless built with
``auth=False`` (tests). Data comes from ``nem12.warehouse.review`` only.
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
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg

from nem12.format.rules import RULES
from nem12.warehouse import review
from nem12.warehouse.schema import FILE_STATUSES, apply_schema
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
"""


def _page(base: str, title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><nav><a href='{base}/'>Files</a>"
        f"<a href='{base}/rules'>Rules</a></nav><h1>{escape(title)}</h1>{body}</body></html>"
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return escape(value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    return escape(str(value))


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
    from fastapi.responses import HTMLResponse, JSONResponse, Response

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
            k: v
            for k, v in {
                "status": status,
                "sender": sender,
                "arrived_from": arrived_from,
                "arrived_to": arrived_to,
                "q": q,
            }.items()
            if v
        }
        pager = f"<p>{found.total} files, page {found.page} of {found.pages}"
        if found.page > 1:
            pager += f" <a href='?{urlencode({**query, 'page': found.page - 1})}'>newer</a>"
        if found.page < found.pages:
            pager += f" <a href='?{urlencode({**query, 'page': found.page + 1})}'>older</a>"
        return _page(base, "Files", form + pager + "</p>" + _files_table(found.rows, base))

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
            link = _report_link(reports_root, row["report_location"])
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
            f"<p>Findings: <a href='{base}/files/{file_id}/findings.csv'>CSV</a> "
            f"<a href='{base}/files/{file_id}/findings.json'>JSON</a></p>{groups or '<p>none</p>'}"
            f"<h2>Runs</h2><table><tr><th>DAG</th><th>run</th><th>tasks</th></tr>{run_rows}</table>"
        )
        return _page(base, str(row["key"]), body)

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
            f"<p><a href='{base}/{_report_link(reports_root, loc)}'>validation report</a></p>"
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


def _report_link(reports_root: str, location: str) -> str:
    """The view's link to a report the ledger names by its full location."""
    root = reports_root.rstrip("/")
    if location.startswith(root + "/"):
        return "reports/" + quote(location[len(root) + 1 :])
    local = str(Path(reports_root).resolve())
    if location.startswith(local + "/"):
        return "reports/" + quote(location[len(local) + 1 :])
    return "reports/"
