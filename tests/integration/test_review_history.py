"""The review view's version history and alerts (FastAPI TestClient, real PostgreSQL).

A day of one stream arrives three times (the first version, a correction of one
interval, then a V day correcting another interval's value and quality): its
versions page shows the three side by side with exactly the changed cells
marked, "as of" picks the version held then, and the file pages link to it.
Alerts are rows put in the table as the alert task would; the Alerts page lists
them newest first and filters them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient

from nem12.pipeline.review_web import create_app
from nem12.warehouse.merge import merge_files
from tests.integration.test_load_and_merge import load

NMI = "6100000001"
DAY = "2024-01-01"
CHANGED = "<td class='changed' title='differs from the version before'>"


def nem12_day(values: list[str], quality: str, update: str, ranges: tuple[str, ...] = ()) -> bytes:
    """One 30-minute day of NMI E1, its 300 record's UpdateDateTime ``update`` (the
    header one minute later)."""
    header = f"100,NEM12,{update[:8]}{int(update[8:12]) + 1:04d},MDPGEN,RETAILER"
    records = [
        header,
        f"200,{NMI},E1,1,E1,E1,MTR00001,kWh,30,",
        f"300,{DAY.replace('-', '')},{','.join(values)},{quality},,,{update}00,{update}00",
        *ranges,
        "900",
    ]
    return ("\r\n".join(records) + "\r\n").encode()


FIRST = ["1.000"] * 48
SECOND = ["1.000", "1.0", "2.5", *["1.000"] * 45]  # 01:00 corrected; 00:30 the same number
THIRD = [*SECOND[:47], "3"]  # 23:30 corrected, and estimated
VERSIONS = [
    nem12_day(FIRST, "A", "202402010915"),
    nem12_day(SECOND, "A", "202402020915"),
    nem12_day(THIRD, "V", "202402030915", ("400,1,47,A,,", "400,48,48,E52,,")),
]


@dataclass
class Reviewed:
    client: TestClient
    files: list[int]
    #: before the first merge, then after each
    moments: list[datetime]
    dsn: str


def now(conn: psycopg.Connection) -> datetime:
    return conn.execute("SELECT clock_timestamp()").fetchone()[0]


ALERTS = [
    # rule, nmi, suffix, day, severity, observed, threshold, raised_at
    ("daily_above", NMI, "E1", DAY, "high", "51.5", "40", "2024-03-01T00:00:00Z"),
    ("estimated_share", NMI, "E1", DAY, "medium", "0.0208", "0.01", "2024-03-02T00:00:00Z"),
    ("daily_above", "6100000002", "B1", "2024-01-05", "critical", "500", "40",
     "2024-03-03T00:00:00Z"),
]  # fmt: skip


@pytest.fixture
def reviewed(conn, tmp_path) -> Iterator[Reviewed]:
    moments, files = [now(conn)], []
    for n, data in enumerate(VERSIONS):
        files.append(load(conn, f"landing/v{n + 1}.csv", data))
        merge_files(conn, [files[-1]])
        moments.append(now(conn))
    for rule, nmi, suffix, day, severity, observed, threshold, raised in ALERTS:
        conn.execute(
            "INSERT INTO nem12.alert (rule, nmi, nmi_suffix, interval_date, severity, observed,"
            " threshold, message, config_version, raised_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'v1', %s)",
            (rule, nmi, suffix, day, severity, observed, threshold,
             f"{rule}: {observed} over {threshold}", raised),
        )  # fmt: skip
    dsn = conn.info.dsn
    app = create_app(
        lambda: psycopg.connect(dsn, autocommit=True), str(tmp_path), auth=False, base=""
    )
    yield Reviewed(TestClient(app), files, moments, dsn)


def test_a_day_corrected_twice_shows_three_versions_side_by_side_changes_marked(reviewed):
    _, second, third = reviewed.files
    page = reviewed.client.get(f"/days/{NMI}/E1/{DAY}")
    assert page.status_code == 200
    text = page.text
    assert "<p>3 versions, oldest first; the last is current.</p>" in text
    assert (
        "<th colspan='2'>version 1</th><th colspan='2'>version 2</th>"
        "<th colspan='2'>version 3 (current)</th>" in text
    )
    assert (
        "<tr><th>file</th>"
        + "".join(f"<td colspan='2'><a href='/files/{f}'>file {f}</a></td>" for f in reviewed.files)
        + "</tr>"
    ) in text
    assert (
        "<tr><th>UpdateDateTime (NEM time)</th><td colspan='2'>2024-02-01 09:15:00</td>"
        "<td colspan='2'>2024-02-02 09:15:00</td><td colspan='2'>2024-02-03 09:15:00</td></tr>"
    ) in text
    assert (
        "<tr><th>header DateTime (NEM time)</th><td colspan='2'>2024-02-01 09:16:00</td>"
        "<td colspan='2'>2024-02-02 09:16:00</td><td colspan='2'>2024-02-03 09:16:00</td></tr>"
    ) in text
    assert (
        f"<tr><th>replaced by</th><td colspan='2'><a href='/files/{second}'>file {second}</a>"
        f"</td><td colspan='2'><a href='/files/{third}'>file {third}</a></td>"
        "<td colspan='2'>current</td></tr>"
    ) in text
    assert (
        "<tr><th>quality</th><td colspan='2'>A</td><td colspan='2'>A</td>"
        "<td colspan='2'>V</td></tr>"
    ) in text
    assert (
        "<tr><th>total</th><td colspan='2'>48 kWh</td><td colspan='2'>49.5 kWh</td>"
        "<td colspan='2'>51.5 kWh</td></tr>"
    ) in text
    # one row per interval, value and quality per version; 1.0 and 1.000 are the same
    versions = text.split("<table class='versions'>", 1)[1].split("</table>", 1)[0]
    assert versions.count("<tr>") == 1 + 9 + 1 + 48  # versions, facts, heads, intervals
    assert "<tr><th>00:00</th>" + "<td>1</td><td>A</td>" * 3 + "</tr>" in text
    assert "<tr><th>00:30</th>" + "<td>1</td><td>A</td>" * 3 + "</tr>" in text
    assert (
        f"<tr><th>01:00</th><td>1</td><td>A</td>{CHANGED}2.5</td><td>A</td>"
        "<td>2.5</td><td>A</td></tr>"
    ) in text
    assert (
        "<tr><th>23:30</th><td>1</td><td>A</td><td>1</td><td>A</td>"
        f"{CHANGED}3</td>{CHANGED}E52</td></tr>"
    ) in text
    assert text.count(CHANGED) == 3
    assert "<h2>Alerts on this day: 2</h2>" in text


def test_the_day_as_json_gives_the_versions_and_the_intervals_side_by_side(reviewed):
    first, second, third = reviewed.files
    got = reviewed.client.get(f"/days/{NMI}/E1/{DAY}/versions.json").json()
    assert (got["nmi"], got["nmi_suffix"], got["interval_date"], got["as_of"]) == (
        NMI,
        "E1",
        DAY,
        None,
    )
    assert [(v["file_id"], v["replaced_by"], v["total"]) for v in got["versions"]] == [
        (first, second, "48"),
        (second, third, "49.5"),
        (third, None, "51.5"),
    ]
    assert got["versions"][2]["interval_quality"] == [
        {"first_interval": 1, "last_interval": 47, "quality_method": "A", "reason_code": None,
         "reason_description": None},
        {"first_interval": 48, "last_interval": 48, "quality_method": "E52", "reason_code": None,
         "reason_description": None},
    ]  # fmt: skip
    rows = got["intervals"]
    assert len(rows) == 48 and rows[0]["start"] == "2024-01-01T00:00:00+10:00"
    assert rows[2] == {
        "start": "2024-01-01T01:00:00+10:00",
        "values": ["1", "2.5", "2.5"],
        "quality_methods": ["A", "A", "A"],
        "reason_codes": [None, None, None],
        "value_changed": [False, True, False],
        "quality_changed": [False, False, False],
    }
    assert rows[47]["values"] == ["1", "1", "3"]
    assert rows[47]["quality_methods"] == ["A", "A", "E52"]
    assert rows[47]["value_changed"] == rows[47]["quality_changed"] == [False, False, True]
    assert [n for n, r in enumerate(rows) if any(r["value_changed"] + r["quality_changed"])] == [
        2,
        47,
    ]


def test_as_of_a_moment_the_page_marks_the_version_held_then(reviewed):
    before, after_first, after_second, after_third = reviewed.moments
    first, second, third = reviewed.files
    for moment, held in ((after_first, first), (after_second, second), (after_third, third)):
        got = reviewed.client.get(
            f"/days/{NMI}/E1/{DAY}/versions.json", params={"as_of": moment.isoformat()}
        ).json()
        assert [v["file_id"] for v in got["versions"]] == [held]
        assert got["intervals"][2]["values"] == [{first: "1"}.get(held, "2.5")]
        assert got["intervals"][2]["value_changed"] == [False]
    page = reviewed.client.get(
        f"/days/{NMI}/E1/{DAY}", params={"as_of": after_second.isoformat()}
    ).text
    assert "the table held version 2 (" in page and f"file {second}</a>, merged" in page
    assert (
        "<th colspan='2'>version 1</th><th colspan='2' class='held'>version 2 (held then)" in page
    )
    assert "version 3" not in page  # not merged yet then
    assert page.count(CHANGED) == 1
    naive = reviewed.client.get(
        f"/days/{NMI}/E1/{DAY}/versions.json",
        params={"as_of": after_first.astimezone(UTC).replace(tzinfo=None).isoformat()},
    ).json()
    assert [v["file_id"] for v in naive["versions"]] == [first]  # a moment without offset: UTC
    nothing = reviewed.client.get(f"/days/{NMI}/E1/{DAY}", params={"as_of": before.isoformat()})
    assert "the table held nothing for this day" in nothing.text
    assert (
        reviewed.client.get(
            f"/days/{NMI}/E1/{DAY}/versions.json", params={"as_of": before.isoformat()}
        ).json()["versions"]
        == []
    )
    assert reviewed.client.get(f"/days/{NMI}/E1/{DAY}", params={"as_of": "soon"}).status_code == 400
    assert reviewed.client.get(f"/days/{NMI}/E1/2024-01-02").status_code == 404


def test_the_file_pages_link_their_days_and_the_search_finds_a_day(reviewed):
    first, second, third = reviewed.files
    page = reviewed.client.get(f"/files/{first}").text
    assert (
        f"<tr><td>{NMI}</td><td>E1</td><td><a href='/days/{NMI}/E1/{DAY}'>{DAY}</a></td>"
        f"<td>A</td><td>48 kWh</td><td>replaced by <a href='/files/{second}'>file {second}</a>"
        "</td></tr>"
    ) in page
    assert "<h2>NEM12 days: 1</h2>" in page and "<h2>Alerts on its days: 2</h2>" in page
    assert "<td>estimated_share</td>" in page and "<td>6100000002</td>" not in page
    current = reviewed.client.get(f"/files/{third}").text
    assert "<td>V</td><td>51.5 kWh</td><td>current</td>" in current

    search = reviewed.client.get("/days", params={"nmi": NMI, "day": DAY}).text
    assert (
        f"<a href='/days/{NMI}/E1/{DAY}'>E1</a></td><td>3</td><td><a href='/files/{third}'>"
        in search
    )
    moved = reviewed.client.get(
        "/days", params={"nmi": NMI, "day": DAY, "suffix": "E1"}, follow_redirects=False
    )
    assert moved.status_code == 303 and moved.headers["location"] == f"/days/{NMI}/E1/{DAY}"
    empty = reviewed.client.get("/days", params={"nmi": NMI, "day": "2024-02-01"}).text
    assert f"No NEM12 day stored for {NMI} on 2024-02-01." in empty
    assert "<form action='/days'>" in reviewed.client.get("/days").text
    assert "<a href='/days'>Day versions</a>" in reviewed.client.get("/").text


def alert_keys(rows) -> list[tuple]:
    return [(a["rule"], a["nmi"], a["severity"]) for a in rows]


def test_the_alerts_page_lists_them_newest_first_and_filters(reviewed):
    client = reviewed.client
    page = client.get("/alerts").text
    assert "3 alerts, page 1 of 1" in page
    assert page.index("<td>6100000002</td>") < page.index("<td>estimated_share</td>")
    assert (
        "<tr><td>2024-03-01 00:00:00 UTC</td><td class='high'>high</td><td>daily_above</td>"
        f"<td>{NMI}</td><td>E1</td><td><a href='/days/{NMI}/E1/{DAY}'>{DAY}</a></td>"
        "<td>51.5</td><td>40</td><td>daily_above: 51.5 over 40</td><td>v1</td><td>not yet</td>"
        "</tr>"
    ) in page
    assert "<option selected>high</option>" in client.get("/alerts?severity=high").text
    everything = client.get("/alerts.json").json()
    assert (everything["total"], everything["page"], everything["pages"]) == (3, 1, 1)
    assert alert_keys(everything["alerts"]) == [
        ("daily_above", "6100000002", "critical"),
        ("estimated_share", NMI, "medium"),
        ("daily_above", NMI, "high"),
    ]
    newest = everything["alerts"][0]
    assert {k: newest[k] for k in ("observed", "threshold", "interval_date", "raised_at")} == {
        "observed": "500",
        "threshold": "40",
        "interval_date": "2024-01-05",
        "raised_at": "2024-03-03T00:00:00+00:00",
    }
    assert newest["versions"] == "/days/6100000002/B1/2024-01-05"
    assert newest["notified_at"] is None and newest["config_version"] == "v1"
    for params, expected in (
        ({"severity": "high"}, [("daily_above", NMI, "high")]),
        ({"severity": ["high", "critical"]}, [("daily_above", "6100000002", "critical"),
                                              ("daily_above", NMI, "high")]),
        ({"rule": "daily_above"}, [("daily_above", "6100000002", "critical"),
                                   ("daily_above", NMI, "high")]),
        ({"nmi": NMI}, [("estimated_share", NMI, "medium"), ("daily_above", NMI, "high")]),
        ({"day_from": "2024-01-02"}, [("daily_above", "6100000002", "critical")]),
        ({"day_to": DAY}, [("estimated_share", NMI, "medium"), ("daily_above", NMI, "high")]),
        ({"day_from": DAY, "day_to": DAY, "rule": "estimated_share"},
         [("estimated_share", NMI, "medium")]),
        ({"nmi": "6100000009"}, []),
    ):  # fmt: skip
        assert alert_keys(client.get("/alerts.json", params=params).json()["alerts"]) == expected
    filtered = client.get("/alerts", params={"rule": "estimated_share", "nmi": NMI}).text
    assert "1 alerts" in filtered and "<td>daily_above</td>" not in filtered
    assert "<option selected>estimated_share</option>" in filtered
    assert client.get("/alerts.json", params={"severity": "low"}).status_code == 400
    assert client.get("/alerts", params={"day_from": "01/02/2024"}).status_code == 400
    assert client.get("/alerts", params={"severity": "", "day_from": ""}).status_code == 200


def test_without_a_login_the_history_and_alert_routes_are_refused(reviewed, tmp_path):
    client = TestClient(create_app(lambda: psycopg.connect(reviewed.dsn), str(tmp_path), base=""))
    for path in (
        "/alerts",
        "/alerts.json",
        "/days",
        f"/days?nmi={NMI}&day={DAY}",
        f"/days/{NMI}/E1/{DAY}",
        f"/days/{NMI}/E1/{DAY}/versions.json",
    ):
        assert client.get(path, follow_redirects=False).status_code in (401, 403), path
