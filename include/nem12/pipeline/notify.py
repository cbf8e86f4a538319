"""Notifications through Airflow's notifiers: the alerts and each run's summary.

A notifier of the alert config (``nem12.pipeline.alert_config``) is a channel:
``smtp`` becomes the SMTP provider's ``SmtpNotifier`` (an HTML mail of the
message's plain text), ``webhook`` the HTTP provider's ``HttpNotifier``
(a POST of the message's JSON document). Their secrets stay in the Airflow
connection the notifier's ``conn_id`` names. Any failure to deliver is loud,
a connection not defined where the task runs included: the other channels
are still tried, then ``DeliveryError`` names each channel that failed with
its error. A notifier nothing is routed to needs no connection.

Each channel takes each subject once (the ``notification`` table, written
after the channel took the message): a retried task sends again only what
no channel acknowledged, so a message is sent at least once and, unless a
task dies between the send and its record, exactly once.

The notifiers' ``notify`` is called directly, not through ``__call__``:
that would render the fields as Jinja templates, and a message holds data
(file keys, findings) that must reach the channel as it is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg

from nem12.pipeline.alert_config import AlertConfig, NotifierConfig
from nem12.warehouse import notifications
from nem12.warehouse.merge import OUTCOMES
from nem12.warehouse.schema import SEVERITIES, UNFINISHED

if TYPE_CHECKING:
    from airflow.providers.http.notifications.http import HttpNotifier
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

log = logging.getLogger(__name__)

#: Where the review plugin serves its pages on the api-server (plugins/nem12_review.py).
REVIEW_PREFIX = "/nem12"
#: The findings a run summary shows of each rejected or partial file.
FINDINGS_SHOWN = 5
#: Seconds a webhook may take to answer.
WEBHOOK_TIMEOUT = 30
#: The connection a notifier without ``conn_id`` uses (the providers' defaults).
DEFAULT_CONN_IDS = {"smtp": "smtp_default", "webhook": "http_default"}


class DeliveryError(RuntimeError):
    """Channels that could not take a message (the others did): name -> error."""

    def __init__(self, what: str, failures: dict[str, str]) -> None:
        self.failures = dict(failures)
        super().__init__(
            f"{what}: {len(failures)} channel(s) could not deliver: "
            + "; ".join(f"{name}: {error}" for name, error in failures.items())
        )


@dataclass(frozen=True)
class Message:
    """One notification: a subject, a plain text body (the mail) and a JSON document
    (the webhook) telling the same."""

    subject: str
    text: str
    document: dict[str, Any]

    def html(self) -> str:
        """The text as an HTML mail (the SMTP notifier sends HTML): as written, in a
        fixed-width font, its absolute links clickable."""
        body = _LINK.sub(r"<a href='\1'>\1</a>", escape(self.text, quote=True))
        return (
            "<!DOCTYPE html><html><body>"
            f"<pre style='font-family: monospace; white-space: pre-wrap'>{body}</pre>"
            "</body></html>"
        )


_LINK = re.compile(r"(https?://[^\s<>'\"]+)")


# --- the notifiers -----------------------------------------------------------------------


def conn_id(notifier: NotifierConfig) -> str:
    """The Airflow connection holding the notifier's server and secrets."""
    return str(notifier.options.get("conn_id") or DEFAULT_CONN_IDS[notifier.kind])


def smtp_notifier(notifier: NotifierConfig, message: Message) -> SmtpNotifier:
    """The SMTP provider's notifier mailing ``message`` to the notifier's ``to`` (and
    ``cc``, ``bcc``) from ``from_email`` (else the connection's ``from_email`` extra)."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    options = notifier.options
    return SmtpNotifier(
        smtp_conn_id=conn_id(notifier),
        to=list(options["to"]),
        cc=options.get("cc"),
        bcc=options.get("bcc"),
        from_email=options.get("from_email"),
        subject=message.subject,
        html_content=message.html(),
        custom_headers={"X-NEM12-Kind": str(message.document.get("kind", ""))},
    )


def webhook_notifier(notifier: NotifierConfig, message: Message) -> HttpNotifier:
    """The HTTP provider's notifier posting ``message.document`` as JSON to the
    connection's URL plus ``endpoint``, with the notifier's ``headers``."""
    from airflow.providers.http.notifications.http import HttpNotifier

    options = notifier.options
    return HttpNotifier(
        http_conn_id=conn_id(notifier),
        endpoint=options.get("endpoint"),
        method=str(options.get("method", "POST")),
        json=message.document,
        headers={"Content-Type": "application/json", **dict(options.get("headers") or {})},
        extra_options={"timeout": options.get("timeout", WEBHOOK_TIMEOUT)},
    )


#: One builder per notifier kind of the alert config.
BUILDERS: dict[str, Callable[[NotifierConfig, Message], Any]] = {
    "smtp": smtp_notifier,
    "webhook": webhook_notifier,
}


def is_set_up(notifier: NotifierConfig) -> bool:
    """Whether the notifier's connection is defined where the task runs."""
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        Connection.get(conn_id(notifier))
    except AirflowNotFoundException:
        return False
    return True


