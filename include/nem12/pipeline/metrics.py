"""The pipeline's StatsD metrics (``nem12.*``), sent through Airflow's own metrics backend.

Airflow's task runner configures that backend from ``[metrics]`` (``statsd_on``,
``statsd_host``, ``statsd_port``, ``statsd_prefix``), so the names arrive as
``<prefix>.nem12.…``. Without Airflow, or with metrics off, nothing is sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nem12.pipeline.steps import Registered, Validation
    from nem12.warehouse.merge import MergeCounts

PREFIX = "nem12"

#: Every metric name, for people wiring dashboards and for the tests.
COUNTERS = (
    "nem12.files.registered",
    "nem12.files.duplicate",
    "nem12.files.accepted",
    "nem12.files.rejected",
    "nem12.files.staged",
    "nem12.files.loaded",
    "nem12.files.partial",
    "nem12.findings.error",
    "nem12.findings.warning",
    "nem12.blocks.rejected",
    "nem12.readings.staged",
    "nem12.readings.inserted",
    "nem12.readings.updated",
    "nem12.readings.unchanged",
    "nem12.readings.superseded",
)
TIMERS = ("nem12.merge.duration",)


def _stats() -> Any:
    """Airflow's stats module, or None where Airflow is not installed."""
    try:
        from airflow.sdk.observability import stats
    except ImportError:
        return None
    return stats


def _count(name: str, count: int) -> None:
    stats = _stats()
    if stats is not None:
        stats.incr(f"{PREFIX}.{name}", count)


def files_registered(files: Iterable[Registered]) -> None:
    """Register step: new files to parse and duplicates (content already taken)."""
    statuses = [f.status for f in files]
    _count("files.registered", statuses.count("registered"))
    _count("files.duplicate", statuses.count("duplicate"))


def files_validated(outcome: Validation) -> None:
    """Validate step: accepted and rejected files, findings by severity, rejected blocks."""
    _count("files.accepted", len(outcome.accepted))
    _count("files.rejected", len(outcome.rejected))
    _count("findings.error", outcome.errors)
    _count("findings.warning", outcome.warnings)
    _count("blocks.rejected", outcome.rejected_blocks)


def readings_staged(staged: dict[int, int]) -> None:
    """Parse-and-load step: files staged and their readings (file id -> readings)."""
    _count("files.staged", len(staged))
    _count("readings.staged", sum(staged.values()))


def readings_merged(counts: MergeCounts) -> None:
    """Merge step: readings by outcome and files that ended loaded or partial."""
    _count("readings.inserted", counts.inserted)
    _count("readings.updated", counts.updated)
    _count("readings.unchanged", counts.unchanged)
    _count("readings.superseded", counts.superseded)
    ended = list(counts.status.values())
    _count("files.loaded", ended.count("loaded"))
    _count("files.partial", ended.count("partial"))


def merge_timer() -> AbstractContextManager[Any]:
    """Times the block as ``nem12.merge.duration`` (milliseconds)."""
    stats = _stats()
    return nullcontext() if stats is None else stats.timer(f"{PREFIX}.merge.duration")
