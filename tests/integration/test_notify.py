"""Notifications through Airflow's own SMTP and HTTP notifiers, to a real SMTP server
(aiosmtpd) and a real HTTP listener on loopback; Airflow finds the connections in
``AIRFLOW_CONN_*`` variables of this process, as a worker would.

Alerts: one message per channel with every unsent alert routed to it, marked
notified once each of their channels took them, never sent twice; a channel
that refuses fails the step loudly after the others took theirs, and keeps
its alerts for the next run. Runs: the summary of what a run did to its files,
once per channel, whatever became of them.
"""

from __future__ import annotations

import email
import html
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from email.message import Message as MailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.pipeline import downstream, notify, steps
from nem12.pipeline.alert_config import parse_config
from nem12.pipeline.settings import Settings
from tests.integration.test_ingest_steps import BAD, GOOD

MAIL_FROM = "nem12@example.com"
BASE_URL = "http://airflow.example:8080"
CONFIG = {
    "version": "test.1",
    "notifiers": {
        "mail": {"type": "smtp", "conn_id": "notify_mail", "to": ["ops@example.com"]},
        "hook": {"type": "webhook", "conn_id": "notify_hook", "endpoint": "/nem12/events"},
    },
    "notify": {"alerts": ["hook"], "runs": ["hook", "mail"]},
    "rules": [
        {
            "name": "usage_high",
            "kind": "usage_above",
            "threshold": "100",
            "uom": "kWh",
            "notify": ["mail"],  # besides the config's notify.alerts
        },
        {"name": "gaps", "kind": "missing_days"},
    ],
}


def config(**changes: Any):
    return parse_config(json.dumps({**CONFIG, **changes}), "test config")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- a real SMTP server and HTTP listener on loopback ------------------------------------


