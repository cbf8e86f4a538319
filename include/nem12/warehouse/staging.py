"""Staging: a file's accepted rows COPYed in, per file and member: NEM12 days into
``day_staging``, NEM13 reads into ``read_staging``.

Parallel loads write only here (rows keyed by their file); the merge reads them.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from itertools import groupby

import polars as pl
import psycopg

from nem12.format import spec
from nem12.format.output import decimal_as_text, prefetched
from nem12.format.parsing import Parse
from nem12.warehouse.schema import DAY_FIELDS, DAY_KEY, READ_FIELDS, READ_KEY, SCHEMA

#: Staging columns in the order COPY receives them (after file_id and member).
STAGED_COLUMNS = ("line_number", *DAY_KEY, *DAY_FIELDS)
STAGED_READ_COLUMNS = ("line_number", *READ_KEY, *READ_FIELDS)
#: Each version's staging table and columns.
_STAGING = {
    "NEM12": ("day_staging", STAGED_COLUMNS),
    "NEM13": ("read_staging", STAGED_READ_COLUMNS),
}


_FIELD = {"interval_values": "values"}

#: Days per COPY message, and how many messages a thread formats ahead of the
#: one being sent: parsing overlaps the server's ingest.
COPY_DAYS = 1 << 12
COPY_PIECES_AHEAD = 4


def _copy_text(version: str, batch: pl.DataFrame) -> Iterator[bytes]:
    """Rows (with their file_id and member) as COPY csv: exact decimals as written,
    ISO timestamps with their offset."""
    _, staged = _STAGING[version]
    columns = [
        pl.col("file_id"),
        pl.col("member"),
        *[
            decimal_as_text(c)
            if c == "total" or c in spec.READ_DECIMAL_COLUMNS
            else pl.col(_FIELD.get(c, c)).cast(pl.String).alias(c)
            for c in staged
        ],
    ]
    for piece in batch.iter_slices(COPY_DAYS):
        text = io.BytesIO()
        piece.select(columns).write_csv(text, include_header=False, null_value="\\N")
        yield text.getvalue()


def _of(batch: pl.DataFrame, file_id: int, member: int) -> pl.DataFrame:
    """The rows with the file and member they came from."""
    return batch.with_columns(file_id=pl.lit(file_id), member=pl.lit(member))


class _Pieces:
    """COPY text of a run of members of one version; counts their rows, notes the rejected."""

    def __init__(
        self, file_id: int, version: str, run: Iterable[tuple[int, Parse]], rejected: list[int]
    ) -> None:
        self.file_id, self.version, self.run, self.rejected = file_id, version, run, rejected
        self.rows = 0

    def __iter__(self) -> Iterator[bytes]:
        for member, parse in self.run:
            for batch in parse.batches():
                yield from _copy_text(self.version, _of(batch, self.file_id, member))
            result = parse.result
            if result.status == "rejected":
                self.rejected.append(member)
            else:
                self.rows += result.readings


def _copy_sql(version: str) -> str:
    """The COPY of a version's staged rows (file_id and member first)."""
    table, staged = _STAGING[version]
    columns = ", ".join(("file_id", "member", *staged))
    return f"COPY {SCHEMA}.{table} ({columns}) FROM STDIN (FORMAT csv, NULL '\\N')"


def _lock_files(cursor: psycopg.Cursor, file_ids: list[int]) -> None:
    """Overlapping runs staging the same file take turns; the second replaces the rows."""
    cursor.execute(
        "SELECT pg_advisory_xact_lock(hashtext('nem12 stage'), (id %% 2147483647)::int) "
        "FROM (SELECT id FROM unnest(%s::bigint[]) AS id ORDER BY id) AS ids",
        (sorted(file_ids),),
    )


def stage_parsed(conn: psycopg.Connection, files: list[tuple[int, list[Parse]]]) -> dict[int, int]:
    """``stage_days`` for many files already parsed in full (validation's small files):
    one transaction and one COPY per version for all of them; readings plus reads
    per file id."""
    if not files:
        return {}
    rows: dict[int, int] = {}
    batches: dict[str, list[pl.DataFrame]] = {version: [] for version in _STAGING}
    for file_id, parses in files:
        rows[file_id] = 0
        for member, parse in enumerate(parses):
            if parse.result.status == "rejected":
                continue
            rows[file_id] += parse.result.readings
            batches[parse.version].extend(_of(b, file_id, member) for b in parse.batches())
    with conn.transaction(), conn.cursor() as cursor:
        _lock_files(cursor, list(rows))
        for table, _ in _STAGING.values():
            cursor.execute(f"DELETE FROM {SCHEMA}.{table} WHERE file_id = ANY(%s)", (list(rows),))
        for version, frames in batches.items():
            if not frames:
                continue
            with cursor.copy(_copy_sql(version)) as copy:
                for text in _copy_text(version, pl.concat(frames, how="vertical_relaxed")):
                    copy.write(text)
    return rows


def stage_days(conn: psycopg.Connection, file_id: int, parses: Iterable[Parse]) -> int:
    """Replace the file's staging rows with the accepted rows of its members: NEM12
    days and NEM13 reads; returns its readings plus its reads.

    One transaction: a load that dies leaves the previous rows, never half of
    them, so a retried load is idempotent. A member rejected only at its end
    (a missing 900, say) has its rows removed before the commit.
    """
    rows = 0
    rejected: dict[str, list[int]] = {"NEM12": [], "NEM13": []}
    with conn.transaction(), conn.cursor() as cursor:
        _lock_files(cursor, [file_id])
        # a retry after a committed load finds its rows
        for table, _ in _STAGING.values():
            cursor.execute(f"DELETE FROM {SCHEMA}.{table} WHERE file_id = %s", (file_id,))
        # members one after another (an archive's are read in turn), a COPY per run
        # of members of one version
        for version, run in groupby(enumerate(parses), key=lambda item: item[1].version):
            pieces = _Pieces(file_id, version, run, rejected[version])
            with cursor.copy(_copy_sql(version)) as copy:
                for text in prefetched(pieces, depth=COPY_PIECES_AHEAD):  # parse while it sends
                    copy.write(text)
            rows += pieces.rows
        for version, members in rejected.items():
            if members:
                table, _ = _STAGING[version]
                cursor.execute(
                    f"DELETE FROM {SCHEMA}.{table} WHERE file_id = %s AND member = ANY(%s)",
                    (file_id, members),
                )
    return rows
