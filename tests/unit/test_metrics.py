"""nem12.* metrics reach a real StatsD listener (UDP on loopback) through Airflow's backend."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from nem12.pipeline import metrics
from nem12.pipeline.steps import Registered, Validation
from nem12.warehouse.merge import MergeCounts


@pytest.fixture
def statsd_listener() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(0.5)
        yield listener


def received(listener: socket.socket) -> list[str]:
    """Every metric line sent so far (one datagram per metric, or several lines in one)."""
    lines: list[str] = []
    while True:
        try:
            data = listener.recv(65536)
        except TimeoutError:
            return lines
        lines.extend(data.decode().splitlines())


@pytest.fixture
def airflow_statsd(statsd_listener, monkeypatch) -> Iterator[socket.socket]:
    """Airflow's metrics configured as a deployment would, by environment, then set up
    the way its task runner does at start; the previous backend is put back after."""
    from airflow.sdk._shared.observability.metrics import stats as shared_stats
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    port = statsd_listener.getsockname()[1]
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(port))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    saved = (shared_stats._factory, shared_stats._backend, shared_stats._export_legacy_names)
    # what airflow.sdk.execution_time.task_runner.main does before running a task
    stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )
    backend = shared_stats._get_backend()
    assert type(backend).__name__ == "SafeStatsdLogger", backend  # not the no-op logger
    yield statsd_listener
    shared_stats._factory, shared_stats._backend, shared_stats._export_legacy_names = saved


def test_step_metrics_arrive_as_statsd_lines(airflow_statsd):
    files = [
        Registered(1, "landing/a.csv", 10, "registered"),
        Registered(2, "landing/b.csv", 10, "registered"),
        Registered(3, "landing/a-again.csv", 10, "duplicate"),
    ]
    metrics.files_registered(files)
    metrics.files_validated(
        Validation(
            accepted=files[:1],
            rejected=files[1:2],
            errors=4,
            warnings=7,
            rejected_blocks=2,
        )
    )
    metrics.readings_staged({1: 96, 5: 48})
    merged = MergeCounts(
        inserted=100, updated=20, unchanged=5, superseded=3, status={1: "loaded", 5: "partial"}
    )
    with metrics.merge_timer():
        time.sleep(0.02)
    metrics.readings_merged(merged)

    lines = received(airflow_statsd)
    timers = [line for line in lines if line.endswith("|ms")]
    assert [line for line in lines if not line.endswith("|ms")] == [
        "airflow.nem12.files.registered:2|c",
        "airflow.nem12.files.duplicate:1|c",
        "airflow.nem12.files.accepted:1|c",
        "airflow.nem12.files.rejected:1|c",
        "airflow.nem12.findings.error:4|c",
        "airflow.nem12.findings.warning:7|c",
        "airflow.nem12.blocks.rejected:2|c",
        "airflow.nem12.files.staged:2|c",
        "airflow.nem12.readings.staged:144|c",
        "airflow.nem12.readings.inserted:100|c",
        "airflow.nem12.readings.updated:20|c",
        "airflow.nem12.readings.unchanged:5|c",
        "airflow.nem12.readings.superseded:3|c",
        "airflow.nem12.files.loaded:1|c",
        "airflow.nem12.files.partial:1|c",
    ]
    assert len(timers) == 1
    name, _, value = timers[0].removesuffix("|ms").partition(":")
    assert name == "airflow.nem12.merge.duration"
    assert 20 <= float(value) < 5000
    sent = {line.split(":")[0].removeprefix("airflow.") for line in lines}
    assert sent == set(metrics.COUNTERS) | set(metrics.TIMERS)


def test_nothing_is_sent_with_metrics_off(statsd_listener, monkeypatch):
    from airflow.sdk._shared.observability.metrics import stats as shared_stats
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "False")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(statsd_listener.getsockname()[1]))
    saved = (shared_stats._factory, shared_stats._backend, shared_stats._export_legacy_names)
    stats.initialize(
        factory=stats_utils.get_stats_factory(),
        export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
    )
    try:
        metrics.readings_staged({1: 96})
        with metrics.merge_timer():
            pass
    finally:
        shared_stats._factory, shared_stats._backend, shared_stats._export_legacy_names = saved
    assert received(statsd_listener) == []
