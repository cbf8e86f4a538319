"""The checks, each registered with the rule it reports and the frame it reads.

A check is a pure function: it reads one prepared frame of a chunk (or the
header record) and returns its finding rows, one per offending record. What
it needs of the rest of the file (the first 900's line, dates seen earlier)
the driver puts into that frame's columns first. The driver runs each frame's
checks in the order they were registered.

Frames: ``lines`` every line of the chunk (``line``, ``raw``, ``record_type``,
``block``, ``first_record_line``, ``end_line``); ``header`` the file's first record
(a ``HeaderRecord``, read as a 100); ``blocks`` the new 200 records (``blocks_frame``);
``days`` the 300 records (``records.days_frame`` with ``seen_before``);
``events`` the 400 records (``records.events_frame``); ``variable_days`` the V
days with their 400 coverage (``records.variable_days``); ``values`` the
interval values that are not decimal numbers (``explode.explode``). NEM13:
``reads`` the 250 records (``reads.reads_frame`` with ``repeated``);
``read_qualities`` their previous and current quality fields, one row each
(``reads.read_qualities``); ``read_b2b`` the 550 records (``reads.read_b2b_frame``).
The ``lines`` frame also has the file's ``version``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, NamedTuple, TypeVar, get_args

import polars as pl

Frame = Literal[
    "lines",
    "header",
    "blocks",
    "days",
    "events",
    "variable_days",
    "values",
    "reads",
    "read_qualities",
    "read_b2b",
]
FRAMES: tuple[Frame, ...] = get_args(Frame)


class FindingRow(NamedTuple):
    """A finding of a check that reads Python objects rather than a frame."""

    message: str
    line: int | None
    record_type: str | None


#: Frame checks return line, block, nmi, record_type and message columns.
FindingRows = pl.LazyFrame | pl.DataFrame | list[FindingRow]
Check = Callable[..., FindingRows]
C = TypeVar("C", bound=Check)

#: (frame, rule) -> check, in registration order.
CHECKS: dict[tuple[Frame, str], Check] = {}
#: (frame, rule) -> what every row the check finds meets, for the checks that say (``check``).
WHEN: dict[tuple[Frame, str], pl.Expr] = {}

#: Rules reported while reading bytes and archives (``reading.ReadError``, member warnings).
RAISED_BY_READING = frozenset(
    {
        "input_unreadable",
        "archive_invalid",
        "archive_empty",
        "archive_limit",
        "member_name_unsafe",
        "line_too_long",
    }
)
#: Rules the driver reports: decoding, and what only the end of the file can tell.
RAISED_BY_DRIVER = frozenset({"encoding", "file_empty", "end_missing", "header_only"})


def check(
    rule: str,
    on: Frame | tuple[Frame, ...],
    when: pl.Expr | Mapping[Frame, pl.Expr] | None = None,
) -> Callable[[C], C]:
    """Register the decorated function as the check of ``rule`` on the frame(s) ``on``.

    ``when``: a condition every row the check finds meets (or one per frame, where
    a frame has a cheaper way to say it). The driver tests the conditions of a
    frame's checks in one query and skips those no row meets: on a chunk without
    findings, building and running each check costs more than the checking.
    """
    frames = (on,) if isinstance(on, str) else on

    def register(function: C) -> C:
        for frame in frames:
            if frame not in FRAMES:
                raise ValueError(f"{function.__name__}: unknown frame {frame!r}")
            if (frame, rule) in CHECKS:
                raise ValueError(f"rule {rule} already has a check on {frame}")
            CHECKS[(frame, rule)] = function
            condition = when.get(frame) if isinstance(when, Mapping) else when
            if condition is not None:
                WHEN[(frame, rule)] = condition
        return function

    return register


def checks_on(frame: Frame) -> list[tuple[str, Check, pl.Expr | None]]:
    """The (rule, check, when) of the checks that read ``frame``, in registration order."""
    return [(rule, run, WHEN.get((on, rule))) for (on, rule), run in CHECKS.items() if on == frame]


def finding_rows(
    frame: pl.LazyFrame, message: pl.Expr, record_type: str | None = None
) -> pl.LazyFrame:
    """``frame``'s rows as findings: their line, block, nmi and record type, and ``message``."""
    record = pl.col("record_type") if record_type is None else pl.lit(record_type)
    return frame.select("line", "block", "nmi", record_type=record, message=message)
