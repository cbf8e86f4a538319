"""The pipeline under Airflow's scheduler with the LocalExecutor, on PostgreSQL metadata.

Scheduled runs, the sensor's reschedule mode, backfills triggered through the
REST API as the UI's form sends them, the pools' bounds, overlapping runs and
the Asset event; each asserts the exact ledger and table afterwards.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from nem12.devtools.services import LOCAL_S3_SECRET
from tests.faults.scenarios import keys_of
from tests.live.conftest import (
    FAST,
    Live,
    interval,
    most_at_once,
    record_timeline,
    start_live,
)

#: Six files of their own streams, big enough that a load lasts a moment.
SIX = {
    f"landing/NEM12#{n:04d}#MDPGEN#RETAILER.csv": generate_bytes(
        GeneratorSpec(nmis=4, days=20, seed=n)
    )
    for n in range(6)
}
GOOD = generate_bytes(GeneratorSpec(nmis=1, days=2, seed=1))
OTHER = generate_bytes(GeneratorSpec(nmis=1, days=2, seed=2))
BROKEN = generate_bytes(GeneratorSpec(nmis=1, days=2, seed=3, defects=("header_missing",)))


@pytest.fixture(scope="module")
def cluster(live_services) -> Iterator[Live]:
    yield from start_live(live_services, "LocalExecutor", FAST)


def all_keys(*files: bytes) -> set[tuple]:
    return set().union(*(keys_of(f) for f in files))


def test_scheduled_run_waits_without_a_slot_and_takes_files_that_land_meanwhile(live):
    live.cluster.request("PATCH", "/api/v2/dags/nem12_ingest", {"is_paused": False})
    try:
        runs = live.cluster.wait_for(
            "the scheduler to create the hourly run",
            lambda: live.cluster.request("GET", "/api/v2/dags/nem12_ingest/dagRuns")["dag_runs"],
        )
        run = runs[0]
        assert run["run_type"] == "scheduled"
        sense = live.cluster.wait_for(
            "the sensor to reschedule",
            lambda: [
                ti
                for ti in live.task_instances("nem12_ingest", run["dag_run_id"])
                if ti["task_id"] == "sense" and ti["state"] == "up_for_reschedule"
            ],
        )
        assert sense
        pools = live.cluster.request("GET", "/api/v2/pools")["pools"]
        assert {p["name"]: p["running_slots"] for p in pools}["default_pool"] == 0
        live.deliver({"landing/a.csv": GOOD})
        assert live.finished("nem12_ingest", run["dag_run_id"]) == "success"
    finally:
        live.pause("nem12_ingest")
    assert live.ledger() == [("landing/a.csv", "loaded")]
    assert set(live.table_keys()) == keys_of(GOOD)
    assert set(live.objects()) == {"archive/a.csv"}


def test_an_hour_with_nothing_new_ends_skipped(live):
    run_id = live.trigger("nem12_ingest")
    try:
        assert live.finished("nem12_ingest", run_id, timeout=180) == "success"
    finally:
        live.pause("nem12_ingest")
    states = {ti["task_id"]: ti["state"] for ti in live.task_instances("nem12_ingest", run_id)}
    assert states["sense"] == "skipped"
    assert set(states.values()) == {"skipped"}
    assert live.ledger() == []


def test_backfills_through_the_rest_api_do_exactly_what_their_form_says(live):
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    today = datetime.now(UTC).date().isoformat()
    live.deliver(
        {"landing/a/x.csv": GOOD, "landing/a/notes.txt": b"not MDFF", "landing/b/y.csv": OTHER}
    )
    # the first thing a new deployment does: a backfill on a database without the schema
    run = live.trigger("nem12_backfill", {"prefix": "landing/a/", "arrived_to": yesterday})
    assert live.finished("nem12_backfill", run) == "success"
    assert live.ledger() == [] and live.table_keys() == []

    run = live.trigger(
        "nem12_backfill", {"prefix": "landing/a/", "glob": "*.csv", "arrived_from": today}
    )
    assert live.finished("nem12_backfill", run) == "success"
    assert live.ledger() == [("landing/a/x.csv", "loaded")]
    assert set(live.table_keys()) == keys_of(GOOD)
    assert {"archive/a/x.csv", "landing/a/notes.txt", "landing/b/y.csv"} == set(live.objects())

    # archived objects again: without reprocess their content is a duplicate, with it parsed
    run = live.trigger("nem12_backfill", {"prefix": "archive/"})
    assert live.finished("nem12_backfill", run) == "success"
    assert live.ledger() == [("landing/a/x.csv", "loaded"), ("archive/a/x.csv", "duplicate")]
    run = live.trigger("nem12_backfill", {"prefix": "archive/", "reprocess": True})
    assert live.finished("nem12_backfill", run) == "success"
    readings = len(keys_of(GOOD))
    assert live.sql(
        "SELECT key, status, inserted, updated, unchanged, superseded FROM nem12.file_ledger "
        "ORDER BY file_id"
    ) == [
        ("landing/a/x.csv", "loaded", readings, 0, 0, 0),
        ("archive/a/x.csv", "loaded", 0, 0, readings, 0),  # parsed again, same readings
    ]
    assert set(live.table_keys()) == keys_of(GOOD)
    assert {"archive/a/x.csv", "landing/a/notes.txt", "landing/b/y.csv"} == set(live.objects())


def test_a_dry_run_backfill_leaves_every_object_and_ledger_row_as_it_was(live):
    live.deliver({"landing/a.csv": GOOD, "landing/bad.csv": BROKEN})
    run = live.trigger("nem12_ingest")
    try:
        assert live.finished("nem12_ingest", run) == "success"
    finally:
        live.pause("nem12_ingest")
    live.deliver({"landing/a-again.csv": GOOD, "landing/bad-again.csv": BROKEN})
    objects, ledger = live.objects(), live.sql("SELECT * FROM nem12.file_ledger ORDER BY file_id")
    findings = live.sql("SELECT count(*) FROM nem12.finding")
    run = live.trigger("nem12_backfill", {"prefix": "landing/", "dry_run": True})
    assert live.finished("nem12_backfill", run) == "success"
    assert live.objects() == objects
    assert live.sql("SELECT * FROM nem12.file_ledger ORDER BY file_id") == ledger
    assert live.sql("SELECT count(*) FROM nem12.finding") == findings
    states = {ti["task_id"]: ti["state"] for ti in live.task_instances("nem12_backfill", run)}
    assert states["publish"] == "skipped"  # no Asset event: the table did not change
    merged = live.cluster.request(
        "GET",
        f"/api/v2/dags/nem12_backfill/dagRuns/{run}/taskInstances/merge/xcomEntries/return_value",
    )["value"]
    assert merged["dry_run"] is True and merged["duplicates"] == 1 and merged["rejected"] == 1
    assert merged["report_location"].endswith(".html")
    assert (live.cluster.root.parent / "reports").exists()


def test_loads_are_bounded_by_the_pool_and_overlapping_runs_merge_one_at_a_time(live):
    live.deliver(SIX)
    run = live.trigger("nem12_backfill", {"prefix": "landing/"})
    assert live.finished("nem12_backfill", run) == "success"
    tis = live.task_instances("nem12_backfill", run)
    record_timeline("LocalExecutor: six loads, pool nem12_load at 2 slots", tis)
    loads = [t for t in tis if t["task_id"] == "parse_and_load"]
    assert len(loads) == 6
    assert most_at_once([interval(t) for t in loads]) == 2
    assert sorted(t["rendered_map_index"] for t in loads) == sorted(f"{k} (1 files)" for k in SIX)
    assert set(live.table_keys()) == all_keys(*SIX.values())

    live.reset()
    live.deliver(SIX)
    hourly = live.trigger("nem12_ingest")
    backfill = live.trigger("nem12_backfill", {"prefix": "landing/"})
    try:
        assert live.finished("nem12_ingest", hourly) == "success"
        assert live.finished("nem12_backfill", backfill) == "success"
    finally:
        live.pause("nem12_ingest")
    both = [
        t
        for dag_id, run_id in (("nem12_ingest", hourly), ("nem12_backfill", backfill))
        for t in live.task_instances(dag_id, run_id)
    ]
    record_timeline("LocalExecutor: an hourly run and a backfill at once", both)
    merges = [interval(t) for t in both if t["task_id"] == "merge"]
    assert most_at_once(merges) == 1
    keys = all_keys(*SIX.values())
    assert sorted(live.table_keys()) == sorted(keys)  # each reading once
    assert live.sql("SELECT sum(inserted) FROM nem12.file_ledger") == [(len(keys),)]
    assert sorted(live.ledger()) == sorted((k, "loaded") for k in SIX)


def test_the_meter_table_asset_event_alone_starts_the_downstream_dags(live):
    for dag_id in ("nem12_changes", "nem12_daily"):
        live.cluster.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    live.deliver({"landing/a.csv": GOOD})
    run = live.trigger("nem12_backfill", {"prefix": "landing/"})
    assert live.finished("nem12_backfill", run) == "success"
    recorded = live.cluster.wait_for(
        "nem12_changes to record the change",
        lambda: live.sql(
            "SELECT source_dag_id, files, inserted FROM nem12.table_change "
            f"WHERE source_run_id = '{run}'"
        ),
    )
    assert recorded == [("nem12_backfill", 1, len(keys_of(GOOD)))]

    def rollup_against_meter_day() -> list[tuple]:
        rows = live.sql(
            "SELECT nmi, nmi_suffix, interval_date, r.total = d.total, r.file_id = d.file_id "
            "FROM nem12.day_rollup r FULL JOIN nem12.meter_day d "
            "USING (nmi, nmi_suffix, interval_date) ORDER BY 1, 2, 3"
        )
        return rows if rows and all(row[3] is not None for row in rows) else []

    rolled_up = live.cluster.wait_for("nem12_daily to roll the days up", rollup_against_meter_day)
    days = sorted({(nmi, suffix, start.date()) for nmi, suffix, start in keys_of(GOOD)})
    assert rolled_up == [(*day, True, True) for day in days]
    for dag_id in ("nem12_changes", "nem12_daily"):
        runs = live.cluster.request("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
        assert {r["run_type"] for r in runs} == {"asset_triggered"}, dag_id
    daily = live.cluster.request("GET", "/api/v2/dags/nem12_daily/dagRuns")["dag_runs"]
    assert live.finished("nem12_daily", daily[0]["dag_run_id"]) == "success"


def test_the_review_plugin_is_loaded_by_the_api_server_and_needs_a_login(live):
    plugins = live.cluster.request("GET", "/api/v2/plugins")["plugins"]
    ours = next(p for p in plugins if p["name"] == "nem12_review")
    assert {(v["destination"], v["url_route"]) for v in ours["external_views"]} == {
        ("nav", "nem12"),
        ("dag_run", "nem12-run"),
    }
    assert [a["url_prefix"] for a in ours["fastapi_apps"]] == ["/nem12"]
    assert live.cluster.request("GET", "/api/v2/plugins/importErrors")["import_errors"] == []
    live.deliver({"landing/bad.csv": BROKEN})
    run = live.trigger("nem12_backfill", {"prefix": "landing/"})
    assert live.finished("nem12_backfill", run) == "success"
    files = live.cluster.fetch("GET", "/nem12/?status=rejected").decode()
    assert "landing/bad.csv" in files and "1 files" in files
    tab = live.cluster.fetch("GET", f"/nem12/runs/{urllib.parse.quote(run, safe='')}").decode()
    assert "landing/bad.csv" in tab
    file_id = live.sql("SELECT file_id FROM nem12.file_ledger")[0][0]
    pages = (
        files
        + tab
        + "".join(
            live.cluster.fetch("GET", path).decode()
            for path in (
                f"/nem12/files/{file_id}",
                f"/nem12/files/{file_id}/findings.csv",
                "/nem12/rules",
            )
        )
    )
    for secret in (live.services.postgres_password, LOCAL_S3_SECRET, live.cluster.password):
        assert secret not in pages
    with pytest.raises(urllib.error.HTTPError) as refused:
        live.cluster.fetch("GET", "/nem12/", auth=False)
    assert refused.value.code in (401, 403)