@dataclass
class Inbox:
    """What the SMTP server accepted: (envelope sender, recipients, message)."""

    port: int
    mails: list[tuple[str, list[str], MailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd's handler
        self.mails.append(
            (
                envelope.mail_from,
                list(envelope.rcpt_tos),
                email.message_from_bytes(envelope.content),
            )
        )
        return "250 Message accepted for delivery"


def mail_text(mail: MailMessage) -> str:
    """The plain text the HTML mail shows (inside its <pre>)."""
    part = next(p for p in mail.walk() if p.get_content_type() == "text/html")
    page = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
    inner = re.search(r"<pre[^>]*>(.*)</pre>", page, re.S)
    assert inner, page
    return html.unescape(re.sub(r"<[^>]+>", "", inner.group(1)))


@pytest.fixture
def smtp_server(monkeypatch) -> Iterator[Inbox]:
    from aiosmtpd.controller import Controller

    inbox = Inbox(free_port())
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    connection = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": inbox.port,
        "extra": {
            "from_email": MAIL_FROM,
            "disable_ssl": True,
            "disable_tls": True,
            "timeout": 5,
            "retry_limit": 0,
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_NOTIFY_MAIL", json.dumps(connection))
    try:
        yield inbox
    finally:
        controller.stop()


@dataclass
class Listener:
    """What the HTTP listener was sent: (path, content type, JSON body); ``status``: its
    answer to the next POSTs."""

    port: int
    posts: list[tuple[str, str, Any]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def http_listener(monkeypatch) -> Iterator[Listener]:
    listener = Listener(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if listener.status < 300:
                listener.posts.append(
                    (self.path, self.headers.get("Content-Type"), json.loads(body))
                )
            self.send_response(listener.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    listener.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": listener.port}
    monkeypatch.setenv("AIRFLOW_CONN_NOTIFY_HOOK", json.dumps(connection))
    try:
        yield listener
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- alerts ------------------------------------------------------------------------------

ALERTS = [
    ("usage_high", "6001000001", "E1", date(2024, 3, 2), "medium", "120.5", "100"),
    ("gaps", "6001000002", "E1", date(2024, 3, 1), "high", "3", None),
    ("usage_high", "6001000001", "E1", date(2024, 3, 3), "critical", "250", "100"),
]


def insert_alerts(conn, rows=ALERTS) -> list[int]:
    ids = []
    for rule, nmi, suffix, day, severity, observed, threshold in rows:
        row = conn.execute(
            "INSERT INTO nem12.alert (rule, nmi, nmi_suffix, interval_date, severity, observed, "
            "threshold, message, config_version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "RETURNING alert_id",
            (rule, nmi, suffix, day, severity, observed, threshold, f"{rule} fired", "test.1"),
        ).fetchone()
        ids.append(row[0])
    return ids


def notified(conn) -> dict[int, bool]:
    rows = conn.execute("SELECT alert_id, notified_at IS NOT NULL FROM nem12.alert").fetchall()
    return dict(rows)


def recorded(conn) -> set[tuple[str, str, str]]:
    return set(conn.execute("SELECT kind, subject, channel FROM nem12.notification").fetchall())


def test_alerts_go_once_per_channel_each_its_rule_names_then_never_again(
    conn, smtp_server, http_listener
):
    usage_medium, gap, usage_critical = insert_alerts(conn)
    done = downstream.send_alerts(conn, config(), "nem12_daily run-1", base_url=BASE_URL)
    assert done == {
        "unsent": 3,
        "notified": 3,
        "sent": {"hook": 3, "mail": 2},
        "failed": {},
    }
    # the mail: one message, the usage_high alerts only, critical first
    [(sender, recipients, mail)] = smtp_server.mails
    assert (sender, recipients) == (MAIL_FROM, ["ops@example.com"])
    assert mail["Subject"] == "NEM12 alerts: 2 (1 critical, 1 medium)"
    assert mail_text(mail).splitlines() == [
        "2 meter data alert(s): 1 critical, 1 medium (alert config test.1)",
        "from nem12_daily run-1",
        "",
        "CRITICAL usage_high  NMI 6001000001 E1  2024-03-03: usage_high fired "
        "(observed 250, threshold 100)",
        f"         {BASE_URL}/nem12/days/6001000001/E1/2024-03-03",
        "MEDIUM   usage_high  NMI 6001000001 E1  2024-03-02: usage_high fired "
        "(observed 120.5, threshold 100)",
        f"         {BASE_URL}/nem12/days/6001000001/E1/2024-03-02",
    ]
    # the webhook (notify.alerts): one JSON document, every alert
    [(path, content_type, document)] = http_listener.posts
    assert (path, content_type) == ("/nem12/events", "application/json")
    assert document["kind"] == "alerts" and document["origin"] == "nem12_daily run-1"
    assert document["count"] == 3
    assert document["by_severity"] == {"critical": 1, "high": 1, "medium": 1}
    assert [a["alert_id"] for a in document["alerts"]] == [usage_critical, gap, usage_medium]
    first = document["alerts"][0]
    assert {k: v for k, v in first.items() if k != "raised_at"} == {
        "alert_id": usage_critical,
        "rule": "usage_high",
        "severity": "critical",
        "nmi": "6001000001",
        "nmi_suffix": "E1",
        "interval_date": "2024-03-03",
        "observed": "250",
        "threshold": "100",
        "message": "usage_high fired",
        "config_version": "test.1",
        "link": f"{BASE_URL}/nem12/days/6001000001/E1/2024-03-03",
    }
    assert document["alerts"][1]["threshold"] is None
    assert notified(conn) == {usage_medium: True, gap: True, usage_critical: True}
    assert recorded(conn) == {
        ("alert", str(usage_medium), "mail"),
        ("alert", str(usage_critical), "mail"),
        ("alert", str(usage_medium), "hook"),
        ("alert", str(usage_critical), "hook"),
        ("alert", str(gap), "hook"),
    }

    # a re-run sends nothing; a new alert goes alone
    assert downstream.send_alerts(conn, config())["sent"] == {}
    [later] = insert_alerts(
        conn, [("gaps", "6001000002", "E1", date(2024, 3, 4), "medium", "1", None)]
    )
    assert downstream.send_alerts(conn, config())["sent"] == {"hook": 1}
    assert len(smtp_server.mails) == 1 and len(http_listener.posts) == 2
    assert [a["alert_id"] for a in http_listener.posts[1][2]["alerts"]] == [later]
    assert http_listener.posts[1][2]["origin"] is None


def test_a_webhook_answering_500_fails_loudly_and_keeps_its_alerts_for_the_next_run(
    conn, smtp_server, http_listener
):
    usage_medium, gap, usage_critical = insert_alerts(conn)
    http_listener.status = 500
    with pytest.raises(notify.DeliveryError) as failed:
        downstream.send_alerts(conn, config())
    assert str(failed.value) == (
        "alerts (3 unsent): 1 channel(s) could not deliver: "
        "hook: AirflowException: 500:Internal Server Error"
    )
    assert failed.value.failures == {"hook": "AirflowException: 500:Internal Server Error"}
    assert len(smtp_server.mails) == 1  # the mail channel still got its alerts
    assert notified(conn) == {usage_medium: False, gap: False, usage_critical: False}
    assert {c for _, _, c in recorded(conn)} == {"mail"}

    http_listener.status = 200  # the webhook is back: it gets them, the mail nothing again
    done = downstream.send_alerts(conn, config())
    assert (done["sent"], done["notified"]) == ({"hook": 3, "mail": 0}, 3)
    assert len(smtp_server.mails) == 1 and len(http_listener.posts) == 1
    assert all(notified(conn).values())


def test_an_smtp_server_that_is_not_there_fails_loudly_after_the_webhook_took_its_alerts(
    conn, http_listener, monkeypatch
):
    closed = free_port()  # nothing listens there
    connection = {
        "conn_type": "smtp",
        "host": "127.0.0.1",
        "port": closed,
        "extra": {"from_email": MAIL_FROM, "disable_ssl": True, "disable_tls": True},
    }
    monkeypatch.setenv("AIRFLOW_CONN_NOTIFY_MAIL", json.dumps(connection))
    usage_medium, gap, usage_critical = insert_alerts(conn)
    with pytest.raises(notify.DeliveryError, match=r"mail: ConnectionRefusedError: .*refused"):
        downstream.send_alerts(conn, config())
    assert len(http_listener.posts) == 1 and http_listener.posts[0][2]["count"] == 3
    # the webhook took all three, the mail none: only gaps' alert is done
    assert notified(conn) == {usage_medium: False, gap: True, usage_critical: False}


def test_a_channel_without_its_connection_fails_loudly_naming_it_and_keeps_its_alerts(
    conn, http_listener, monkeypatch
):
    monkeypatch.delenv("AIRFLOW_CONN_NOTIFY_MAIL", raising=False)
    usage_medium, gap, usage_critical = insert_alerts(conn)
    with pytest.raises(notify.DeliveryError) as raised:
        downstream.send_alerts(conn, config())
    assert "mail: its Airflow connection 'notify_mail' is not defined" in str(raised.value)
    assert len(http_listener.posts) == 1  # the webhook still took them
    assert notified(conn) == {usage_medium: False, gap: True, usage_critical: False}
    assert {c for _, _, c in recorded(conn)} == {"hook"}


def test_an_alert_without_a_channel_is_notified_at_once(conn, smtp_server, http_listener):
    insert_alerts(conn)
    done = downstream.send_alerts(conn, config(notify={"runs": ["hook"]}))  # no notify.alerts
    assert (done["sent"], done["notified"]) == ({"mail": 2}, 3)  # gaps: no channel at all
    assert http_listener.posts == [] and len(smtp_server.mails) == 1
    assert all(notified(conn).values())


def test_a_rule_no_longer_in_the_config_goes_to_the_alert_channels(conn, http_listener):
    insert_alerts(conn, [("retired_rule", "6001000009", "E1", date(2024, 3, 1), "high", "1", "1")])
    done = downstream.send_alerts(conn, config())
    assert done["sent"] == {"hook": 1}
    assert http_listener.posts[0][2]["alerts"][0]["rule"] == "retired_rule"


def test_alert_decimals_stay_exact_in_the_json(conn, http_listener):
    insert_alerts(
        conn, [("gaps", "6001000002", "E1", date(2024, 3, 1), "high", "1234.5670", "0.001")]
    )
    downstream.send_alerts(conn, config())
    [alert] = http_listener.posts[0][2]["alerts"]
    assert (alert["observed"], alert["threshold"]) == ("1234.5670", "0.001")
    assert Decimal(alert["observed"]) == Decimal("1234.567")


def test_the_links_are_the_review_views_pages(tmp_path):
    from nem12.pipeline.review_web import create_app

    plugin = (Path(__file__).parents[2] / "plugins" / "nem12_review.py").read_text()
    assert f'"url_prefix": "{notify.REVIEW_PREFIX}"' in plugin
    routes = {route.path for route in create_app(lambda: None, str(tmp_path)).routes}
    assert {"/files/{file_id}", "/runs/{run_id}", "/days/{nmi}/{suffix}/{day}"} <= routes
    links = notify.ReviewLinks(BASE_URL + "/")
    assert links.file(7) == f"{BASE_URL}/nem12/files/7"
    assert links.run("manual__2024-01-01T00:00:00+00:00") == (
        f"{BASE_URL}/nem12/runs/manual__2024-01-01T00%3A00%3A00%2B00%3A00"
    )
    assert links.day("6001/X", "E1", date(2024, 3, 1)) == (
        f"{BASE_URL}/nem12/days/6001%2FX/E1/2024-03-01"
    )
    assert notify.ReviewLinks().file(7) == "/nem12/files/7"


# --- runs --------------------------------------------------------------------------------

PARTIAL = generate_bytes(GeneratorSpec(nmis=2, days=2, seed=7, defects=("value_negative",)))


def run_as_the_dag(s3, conn, settings: Settings, dag_id: str, run_id: str) -> None:
    """One run of the ingest tasks' steps over what landed, each noting the files it
    touched in ``file_run`` as the tasks do."""

    def touched(file_ids, task_id):
        steps.record_runs(conn, file_ids, dag_id, run_id, task_id)

    files = steps.register(s3, conn, settings, steps.new_objects(s3, conn, settings))
    touched([f.file_id for f in files], "register")
    outcome = steps.validate(s3, conn, settings, files, run_id)
    touched([f.file_id for f in (*outcome.accepted, *outcome.rejected)], "validate")
    staged = dict(outcome.staged)
    loading = [f for f in outcome.accepted if f.file_id not in staged]
    for group in steps.loading_groups(loading, settings):
        staged.update(steps.load_group(s3, conn, settings, group))
    duplicates = [f for f in files if f.status == "duplicate"]
    steps.merge(s3, conn, settings, list(staged), also_archive=duplicates)
    touched(list(staged) + [f.file_id for f in duplicates], "merge")


def test_a_run_summary_tells_every_file_and_each_rejected_ones_findings_once(
    env, tmp_path, smtp_server, http_listener
):
    services, conn, s3 = env
    settings = Settings(bucket=services.bucket, reports_dir=str(tmp_path / "reports"))
    for key, data in {
        "landing/a.csv": GOOD,
        "landing/b.csv": GOOD,
        "landing/c.csv": BAD,
        "landing/d.csv": PARTIAL,
    }.items():
        s3.put_object(Bucket=services.bucket, Key=key, Body=data)
    run_as_the_dag(s3, conn, settings, "nem12_ingest", "scheduled__2024-01-01T01:00:00+00:00")

    run = "scheduled__2024-01-01T01:00:00+00:00"
    links = notify.ReviewLinks(BASE_URL, settings.reports_dir)
    done = notify.notify_run(conn, config(), "nem12_ingest", run, links)
    assert done == {"files": 4, "sent": {"hook": 1, "mail": 1}, "failed": {}}
    [(location,)] = conn.execute(
        "SELECT DISTINCT report_location FROM nem12.file_ledger WHERE file_id IN (3, 4)"
    ).fetchall()
    assert location.startswith(settings.reports_dir + "/")
    report = f"{BASE_URL}/nem12/reports/" + quote(location[len(settings.reports_dir) + 1 :])
    [(path, _, document)] = http_listener.posts
    assert path == "/nem12/events"
    link = f"{BASE_URL}/nem12/files"
    assert document == {
        "kind": "run",
        "dag_id": "nem12_ingest",
        "run_id": run,
        "link": f"{BASE_URL}/nem12/runs/scheduled__2024-01-01T01%3A00%3A00%2B00%3A00",
        "file_count": 4,
        "files_by_status": {"loaded": 1, "duplicate": 1, "rejected": 1, "partial": 1},
        "readings": {"inserted": 480, "updated": 0, "unchanged": 0, "superseded": 0},
        "reads": {"inserted": 0, "updated": 0, "unchanged": 0, "superseded": 0},
        "files": [
            {
                "file_id": 1,
                "key": "landing/a.csv",
                "status": "loaded",
                "format": "NEM12",
                "inserted": 192,
                "updated": 0,
                "unchanged": 0,
                "superseded": 0,
                "moved_to": "archive/a.csv",
                "link": f"{link}/1",
            },
            {
                "file_id": 2,
                "key": "landing/b.csv",
                "status": "duplicate",
                "format": None,
                "inserted": None,
                "updated": None,
                "unchanged": None,
                "superseded": None,
                "moved_to": "archive/b.csv",
                "link": f"{link}/2",
            },
            {
                "file_id": 3,
                "key": "landing/c.csv",
                "status": "rejected",
                "format": None,
                "inserted": None,
                "updated": None,
                "unchanged": None,
                "superseded": None,
                "moved_to": "rejected/c.csv",
                "link": f"{link}/3",
                "findings": [
                    {
                        "rule": "header_missing",
                        "severity": "error",
                        "line": 1,
                        "message": "the first record is '200', not a 100 header",
                    }
                ],
                "findings_total": 1,
                "report": report,
            },
            {
                "file_id": 4,
                "key": "landing/d.csv",
                "status": "partial",
                "format": "NEM12",
                "inserted": 288,
                "updated": 0,
                "unchanged": 0,
                "superseded": 0,
                "moved_to": "archive/d.csv",
                "link": f"{link}/4",
                "findings": [
                    {
                        "rule": "value_negative",
                        "severity": "error",
                        "line": 3,
                        "message": "interval 4 value '-1.5' is negative (1 such values in "
                        "the record)",
                    }
                ],
                "findings_total": 1,
                "report": report,
            },
        ],
    }
    [(_, _, mail)] = smtp_server.mails
    statuses = "1 loaded, 1 duplicate, 1 rejected, 1 partial"
    assert mail["Subject"] == f"NEM12 nem12_ingest: 4 file(s): {statuses}"
    assert mail_text(mail) == (
        f"nem12_ingest run {run}: 4 file(s): {statuses}\n"
        f"run: {document['link']}\n"
        "readings (NEM12): 480 inserted, 0 updated, 0 unchanged, 0 superseded\n"
        "\n"
        "REJECTED landing/c.csv (file 3)\n"
        f"  {link}/3\n"
        f"  validation report: {report}\n"
        "  error header_missing line 1: the first record is '200', not a 100 header\n"
        "\n"
        "PARTIAL landing/d.csv (file 4)\n"
        f"  {link}/4\n"
        f"  validation report: {report}\n"
        "  error value_negative line 3: interval 4 value '-1.5' is negative (1 such values "
        "in the record)\n"
        "\n"
        "files:\n"
        "  loaded     landing/a.csv  (192 inserted, 0 updated, 0 unchanged, 0 superseded)\n"
        "  duplicate  landing/b.csv\n"
        "  rejected   landing/c.csv\n"
        "  partial    landing/d.csv  (288 inserted, 0 updated, 0 unchanged, 0 superseded)\n"
    )
    # the links are clickable in the mail
    page = next(p for p in mail.walk() if p.get_content_type() == "text/html")
    assert f"<a href='{link}/3'>{link}/3</a>" in page.get_payload(decode=True).decode()

    # exactly once per run and channel; a run that touched no file sends nothing
    again = notify.notify_run(conn, config(), "nem12_ingest", run, links)
    assert again == {"files": 4, "sent": {"hook": 0, "mail": 0}, "failed": {}}
    assert notify.notify_run(conn, config(), "nem12_ingest", "manual__nothing", links) is None
    assert len(http_listener.posts) == 1 and len(smtp_server.mails) == 1
    assert ("run", f"nem12_ingest/{run}", "hook") in recorded(conn)


def test_a_run_whose_channel_fails_raises_while_the_load_stays_done(env, tmp_path, http_listener):
    services, conn, s3 = env
    settings = Settings(bucket=services.bucket, reports_dir=str(tmp_path / "reports"))
    s3.put_object(Bucket=services.bucket, Key="landing/a.csv", Body=GOOD)
    run_as_the_dag(s3, conn, settings, "nem12_backfill", "manual__1")
    http_listener.status = 503
    with pytest.raises(notify.DeliveryError, match="hook: AirflowException: 503:"):
        notify.notify_run(conn, config(notify={"runs": ["hook"]}), "nem12_backfill", "manual__1")
    assert conn.execute("SELECT status FROM nem12.file_ledger").fetchall() == [("loaded",)]
    assert recorded(conn) == set()
    http_listener.status = 200  # the retry sends it
    notify.notify_run(conn, config(notify={"runs": ["hook"]}), "nem12_backfill", "manual__1")
    [(_, _, document)] = http_listener.posts
    assert document["link"] == "/nem12/runs/manual__1"  # no base URL: relative links
    assert document["files"][0]["link"] == "/nem12/files/1"


def test_an_ingest_run_through_airflow_sends_its_summary_and_an_empty_run_nothing(
    services, tmp_path, smtp_server, http_listener, monkeypatch
):
    """``airflow dags test``: the final task reads the config file, the connections and
    ``[api] base_url`` from the environment, as a worker does."""
    import psycopg

    from nem12.devtools import demo

    path = tmp_path / "alerts.json"
    path.write_text(json.dumps({**CONFIG, "notify": {"runs": ["hook", "mail"]}}))
    monkeypatch.setenv("NEM12_ALERT_CONFIG", str(path))
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", BASE_URL + "/")
    monkeypatch.setenv("NEM12_SENSE_POKE_SECONDS", "1")  # the empty run gives up at once
    monkeypatch.setenv("NEM12_SENSE_TIMEOUT_SECONDS", "1")
    s3 = services.s3_client()
    s3.put_object(Bucket=services.bucket, Key="landing/a.csv", Body=GOOD)
    s3.put_object(Bucket=services.bucket, Key="landing/c.csv", Body=BAD)
    env = demo.airflow_env(tmp_path / "airflow", services.airflow_env(), tmp_path / "reports")
    log = tmp_path / "airflow.log"
    demo.prepare_airflow(env, log)
    demo.airflow(["dags", "test", "nem12_ingest", "2024-01-01T01:00:00+00:00"], env, log)

    with psycopg.connect(services.postgres_dsn) as conn:
        [(run_id,)] = conn.execute("SELECT DISTINCT run_id FROM nem12.file_run").fetchall()
        rejected = conn.execute(
            "SELECT file_id FROM nem12.file_ledger WHERE key = 'landing/c.csv'"
        ).fetchone()[0]
    [(_, _, document)] = http_listener.posts
    assert (document["dag_id"], document["run_id"]) == ("nem12_ingest", run_id)
    assert document["files_by_status"] == {"loaded": 1, "rejected": 1}
    assert document["readings"]["inserted"] == 192
    [told] = [f for f in document["files"] if f["status"] == "rejected"]
    assert (told["key"], told["link"]) == ("landing/c.csv", f"{BASE_URL}/nem12/files/{rejected}")
    assert [(f["rule"], f["line"]) for f in told["findings"]] == [("header_missing", 1)]
    [(_, _, mail)] = smtp_server.mails
    assert f"REJECTED landing/c.csv (file {rejected})" in mail_text(mail)

    # nothing new: the sensor gives up, the run ends skipped, nothing is sent
    demo.airflow(["dags", "test", "nem12_ingest", "2024-01-01T02:00:00+00:00"], env, log)
    assert len(http_listener.posts) == 1 and len(smtp_server.mails) == 1
    assert "reason='the run touched no file: nothing to tell'" in log.read_text()
