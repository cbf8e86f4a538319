"""The review view's app (FastAPI TestClient) on a ledger the pipeline's own steps wrote."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.format.rules import RULES
from nem12.pipeline import steps
from nem12.pipeline.review_web import create_app, offline, safe_report_path
from nem12.pipeline.settings import Settings
from nem12.warehouse import ledger, schema
from tests.conftest import empty_services

GOOD = generate_bytes(GeneratorSpec(nmis=1, days=2, seed=1))
PARTIAL = generate_bytes(GeneratorSpec(nmis=2, days=2, seed=2, defects=("value_negative",)))
BAD = generate_bytes(GeneratorSpec(nmis=1, days=2, seed=3, defects=("header_missing",)))


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory, shared_services) -> Iterator[tuple[TestClient, str, Path]]:
    reports = tmp_path_factory.mktemp("review") / "reports"
    services = shared_services
    empty_services(services)
    s3 = services.s3_client()
    for key, data in {
        "landing/good.csv": GOOD,
        "landing/partial.csv": PARTIAL,
        "landing/bad.csv": BAD,
    }.items():
        s3.put_object(Bucket=services.bucket, Key=key, Body=data)
    settings = Settings(bucket=services.bucket, reports_dir=str(reports))
    with psycopg.connect(services.postgres_dsn, autocommit=True) as conn:
        schema.apply_schema(conn)
        files = steps.register(s3, conn, settings, steps.new_objects(s3, conn, settings))
        outcome = steps.validate(s3, conn, settings, files, "run_1")
        staged = steps.load_group(s3, conn, settings, outcome.accepted)
        steps.merge(s3, conn, settings, list(staged))
        ledger.record_runs(conn, [f.file_id for f in files], "nem12_ingest", "run+1:00", "validate")

    def connect() -> psycopg.Connection:
        return psycopg.connect(services.postgres_dsn, autocommit=True)

    app = create_app(connect, str(reports), auth=False, base="")
    yield TestClient(app), services.postgres_dsn, reports


def file_ids(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT key, file_id FROM nem12.file_ledger").fetchall())


def test_files_page_lists_the_ledger_and_filters_it(reviewed):
    client, _, _ = reviewed
    page = client.get("/")
    assert page.status_code == 200
    text = page.text
    for key in ("landing/bad.csv", "landing/good.csv", "landing/partial.csv"):
        assert key in text
    assert "3 files, page 1 of 1" in text
    rejected = client.get("/", params={"status": "rejected"}).text
    assert "landing/bad.csv" in rejected and "landing/good.csv" not in rejected
    assert "1 files" in rejected
    assert "landing/partial.csv" in client.get("/", params={"q": "partial"}).text
    assert "MDPGEN" in client.get("/", params={"sender": "MDPGEN"}).text
    assert client.get("/", params={"status": "nonsense"}).status_code == 400


def test_file_page_groups_findings_by_rule_and_offers_them_as_csv_and_json(reviewed):
    client, dsn, _ = reviewed
    ids = file_ids(dsn)
    page = client.get(f"/files/{ids['landing/partial.csv']}").text
    assert "value_negative" in page and RULES["value_negative"].message in page
    negative = next(
        f
        for f in client.get(f"/files/{ids['landing/partial.csv']}/findings.json").json()
        if f["rule"] == "value_negative"
    )
    line = PARTIAL.decode().splitlines()[negative["line"] - 1]
    assert negative["raw"] == line and ",-1.5," in line  # the record as the provider sent it
    assert f"<code>{line}</code>" in page
    assert "nem12_ingest" in page and "run+1:00" in page
    assert (
        "<td>landing/partial.csv</td><td>NEM12</td><td>2024-02-01T09:30:00</td><td>MDPGEN</td>"
        "<td>RETAILER</td><td>partial</td><td>4</td><td>1</td><td>288</td><td>1</td>" in page
    )
    found = client.get(f"/files/{ids['landing/bad.csv']}/findings.json").json()
    assert [(f["rule"], f["severity"]) for f in found] == [("header_missing", "error")]
    assert found[0]["raw"] == BAD.decode().splitlines()[found[0]["line"] - 1]
    rows = list(
        csv.DictReader(
            io.StringIO(client.get(f"/files/{ids['landing/bad.csv']}/findings.csv").text)
        )
    )
    assert [(r["rule"], r["line"]) for r in rows] == [(found[0]["rule"], str(found[0]["line"]))]
    assert client.get("/files/999999").status_code == 404


def test_run_page_lists_the_files_of_the_run_and_its_report(reviewed):
    client, _, _ = reviewed
    page = client.get("/runs/run%2B1%3A00").text
    assert "landing/good.csv" in page and "landing/bad.csv" in page
    assert "/reports/run_1/" in page


def test_rules_page_lists_the_catalogue_with_counts(reviewed):
    client, _, _ = reviewed
    page = client.get("/rules", params={"days": 7}).text
    for rule in RULES:
        assert f"<td>{rule}</td>" in page
    fired = page.split("<td>value_negative</td>", 1)[1].split("</tr>", 1)[0]
    assert fired.endswith("<td>1</td><td>MDPGEN: 1</td>")


def test_reports_are_served_and_nothing_outside_their_root(reviewed):
    client, _, reports = reviewed
    index = next(reports.glob("run_1/**/index.html"))
    relative = index.relative_to(reports).as_posix()
    served = client.get(f"/reports/{relative}")
    assert served.status_code == 200 and served.text == offline(index.read_text(), "")
    (reports.parent / "secret.txt").write_text("no")
    for attempt in (
        "../secret.txt",
        "%2e%2e/secret.txt",
        "..%2fsecret.txt",
        "run_1/../../secret.txt",
    ):
        assert client.get(f"/reports/{attempt}").status_code == 404, attempt
    assert safe_report_path("../x") is None and safe_report_path("a/../../x") is None
    assert safe_report_path("a/b.html") == "a/b.html"


def test_served_reports_load_nothing_from_another_host(reviewed):
    """Every CDN link of Data Docs points at a vendored copy this app serves."""
    client, _, reports = reviewed
    pages = sorted(reports.glob("run_1/**/*.html"))
    assert pages
    for page in pages:
        served = client.get(f"/reports/{page.relative_to(reports).as_posix()}").text
        links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", served)
        assert not [link for link in links if re.match(r"(https?:)?//", link)], page
        for asset in {link for link in links if link.startswith("/assets/")}:
            fetched = client.get(asset)
            assert fetched.status_code == 200 and fetched.content, asset
        for font in re.findall(
            r"url\(\.\./webfonts/([^)]+\.woff2)\)",
            client.get("/assets/fontawesome/css/all.min.css").text,
        ):
            assert client.get(f"/assets/fontawesome/webfonts/{font}").status_code == 200
    assert client.get("/assets/../../review.py").status_code == 404


def test_without_a_login_every_route_is_refused(reviewed, tmp_path):
    _, dsn, reports = reviewed
    client = TestClient(create_app(lambda: psycopg.connect(dsn), str(reports), base=""))
    for path in ("/", "/files/1", "/files/1/findings.csv", "/rules", "/runs/x", "/reports/a.html"):
        assert client.get(path).status_code in (401, 403), path
