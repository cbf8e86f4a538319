"""The review view shows NEM13 files: their findings by rule and line, and their reads,
each current or replaced by the file that replaced it."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from nem12.pipeline.review_web import create_app
from nem12.pipeline.settings import Settings
from nem12.warehouse import schema
from tests.conftest import AEMO, empty_services
from tests.integration.test_ingest_steps import run_steps
from tests.integration.test_nem13_through_pipeline import ACTUAL, BROKEN

ESTIMATE = (AEMO / "unzipped" / "Example_NEM13_forward_estimate.csv").read_bytes()


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory, shared_services) -> Iterator[tuple[TestClient, dict[str, int]]]:
    reports = tmp_path_factory.mktemp("review13") / "reports"
    services = shared_services
    empty_services(services)
    s3 = services.s3_client()
    settings = Settings(bucket=services.bucket, reports_dir=str(reports))
    with psycopg.connect(services.postgres_dsn, autocommit=True) as conn:
        schema.apply_schema(conn)
        for number, delivery in enumerate(
            [
                {"landing/estimate.csv": ESTIMATE, "landing/broken.csv": BROKEN},
                {"landing/actual.csv": ACTUAL},
            ]
        ):
            for key, data in delivery.items():
                s3.put_object(Bucket=services.bucket, Key=key, Body=data)
            run_steps(s3, conn, settings, f"run{number}")
        ids = dict(conn.execute("SELECT key, file_id FROM nem12.file_ledger").fetchall())

    def connect() -> psycopg.Connection:
        return psycopg.connect(services.postgres_dsn, autocommit=True)

    yield TestClient(create_app(connect, str(reports), auth=False, base="")), ids


def test_a_nem13_file_page_lists_its_reads_current_or_replaced(reviewed):
    client, ids = reviewed
    page = client.get(f"/files/{ids['landing/estimate.csv']}").text
    assert "<h2>NEM13 reads: 2</h2>" in page
    assert (
        "<tr><td>2</td><td>VDEF005890</td><td>11</td><td>1</td><td>MET12345</td><td>E</td>"
        "<td>000888</td><td>2004-01-08 10:30:55</td><td>000999</td>"
        "<td>2004-04-08 00:00:00</td><td>E64</td><td>111</td><td>kWh</td>"
        f"<td>replaced by <a href='/files/{ids['landing/actual.csv']}'>file "
        f"{ids['landing/actual.csv']}</a></td></tr>"
    ) in page
    assert "<td>0010015</td>" in page and "<td>current</td>" in page
    assert "quantity_mismatch" in page  # its warning, with the rule's meaning
    actual = client.get(f"/files/{ids['landing/actual.csv']}").text
    assert "<h2>NEM13 reads: 1</h2>" in actual and "<td>current</td>" in actual


def test_a_broken_nem13_file_shows_the_rule_and_the_record_as_sent(reviewed):
    client, ids = reviewed
    found = client.get(f"/files/{ids['landing/broken.csv']}/findings.json").json()
    assert [(f["rule"], f["line"], f["raw"]) for f in found] == [
        ("record_wrong_version", 3, "300,20040409,1,2,3")
    ]
    assert "NEM13 reads" not in client.get(f"/files/{ids['landing/broken.csv']}").text


def test_the_files_page_finds_a_nem13_file_by_an_nmi_it_holds(reviewed):
    client, _ = reviewed
    page = client.get("/", params={"q": "VDEF005890"}).text
    assert "landing/estimate.csv" in page and "landing/actual.csv" in page
    assert "landing/broken.csv" not in page
