"""Staging: a file's accepted days COPYed into ``day_staging``, per file and member.

Parallel loads write only here (rows keyed by their file); the merge reads them.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import polars as pl
import psycopg

from nem12.format.output import decimal_as_text, prefetched
from nem12.format.parsing import Parse
from nem12.warehouse.schema import DAY_FIELDS, DAY_KEY, SCHEMA

#: Staging columns in the order COPY receives them (after file_id and member).
STAGED_COLUMNS = ("line_number", *DAY_KEY, *DAY_FIELDS)


_FIELD = {"interval_values": "values"}

#: Days per COPY message, and how many messages a thread formats ahead of the
#: one being sent: parsing overlaps the server's ingest.
COPY_DAYS = 1 << 12
COPY_PIECES_AHEAD = 4


def _copy_text(file_id: int, member: int, batch: pl.DataFrame) -> Iterator[bytes]:
    """Day rows as COPY csv: exact decimals as written, ISO timestamps with their offset."""
    columns = [
        pl.lit(file_id).alias("file_id"),
        pl.lit(member).alias("member"),
        *[
            decimal_as_text(c)
            if c == "total"
            else pl.col(_FIELD.get(c, c)).cast(pl.String).alias(c)
            for c in STAGED_COLUMNS
        ],
    ]
    for piece in batch.iter_slices(COPY_DAYS):
        text = io.BytesIO()
        piece.select(columns).write_csv(text, include_header=False, null_value="\\N")
        yield text.getvalue()


def stage_days(conn: psycopg.Connection, file_id: int, parses: Iterable[Parse]) -> int:
    """Replace the file's staging rows with the accepted days of its members; its readings.

    One transaction: a load that dies leaves the previous rows, never half of
    them, so a retried load is idempotent. A member rejected only at its end
    (a missing 900, say) has its rows removed before the commit.
    """
    rows = 0
    rejected: list[int] = []
    columns = ", ".join(("file_id", "member", *STAGED_COLUMNS))
    with conn.transaction(), conn.cursor() as cursor:
        # Overlapping runs loading the same file take turns; the second replaces the rows.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtext('nem12 stage'), (%s %% 2147483647)::int)",
            (file_id,),
        )
        # a retry after a committed load finds its rows
        cursor.execute(f"DELETE FROM {SCHEMA}.day_staging WHERE file_id = %s", (file_id,))

        def pieces() -> Iterator[bytes]:
            nonlocal rows
            for member, parse in enumerate(parses):
                for batch in parse.batches():
                    yield from _copy_text(file_id, member, batch)
                result = parse.result
                if result.status == "rejected":
                    rejected.append(member)
                else:
                    rows += result.readings

        with cursor.copy(
            f"COPY {SCHEMA}.day_staging ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')"
        ) as copy:
            for text in prefetched(pieces(), depth=COPY_PIECES_AHEAD):  # parse while it sends
                copy.write(text)
        if rejected:
            cursor.execute(
                f"DELETE FROM {SCHEMA}.day_staging WHERE file_id = %s AND member = ANY(%s)",
                (file_id, rejected),
            )
    return rows