def send(notifier: NotifierConfig, message: Message, context: Mapping[str, Any] | None = None):
    """Deliver ``message`` through the notifier (raises what the notifier raised)."""
    BUILDERS[notifier.kind](notifier, message).notify(dict(context or {}))


@dataclass
class Delivery:
    """What each channel did with the subjects routed to it: ``taken`` (now or
    before), ``sent`` now and ``failed`` (name -> error)."""

    taken: dict[str, set[str]] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"sent": dict(self.sent), "failed": dict(self.failed)}


def deliver(
    conn: psycopg.Connection,
    kind: str,
    notifiers: Mapping[str, NotifierConfig],
    routes: Mapping[str, list[str]],
    message_for: Callable[[list[str]], Message],
    context: Mapping[str, Any] | None = None,
) -> Delivery:
    """Send each channel of ``routes`` (name -> subjects) one message of the subjects
    it has not taken, built by ``message_for``; record them once it took them."""
    done = Delivery()
    for name, subjects in routes.items():
        notifier = notifiers.get(name)
        if notifier is None:
            done.failed[name] = "no such notifier in the alert config"
            continue
        if not is_set_up(notifier):
            done.failed[name] = (
                f"its Airflow connection {conn_id(notifier)!r} is not defined "
                f"(AIRFLOW_CONN_{conn_id(notifier).upper()} or the UI's Connections)"
            )
            log.error("channel %s (%s): %s", name, notifier.kind, done.failed[name])
            continue
        taken = notifications.sent(conn, kind, name, subjects)
        pending = [s for s in subjects if s not in taken]
        if pending:
            try:
                send(notifier, message_for(pending), context)
            except Exception as error:  # any failure of one channel: try the others first
                log.error("channel %s (%s) failed: %s", name, notifier.kind, error)
                done.failed[name] = f"{type(error).__name__}: {error}"
                continue
            notifications.record_sent(conn, kind, name, pending)
            log.info("channel %s (%s): sent %d %s", name, notifier.kind, len(pending), kind)
        done.taken[name] = set(subjects)
        done.sent[name] = len(pending)
    return done


# --- alerts ------------------------------------------------------------------------------


def _figure(value: Any) -> str | None:
    """A decimal as JSON keeps it exact: a string (None stays null)."""
    return None if value is None else str(value)


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, date | datetime) else value


def alerts_message(
    alerts: list[dict[str, Any]], origin: str | None = None, base_url: str | None = None
) -> Message:
    """One message telling ``alerts`` (rows of ``nem12.alert``), critical first, each
    with the review page of its stream's day."""
    links = ReviewLinks(base_url)
    by_severity = {s: sum(1 for a in alerts if a["severity"] == s) for s in reversed(SEVERITIES)}
    counts = ", ".join(f"{n} {s}" for s, n in by_severity.items() if n)
    versions = sorted({a["config_version"] for a in alerts})
    lines = [
        f"{len(alerts)} meter data alert(s): {counts} (alert config {', '.join(versions)})",
        *([f"from {origin}"] if origin else []),
        "",
    ]
    for a in alerts:
        shown = [w for w in ("observed", "threshold") if a[w] is not None]
        figures = ", ".join(f"{w} {_figure(a[w])}" for w in shown)
        lines.append(
            f"{a['severity'].upper():<8} {a['rule']}  NMI {a['nmi']} {a['nmi_suffix']}  "
            f"{_iso(a['interval_date'])}: {a['message']}" + (f" ({figures})" if figures else "")
        )
        lines.append(f"         {links.day(a['nmi'], a['nmi_suffix'], a['interval_date'])}")
    document = {
        "kind": "alerts",
        "origin": origin,
        "count": len(alerts),
        "by_severity": by_severity,
        "alerts": [
            {
                "alert_id": a["alert_id"],
                "rule": a["rule"],
                "severity": a["severity"],
                "nmi": a["nmi"],
                "nmi_suffix": a["nmi_suffix"],
                "interval_date": _iso(a["interval_date"]),
                "observed": _figure(a["observed"]),
                "threshold": _figure(a["threshold"]),
                "message": a["message"],
                "config_version": a["config_version"],
                "raised_at": _iso(a["raised_at"]),
                "link": links.day(a["nmi"], a["nmi_suffix"], a["interval_date"]),
            }
            for a in alerts
        ],
    }
    return Message(f"NEM12 alerts: {len(alerts)} ({counts})", "\n".join(lines) + "\n", document)


