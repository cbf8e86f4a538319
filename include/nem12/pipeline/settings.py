"""Every ``NEM12_*`` setting, read from the environment in one place.

``Settings.from_env()`` reads them all at once; a value that does not parse
stops with ``SettingsError``, one line naming the variable. Nothing else in
the package reads ``NEM12_*`` variables. Importing this module costs nothing
(standard library only), so DAG files may read their settings at parse time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nem12.format.parsing import ParseConfig
    from nem12.format.reading import ReadLimits

#: The checkout's expectation suites (an install says where it keeps them).
CHECKOUT_SUITES_DIR = Path(__file__).resolve().parents[3] / "great_expectations" / "expectations"
#: The checkout's alert config (versioned in git; the Variable nem12_alert_config wins).
CHECKOUT_ALERT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "alerts.json"

_TRUE = ("1", "true", "yes", "on", "y", "t")
_FALSE = ("0", "false", "no", "off", "n", "f", "")


class SettingsError(ValueError):
    """A ``NEM12_*`` variable holds a value that cannot be used."""


def _setting(variable: str, default: Any, meaning: str, minimum: float | None = None) -> Any:
    return field(
        default=default, metadata={"variable": variable, "meaning": meaning, "minimum": minimum}
    )


@dataclass(frozen=True)
class Settings:
    """The pipeline's settings; each field's ``NEM12_*`` variable is in its metadata."""

    bucket: str = _setting("NEM12_BUCKET", "nem12", "the bucket files land in")
    landing_prefix: str = _setting("NEM12_LANDING_PREFIX", "landing/", "where files arrive")
    rejected_prefix: str = _setting(
        "NEM12_REJECTED_PREFIX", "rejected/", "where rejected files go, findings beside them"
    )
    archive_prefix: str = _setting("NEM12_ARCHIVE_PREFIX", "archive/", "where loaded files go")
    held_prefix: str = _setting(
        "NEM12_HELD_PREFIX", "held/", "the pipeline's own copy of each registered version"
    )
    reports_dir: str = _setting(
        "NEM12_REPORTS_DIR",
        "reports",
        "where validation reports go: a folder or s3://bucket/prefix",
    )
    suites_dir: Path = _setting(  # noqa: RUF009 (a Path is immutable)
        "NEM12_SUITES_DIR", CHECKOUT_SUITES_DIR, "the Great Expectations suites (JSON)"
    )
    alert_config: Path = _setting(  # noqa: RUF009 (a Path is immutable)
        "NEM12_ALERT_CONFIG",
        CHECKOUT_ALERT_CONFIG,
        "the alert rules and notifiers (JSON); the Airflow Variable nem12_alert_config wins",
    )
    group_bytes: int = _setting(
        "NEM12_GROUP_BYTES", 64 << 20, "bytes of small files one load task takes", 1
    )
    group_files: int = _setting("NEM12_GROUP_FILES", 50, "files one load task takes at most", 1)
    stage_with_validation_bytes: int = _setting(
        "NEM12_STAGE_WITH_VALIDATION_BYTES",
        1 << 20,
        "files up to this size are staged by the validate task from its own parse "
        "(0: every file goes to a load task)",
        0,
    )
    hold_in_database_bytes: int = _setting(
        "NEM12_HOLD_IN_DATABASE_BYTES",
        1 << 20,
        "registered versions up to this size are held in PostgreSQL, not under the held "
        "prefix (two S3 requests fewer a file; 0: every version in S3)",
        0,
    )
    history_days: int | None = _setting(
        "NEM12_HISTORY_DAYS",
        None,
        "days a replaced day version is kept for history (unset: for ever)",
        0,
    )
    reject_file_on_block_error: bool = _setting(
        "NEM12_REJECT_FILE_ON_BLOCK_ERROR", False, "a block-scope error rejects the whole file"
    )
    max_member_bytes: int = _setting(
        "NEM12_MAX_MEMBER_BYTES", 8 << 30, "largest uncompressed size of one file or member", 1
    )
    max_ratio: float = _setting(
        "NEM12_MAX_RATIO", 500.0, "compression ratio beyond which a member is a zip bomb", 1
    )
    max_depth: int = _setting("NEM12_MAX_DEPTH", 3, "archives inside archives", 0)
    max_members: int = _setting("NEM12_MAX_MEMBERS", 10_000, "members in one archive", 1)
    max_line_bytes: int = _setting("NEM12_MAX_LINE_BYTES", 1 << 20, "longest line", 1)
    chunk_bytes: int | None = _setting(
        "NEM12_CHUNK_BYTES",
        None,
        "bytes parsed at a time (6 MiB for the nem12 command, 2 MiB in tasks)",
        1,
    )
    sense_poke_seconds: int = _setting(
        "NEM12_SENSE_POKE_SECONDS", 300, "how often the hourly sensor looks", 1
    )
    sense_timeout_seconds: int = _setting(
        "NEM12_SENSE_TIMEOUT_SECONDS", 50 * 60, "when the sensor gives the hour up", 1
    )
    load_slots: int | None = _setting(
        "NEM12_LOAD_SLOTS", None, "slots of the nem12_load pool (make airflow; one per core)", 1
    )
    worker_name: str | None = _setting(
        "NEM12_WORKER_NAME", None, "a Celery worker's name in task instances"
    )
    dsn: str | None = _setting(
        "NEM12_DSN", None, "PostgreSQL for nem12 status (else AIRFLOW_CONN_NEM12_POSTGRES)"
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Every setting from ``environ`` (the process environment by default)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for item in fields(cls):
            variable = item.metadata["variable"]
            if variable in env and (value := _parsed(variable, env[variable], item)) is not None:
                values[item.name] = value
        return cls(**values)

    def read_limits(self, chunk_bytes: int | None = None) -> ReadLimits:
        """Reading limits; ``chunk_bytes`` is the caller's default when none is set."""
        from nem12.format.reading import ReadLimits

        limits = {
            "max_member_bytes": self.max_member_bytes,
            "max_ratio": self.max_ratio,
            "max_depth": self.max_depth,
            "max_members": self.max_members,
            "max_line_bytes": self.max_line_bytes,
        }
        chunk = self.chunk_bytes or chunk_bytes
        return ReadLimits(**limits, **({"chunk_bytes": chunk} if chunk else {}))

    def parse_config(self, keep_records: bool = False, **overrides: Any) -> ParseConfig:
        """How the pipeline's tasks parse: smaller chunks than the command (a third of
        the memory for a parse that is a small part of a load)."""
        from nem12.format.parsing import ParseConfig

        return ParseConfig(
            limits=self.read_limits(chunk_bytes=TASK_CHUNK_BYTES),
            reject_file_on_block_error=self.reject_file_on_block_error,
            keep_records=keep_records,
            **overrides,
        )


#: Tasks parse in 2 MiB chunks (~250 MB at peak), unless NEM12_CHUNK_BYTES says otherwise.
TASK_CHUNK_BYTES = 2 << 20


def variables() -> dict[str, str]:
    """Every variable with its meaning, for the README's table and its test."""
    return {item.metadata["variable"]: item.metadata["meaning"] for item in fields(Settings)}


def _parsed(variable: str, raw: str, item: Any) -> Any:
    kind = str(item.type).replace(" | None", "")
    text = raw.strip()
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise SettingsError(f"{variable} must be true or false (or yes/no, 1/0), not {raw!r}")
    if kind in ("str", "Path"):
        if not text:
            if item.default is None:
                return None
            raise SettingsError(f"{variable} must not be empty")
        return Path(text) if kind == "Path" else text
    number: float
    try:
        number = int(text) if kind == "int" else float(text)
    except ValueError:
        what = "a whole number" if kind == "int" else "a number"
        raise SettingsError(f"{variable} must be {what}, not {raw!r}") from None
    minimum = item.metadata["minimum"]
    if minimum is not None and number < minimum:
        raise SettingsError(f"{variable} must be at least {minimum:g}, not {raw!r}")
    return number
