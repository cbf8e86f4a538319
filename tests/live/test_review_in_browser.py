"""A reviewer's session in a real browser: headless Chromium (Debian's package) via Playwright.

Log in to Airflow's UI, open the review view from the navigation, find the
rejected and the partial file, see each defect's rule, line and record as
sent, open the run's report styled, open a day's versions; every request the
browser makes goes to the Airflow server only. The screenshots are the README's (docs/review/).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from tests.live.conftest import FAST, Live, start_live

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "review"
#: Chromium's own calls home are switched off; a closed network refuses them anyway.
QUIET = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PARTIAL = generate_bytes(GeneratorSpec(nmis=2, days=2, seed=2, defects=("value_negative",)))
BROKEN = generate_bytes(GeneratorSpec(nmis=1, days=2, seed=3, defects=("header_missing",)))


@pytest.fixture(scope="module")
def cluster(live_services) -> Iterator[Live]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: make setup installs Debian's chromium package")
    yield from start_live(live_services, "LocalExecutor", FAST)


def test_a_reviewer_finds_each_defect_and_the_styled_report_with_no_other_host(live):
    from playwright.sync_api import sync_playwright

    live.deliver({"landing/partial.csv": PARTIAL, "landing/bad.csv": BROKEN})
    run = live.trigger("nem12_backfill", {"prefix": "landing/"})
    assert live.finished("nem12_backfill", run) == "success"
    server = urlparse(live.cluster.api_url).netloc
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=QUIET)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))

        page.goto(live.cluster.api_url + "/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(live.cluster.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(live.cluster.api_url + "/")
        page.get_by_role("button", name="Browse").click()
        page.get_by_role("menuitem", name="Meter data review").click()
        view = page.frame_locator("iframe").first
        view.get_by_role("link", name="landing/bad.csv").wait_for()
        page.screenshot(path=SCREENSHOTS / "files.png")

        view.get_by_role("link", name="landing/partial.csv").click()
        view.get_by_text("value_negative (error, 1)").wait_for()
        line = next(
            n for n, text in enumerate(PARTIAL.decode().splitlines(), 1) if ",-1.5," in text
        )
        row = view.locator("tr", has=view.get_by_text(",-1.5,"))
        assert row.locator("td").nth(1).inner_text() == str(line)
        page.screenshot(path=SCREENSHOTS / "file-partial.png")

        view.get_by_role("link", name="Files").click()
        view.get_by_role("link", name="landing/bad.csv").click()
        view.get_by_text("header_missing (error, 1)").wait_for()
        first = BROKEN.decode().splitlines()[0]
        assert view.locator("code", has_text=first).count() == 1

        view.get_by_role("link", name="validation report").click()
        view.locator("link[href$='/assets/bootstrap/bootstrap.min.css']").wait_for(state="attached")
        # styled: bootstrap's stylesheet (served by the view) applied to the report. Not
        # "networkidle": the UI around the frame polls the API all the time.
        deadline = time.monotonic() + 60
        font = ""
        while "Segoe UI" not in font and time.monotonic() < deadline:
            font = view.locator("body").evaluate("b => getComputedStyle(b).fontFamily")
            page.wait_for_timeout(250)
        assert "Segoe UI" in font, font
        page.screenshot(path=SCREENSHOTS / "report.png")

        # a day the partial file brought: its versions page (one version, 48 intervals),
        # opened from the view itself (the session's login holds for /nem12/ too)
        page.goto(live.cluster.api_url + "/nem12/")
        page.get_by_role("link", name="landing/partial.csv").click()
        page.locator("a[href*='/nem12/days/']").first.click()
        page.get_by_text("version 1 (current)").wait_for()
        assert page.locator("table.versions tr").count() == 1 + 9 + 1 + 48
        page.screenshot(path=SCREENSHOTS / "day-versions.png")
        browser.close()
    elsewhere = [
        url
        for url in requested
        if not (urlparse(url).netloc == server or urlparse(url).scheme in ("data", "blob", "about"))
    ]
    assert elsewhere == [] and len(requested) > 20