def alert_channels(config: AlertConfig, rule: str) -> tuple[str, ...]:
    """The channels of a rule's alerts: the config's ``notify.alerts`` and the rule's
    own ``notify``, each once (a rule no longer in the config: the former)."""
    try:
        named = config.rule(rule).notify
    except KeyError:
        named = ()
    return tuple(dict.fromkeys((*config.notify_alerts, *named)))


def send_alerts(
    conn: psycopg.Connection,
    config: AlertConfig,
    origin: str | None = None,
    context: Mapping[str, Any] | None = None,
    base_url: str | None = None,
) -> dict[str, Any]:
    """Send every alert not notified yet to its channels, one message per channel,
    and mark notified those every channel of theirs took (an alert without a
    channel that is on, at once). Raises ``DeliveryError`` after trying every
    channel if one could not take its message: its alerts stay unsent for it."""
    alerts = notifications.unsent_alerts(conn)
    routes: dict[str, list[str]] = {}
    channels_of: dict[int, tuple[str, ...]] = {}
    for alert in alerts:
        channels_of[alert["alert_id"]] = alert_channels(config, alert["rule"])
        for name in channels_of[alert["alert_id"]]:
            routes.setdefault(name, []).append(str(alert["alert_id"]))
    by_id = {str(a["alert_id"]): a for a in alerts}
    done = deliver(
        conn,
        "alert",
        config.notifiers,
        routes,
        lambda ids: alerts_message([by_id[i] for i in ids], origin, base_url),
        context,
    )
    taken = [
        alert_id
        for alert_id, names in channels_of.items()
        if all(str(alert_id) in done.taken.get(n, ()) for n in names)
    ]
    marked = notifications.mark_notified(conn, taken)
    log.info(
        "alerts: %d unsent, %d notified now; sent %s; failed %s",
        len(alerts),
        marked,
        done.sent,
        list(done.failed),
    )
    if done.failed:
        raise DeliveryError(f"alerts ({len(alerts)} unsent)", done.failed)
    return {"unsent": len(alerts), "notified": marked, **done.summary()}


# --- runs --------------------------------------------------------------------------------

#: The counts a run summary adds up, per format: NEM12 readings, NEM13 reads.
#: A run summary's file statuses that come with their findings.
TOLD_WITH_FINDINGS = ("rejected", "partial")


@dataclass(frozen=True)
class ReviewLinks:
    """The review view's pages under the api-server's ``base_url`` (Airflow's ``[api]
    base_url``; None: links relative to the server)."""

    base_url: str | None = None
    #: Where the validation reports are (``NEM12_REPORTS_DIR``), for their links.
    reports_root: str | None = None

    @property
    def root(self) -> str:
        return (self.base_url or "").rstrip("/") + REVIEW_PREFIX

    def report(self, location: str | None) -> str | None:
        """A run's validation report as the review view serves it (None: no report)."""
        if not location or self.reports_root is None:
            return None
        from nem12.pipeline.review_web import report_link

        return f"{self.root}/{report_link(self.reports_root, location)}"

    def file(self, file_id: int) -> str:
        return f"{self.root}/files/{file_id}"

    def run(self, run_id: str) -> str:
        return f"{self.root}/runs/{quote(run_id, safe='')}"

    def day(self, nmi: str, suffix: str, day: date) -> str:
        """A stream's day: its versions side by side."""
        return f"{self.root}/days/{quote(nmi, safe='')}/{quote(suffix, safe='')}/{day.isoformat()}"


def run_subject(dag_id: str, run_id: str) -> str:
    """A run's subject in the ``notification`` table."""
    return f"{dag_id}/{run_id}"


