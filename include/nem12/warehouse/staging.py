"""Staging: a file's accepted readings COPYed into ``reading_staging``, per file and member.

Parallel loads write only here (rows keyed by their file); the merge reads
them and the stream spans in ``staged_stream``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

import polars as pl
import psycopg

from nem12.format.output import prefetched, value_as_text
from nem12.format.parsing import Parse
from nem12.warehouse.schema import SCHEMA

#: Staging columns in the order COPY receives them (after file_id).
STAGED_COLUMNS = (
    "nmi",
    "nmi_suffix",
    "interval_start",
    "interval_length",
    "value",
    "uom",
    "quality_method",
    "reason_code",
    "reason_description",
    "update_datetime",
)


#: Rows per COPY message, and how many messages a thread formats ahead of the
#: one being sent: parsing overlaps the server's ingest in ~30 MB of text.
COPY_ROWS = 1 << 16
COPY_PIECES_AHEAD = 4


def _copy_text(file_id: int, member: int, batch: pl.DataFrame) -> Iterator[bytes]:
    """A batch as COPY csv: exact decimals, ISO timestamps with their UTC offset."""
    columns = [
        pl.lit(file_id).alias("file_id"),
        pl.lit(member).alias("member"),
        *[value_as_text() if c == "value" else pl.col(c).cast(pl.String) for c in STAGED_COLUMNS],
    ]
    for piece in batch.iter_slices(COPY_ROWS):
        text = io.BytesIO()
        piece.select(columns).write_csv(text, include_header=False, null_value="\\N")
        yield text.getvalue()


def _stream_spans(batch: pl.DataFrame) -> pl.DataFrame:
    return batch.group_by("nmi", "nmi_suffix").agg(
        first_start=pl.col("interval_start").min(),
        last_start=pl.col("interval_start").max(),
        readings=pl.len(),
    )


def stage_readings(conn: psycopg.Connection, file_id: int, parses: Iterable[Parse]) -> int:
    """Replace the file's staging rows with the accepted readings of its members.

    One transaction: a load that dies leaves the previous rows, never half of
    them, so a retried load is idempotent. A member rejected only at its end
    (a missing 900, say) has its rows removed before the commit. Each kept
    member's streams and their spans go to ``staged_stream`` for the merge.
    """
    rows = 0
    rejected: list[int] = []
    spans: list[pl.DataFrame] = []
    columns = ", ".join(("file_id", "member", *STAGED_COLUMNS))
    with conn.transaction(), conn.cursor() as cursor:
        # Overlapping runs loading the same file take turns; the second replaces the rows.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtext('nem12 stage'), (%s %% 2147483647)::int)",
            (file_id,),
        )
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {SCHEMA}.staged_stream WHERE file_id = %(id)s) "
            f"OR EXISTS (SELECT 1 FROM {SCHEMA}.file_ledger WHERE file_id = %(id)s "
            "AND status = 'staged')",
            {"id": file_id},
        )
        restaging = cursor.fetchone()
        if restaging and restaging[0]:  # a retry after a committed load; else nothing to scan
            for table in ("reading_staging", "staged_stream"):
                cursor.execute(f"DELETE FROM {SCHEMA}.{table} WHERE file_id = %s", (file_id,))

        def pieces() -> Iterator[bytes]:
            nonlocal rows
            for member, parse in enumerate(parses):
                member_spans: list[pl.DataFrame] = []
                for batch in parse.batches():
                    yield from _copy_text(file_id, member, batch)
                    member_spans.append(_stream_spans(batch))
                result = parse.result
                if result.status == "rejected":
                    rejected.append(member)
                else:
                    rows += result.readings
                    spans.extend(s.with_columns(member=pl.lit(member)) for s in member_spans)

        with cursor.copy(
            f"COPY {SCHEMA}.reading_staging ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')"
        ) as copy:
            for text in prefetched(pieces(), depth=COPY_PIECES_AHEAD):  # parse while it sends
                copy.write(text)
        if rejected:
            cursor.execute(
                f"DELETE FROM {SCHEMA}.reading_staging WHERE file_id = %s AND member = ANY(%s)",
                (file_id, rejected),
            )
        if spans:
            streams = (
                pl.concat(spans)
                .group_by("member", "nmi", "nmi_suffix")
                .agg(
                    pl.col("first_start").min(),
                    pl.col("last_start").max(),
                    pl.col("readings").sum(),
                )
                .sort("member", "nmi", "nmi_suffix")
            )
            cursor.executemany(
                f"INSERT INTO {SCHEMA}.staged_stream (file_id, member, nmi, nmi_suffix, "
                "first_start, last_start, readings) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [(file_id, *row) for row in streams.iter_rows()],
            )
    return rows
