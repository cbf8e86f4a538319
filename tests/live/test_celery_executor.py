"""The pipeline on a Celery cluster: Redis broker, two workers, the same DAGs.

Loads spread over both workers; a worker SIGKILLed in the middle of a load
has its task retried on the other; a scheduler killed and restarted in the
middle of a run lets the run complete. The table ends exact each time.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from nem12.devtools.generate import GeneratorSpec, generate_bytes
from tests.faults.conftest import fault_tally
from tests.faults.scenarios import keys_of
from tests.live.conftest import FAST, Live, record_timeline, start_live

__all__ = ["fault_tally"]

SIX = {
    f"landing/NEM12#{n:04d}#MDPGEN#RETAILER.csv": generate_bytes(
        GeneratorSpec(nmis=4, days=20, seed=n)
    )
    for n in range(6)
}
#: Big enough that its load lasts seconds: a moment to kill a worker in.
MEDIUM = generate_bytes(GeneratorSpec(nmis=20, days=60, interval_length=5, seed=3, value_pool=16))


@pytest.fixture(scope="module")
def cluster(live_services) -> Iterator[Live]:
    yield from start_live(live_services, "CeleryExecutor", FAST)


def exact(live: Live, files: dict[str, bytes]) -> set[tuple]:
    keys = set().union(*(keys_of(f) for f in files.values()))
    assert sorted(live.table_keys()) == sorted(keys)
    assert sorted(live.ledger()) == sorted((k, "loaded") for k in files)
    return keys


def test_loads_of_one_run_spread_over_both_workers(live):
    live.deliver(SIX)
    run = live.trigger("nem12_backfill", {"prefix": "landing/"})
    assert live.finished("nem12_backfill", run) == "success"
    tis = live.task_instances("nem12_backfill", run)
    record_timeline("Celery: six loads over two workers", tis)
    loads = [t for t in tis if t["task_id"] == "parse_and_load"]
    assert {t["hostname"] for t in loads} == {"worker-1", "worker-2"}
    exact(live, SIX)


def test_a_worker_killed_mid_load_has_the_task_retried_on_the_other(live, fault_tally):
    files = {"landing/NEM12#MEDIUM#MDPGEN#RETAILER.csv": MEDIUM}
    live.deliver(files)
    run = live.trigger("nem12_backfill", {"prefix": "landing/"})
    loading = live.cluster.wait_for(
        "a load to start",
        lambda: [
            t
            for t in live.task_instances("nem12_backfill", run)
            if t["task_id"] == "parse_and_load" and t["state"] == "running" and t["hostname"]
        ],
        every=0.2,
    )[0]
    killed = loading["hostname"]
    live.cluster.stop(killed, signal.SIGKILL)
    try:
        assert live.finished("nem12_backfill", run, timeout=400) == "success"
    finally:
        live.cluster.start_worker(killed)
    tis = live.task_instances("nem12_backfill", run)
    record_timeline(f"Celery: {killed} SIGKILLed mid-load", tis)
    load = next(t for t in tis if t["task_id"] == "parse_and_load")
    assert load["try_number"] == 2 and load["hostname"] != killed
    keys = exact(live, files)
    figures = fault_tally.record("Celery worker SIGKILLed mid-load", 1, keys, _conn(live))
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)


def test_a_scheduler_killed_and_restarted_mid_run_lets_the_run_complete(live, fault_tally):
    live.deliver(SIX)
    run = live.trigger("nem12_backfill", {"prefix": "landing/"})
    live.cluster.wait_for(
        "the loads to start",
        lambda: any(
            t["task_id"] == "parse_and_load" and t["state"] == "running"
            for t in live.task_instances("nem12_backfill", run)
        ),
        every=0.2,
    )
    live.cluster.stop("scheduler", signal.SIGKILL)
    live.cluster.start("scheduler", "scheduler")
    assert live.finished("nem12_backfill", run, timeout=400) == "success"
    record_timeline(
        "Celery: scheduler SIGKILLed mid-run", live.task_instances("nem12_backfill", run)
    )
    keys = exact(live, SIX)
    figures = fault_tally.record("scheduler SIGKILLed mid-run, restarted", 1, keys, _conn(live))
    assert (figures.readings_lost, figures.readings_duplicated) == (0, 0)


def _conn(live: Live):
    import psycopg

    return psycopg.connect(live.services.postgres_dsn, autocommit=True)