def run_summary(
    conn: psycopg.Connection, dag_id: str, run_id: str, links: ReviewLinks | None = None
) -> dict[str, Any] | None:
    """What a run did, from the ledger as it stands: its files by status, the
    readings (NEM12) and reads (NEM13) by outcome, and every file with its counts;
    rejected and partial ones with their first findings. None if it touched no file."""
    files = notifications.run_files(conn, dag_id, run_id)
    if not files:
        return None
    links = links or ReviewLinks()
    told = [f["file_id"] for f in files if f["status"] in TOLD_WITH_FINDINGS]
    findings = notifications.first_findings(conn, told, FINDINGS_SHOWN) if told else {}
    by_status: dict[str, int] = {}
    totals = {name: dict.fromkeys(OUTCOMES, 0) for name in ("readings", "reads")}
    listed = []
    for f in files:
        by_status[f["status"]] = by_status.get(f["status"], 0) + 1
        counted = totals["reads" if f["format"] == "NEM13" else "readings"]
        for outcome in OUTCOMES:
            counted[outcome] += int(f[outcome] or 0)
        entry: dict[str, Any] = {
            "file_id": f["file_id"],
            "key": f["key"],
            "status": f["status"],
            "format": f["format"],
            **{outcome: f[outcome] for outcome in OUTCOMES},
            "moved_to": f["moved_to"],
            "link": links.file(f["file_id"]),
        }
        if f["status"] in TOLD_WITH_FINDINGS:
            shown, total = findings.get(f["file_id"], ([], 0))
            entry["findings"] = [
                {k: item[k] for k in ("rule", "severity", "line", "message")} for item in shown
            ]
            entry["findings_total"] = total
            entry["report"] = links.report(f["report_location"])
        listed.append(entry)
    return {
        "kind": "run",
        "dag_id": dag_id,
        "run_id": run_id,
        "link": links.run(run_id),
        "file_count": len(files),
        "files_by_status": by_status,
        **totals,
        "files": listed,
    }


def run_message(summary: dict[str, Any]) -> Message:
    """The run summary as a message (the document is the summary itself)."""
    statuses = ", ".join(f"{n} {s}" for s, n in summary["files_by_status"].items())
    lines = [
        f"{summary['dag_id']} run {summary['run_id']}: {summary['file_count']} file(s): {statuses}",
        f"run: {summary['link']}",
    ]
    for name, label in (("readings", "readings (NEM12)"), ("reads", "reads (NEM13)")):
        counts = summary[name]
        if any(counts.values()) or name == "readings":
            lines.append(f"{label}: " + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES))
    unfinished = [f for f in summary["files"] if f["status"] in UNFINISHED]
    if unfinished:
        lines.append(f"{len(unfinished)} file(s) unfinished: a later run takes them up")
    for f in summary["files"]:
        if "findings" not in f:
            continue
        lines += ["", f"{f['status'].upper()} {f['key']} (file {f['file_id']})", f"  {f['link']}"]
        if f["report"]:
            lines.append(f"  validation report: {f['report']}")
        for item in f["findings"]:
            where = f"line {item['line']}" if item["line"] is not None else "whole file"
            lines.append(f"  {item['severity']} {item['rule']} {where}: {item['message']}")
        if f["findings_total"] > len(f["findings"]):
            lines.append(f"  ... {f['findings_total'] - len(f['findings'])} more finding(s)")
    lines += ["", "files:"]
    for f in summary["files"]:
        counts = ", ".join(f"{f[o]} {o}" for o in OUTCOMES if f[o] is not None)
        lines.append(f"  {f['status']:<10} {f['key']}" + (f"  ({counts})" if counts else ""))
    subject = f"NEM12 {summary['dag_id']}: {summary['file_count']} file(s): {statuses}"
    return Message(subject, "\n".join(lines) + "\n", summary)


def notify_run(
    conn: psycopg.Connection,
    config: AlertConfig,
    dag_id: str,
    run_id: str,
    links: ReviewLinks | None = None,
    context: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Send the run's summary to each of ``config.notify_runs`` once; None (nothing
    sent) if the run touched no file. Raises ``DeliveryError`` after trying every
    channel if one could not take it."""
    summary = run_summary(conn, dag_id, run_id, links)
    if summary is None:
        log.info("%s %s touched no file: no run notification", dag_id, run_id)
        return None
    subject = run_subject(dag_id, run_id)
    message = run_message(summary)
    done = deliver(
        conn,
        "run",
        config.notifiers,
        {name: [subject] for name in config.notify_runs},
        lambda _: message,
        context,
    )
    if done.failed:
        raise DeliveryError(f"run summary of {subject}", done.failed)
    return {"files": summary["file_count"], **done.summary()}
