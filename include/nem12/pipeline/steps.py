"""The pipeline's steps, one function per DAG task, free of Airflow.

Each step takes a psycopg connection and a boto3 S3 client and passes ledger
ids, never data, to the next. Every step is safe to run again: a retried
task repeats its work with the same result (ledger upserts, staging rows
replaced per file, moves that tolerate a missing source).
"""

from __future__ import annotations

import fnmatch
import json
import logging
import posixpath
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import polars as pl
import psycopg

from nem12.format.parsing import Parse, ParseResult, parse_source
from nem12.format.reading import record_texts
from nem12.pipeline import storage
from nem12.pipeline.settings import Settings
from nem12.warehouse import ledger, schema, staging
from nem12.warehouse.merge import OUTCOMES, MergeCounts, merge_files

log = logging.getLogger(__name__)


@dataclass
class Registered:
    """A ledger row as steps hand it on: the object version it registered."""

    file_id: int
    key: str
    size: int
    status: str
    etag: str = ""
    sha256: str = ""
    version_id: str | None = None
    #: Finished at registration (a re-sent twin of an archived file): no later step has
    #: anything to do with it.
    retired: bool = False

    def held(self, settings: Settings) -> storage.HeldVersion:
        """Where the pipeline holds this version's bytes: a key of its own, per ledger row."""
        held_key = f"{settings.held_prefix}{self.file_id}/{posixpath.basename(self.key)}"
        return storage.HeldVersion(
            settings.bucket, self.key, self.etag, self.version_id, held_key, self.file_id, self.size
        )


def prepare(conn: psycopg.Connection) -> None:
    """Every task's first step: the warehouse schema, applied if it is missing or older."""
    schema.apply_schema(conn)


def record_runs(
    conn: psycopg.Connection, file_ids: list[int], dag_id: str, run_id: str, task_id: str
) -> None:
    """That a DAG run's task worked on these files (the review view's run tab)."""
    ledger.record_runs(conn, file_ids, dag_id, run_id, task_id)


def record_change(
    conn: psycopg.Connection, dag_id: str, run_id: str, announced_at: object, counts: dict
) -> bool:
    """One announced change of the meter table; False if this event was recorded before."""
    return ledger.record_table_change(conn, dag_id, run_id, announced_at, counts)


def new_objects(
    s3: storage.S3Client, conn: psycopg.Connection, settings: Settings
) -> list[storage.StoredObject]:
    """Objects under the landing prefix that the ledger has not finished with, and the
    versions a run registered but did not finish, whatever their key holds now
    (a run killed before a re-sent file replaced its version under the key)."""
    listed = _unfinished(
        conn, settings, storage.list_objects(s3, settings.bucket, settings.landing_prefix)
    )
    seen = {(o.key, o.etag) for o in listed}
    left = [
        storage.StoredObject(settings.bucket, key, etag, size, first_seen.isoformat())
        for key, etag, size, first_seen in ledger.unfinished_versions(conn, settings.bucket)
        if (key, etag) not in seen
    ]
    return listed + left


def select_objects(
    s3: storage.S3Client,
    conn: psycopg.Connection,
    settings: Settings,
    prefix: str,
    pattern: str = "*",
    arrived_from: str | None = None,
    arrived_to: str | None = None,
    include_finished: bool = False,
) -> list[storage.StoredObject]:
    """A backfill's objects: by prefix, file-name glob and arrival date (inclusive)."""
    chosen = [
        o
        for o in storage.list_objects(s3, settings.bucket, prefix)
        if fnmatch.fnmatchcase(posixpath.basename(o.key), pattern)
        and (arrived_from is None or o.last_modified[:10] >= arrived_from)
        and (arrived_to is None or o.last_modified[:10] <= arrived_to)
    ]
    return chosen if include_finished else _unfinished(conn, settings, chosen)


def _unfinished(
    conn: psycopg.Connection, settings: Settings, listed: list[storage.StoredObject]
) -> list[storage.StoredObject]:
    if not listed:
        return []
    finished = ledger.finished_versions(conn, settings.bucket, sorted({o.key for o in listed}))
    return [o for o in listed if (o.key, o.etag) not in finished]


def register(
    s3: storage.S3Client,
    conn: psycopg.Connection,
    settings: Settings,
    objects: Iterable[storage.StoredObject],
    reprocess: bool = False,
) -> list[Registered]:
    """Ledger rows with size, etag and SHA-256, each version held under a key of its own.

    Only the listed version is read (pinned by its ETag); one replaced or
    removed before it could be read is recorded as ``replaced``. Content
    already taken is a duplicate. ``reprocess`` (backfills) registers content
    again even if it was loaded before.
    """
    registered: list[Registered | None] = []
    to_hold: list[Registered] = []
    twins: list[tuple[Registered, tuple[int, str, str, str]]] = []
    listed = sorted(objects, key=lambda o: o.key)
    rows = ledger.register_files(conn, [(o.bucket, o.key, o.etag, o.size) for o in listed])
    files = [
        Registered(r.file_id, o.key, o.size, r.status, o.etag, r.sha256 or "", r.version_id)
        for o, r in zip(listed, rows, strict=True)
    ]
    # only a landed object is deleted once done; an archived one (a backfill) stays
    archived = ledger.archived_twins(
        conn,
        [
            (o.bucket, o.etag, o.size, r.file_id)
            for o, r in zip(listed, rows, strict=True)
            if r.sha256 is None and not reprocess and _archive_key(settings, o.key)
        ],
    )
    for obj, row, file in zip(listed, rows, files, strict=True):
        if row.status in schema.FINISHED_FOR_GOOD and not reprocess:
            log.info("%s: already finished (file %d, %s)", obj.key, file.file_id, row.status)
            continue
        twin = archived.get(file.file_id)
        if twin is not None:
            twins.append((file, twin))
        elif row.sha256 is None or row.status in schema.FINISHED:
            to_hold.append(file)
            registered.append(None)  # its place, filled once held
        else:
            log.info("%s: registered before as file %d (%s)", obj.key, file.file_id, file.status)
            registered.append(file)
    places = iter([place for place, file in enumerate(registered) if file is None])
    for batch in _batches(to_hold, settings):
        held: list[tuple[int, Registered, Held]] = []
        for version, got, error in storage.each_in_parallel(
            lambda file: _copy_to_held(s3, settings, file), batch
        ):
            place = next(places)
            if _replaced(conn, version, error):
                continue
            assert got is not None
            held.append((place, version, got))
        for place, file in _record_held(conn, held, reprocess):
            registered[place] = file
    return [file for file in registered if file is not None] + _retire_twins(
        s3, conn, settings, twins
    )


def _replaced(conn: psycopg.Connection, version: Registered, error: Exception | None) -> bool:
    """Whether the version could not be read because it was replaced or removed
    (then recorded as replaced); any other error is raised."""
    if isinstance(error, storage.VersionReplaced | storage.ObjectGone):
        if ledger.mark_replaced(conn, version.file_id):
            log.warning(
                "%s: version %s was replaced or removed before it could be read "
                "(file %d, replaced): %s",
                version.key,
                version.etag,
                version.file_id,
                error,
            )
        return True
    if error is not None:
        raise error
    return False


def _retire_twins(
    s3: storage.S3Client,
    conn: psycopg.Connection,
    settings: Settings,
    twins: list[tuple[Registered, tuple[int, str, str, str]]],
) -> list[Registered]:
    """Re-sent files of an archived file's ETag and size: duplicates, never read or
    copied. The ledger points at the archived bytes, then the delivered version goes
    (a newer one under its key stays for the next run)."""
    done = []
    for file, (original_id, original_key, sha256, archived) in twins:
        ledger.record_version(conn, file.file_id, sha256, None, "duplicate")
        ledger.set_moved_to(conn, file.file_id, archived)
        log.info(
            "%s: duplicate of %s (file %d, same ETag and size), not read; its bytes are at %s",
            file.key,
            original_key,
            original_id,
            archived,
        )
        done.append(replace(file, status="duplicate", sha256=sha256, retired=True))
    enforced = _conditions(s3, settings) if done else storage.UNENFORCED
    deleted = storage.each_in_parallel(
        lambda file: storage.delete_version(
            s3, settings.bucket, file.key, file.etag, None, enforced
        ),
        done,
    )
    for _, _, error in deleted:
        if error is not None:
            raise error
    return done


def preview(
    s3: storage.S3Client,
    conn: psycopg.Connection,
    settings: Settings,
    objects: Iterable[storage.StoredObject],
) -> list[Registered]:
    """What ``register`` would make of the objects, for a dry run: nothing is written.

    Each listed version is read (pinned by its ETag) for its SHA-256; content
    already taken shows as a duplicate. The rows have no ledger id (0).
    """
    previewed: list[Registered] = []
    for obj in sorted(objects, key=lambda o: o.key):
        try:
            with storage.fetched(s3, obj.bucket, obj.key, etag=obj.etag) as got:
                original = ledger.taken_content(conn, got.sha256)
        except (storage.VersionReplaced, storage.ObjectGone):
            log.info("%s: replaced or removed since it was listed; not previewed", obj.key)
            continue
        status = "duplicate" if original is not None else "registered"
        log.info("%s: dry run, %s, %d bytes", obj.key, status, obj.size)
        previewed.append(Registered(0, obj.key, obj.size, status, obj.etag, got.sha256))
    return previewed


#: What reading a version to hold it gave: its SHA-256, VersionId, and its bytes
#: when small (held in the database).
Held = tuple[str, str | None, bytes | None]


def _copy_to_held(s3: storage.S3Client, settings: Settings, file: Registered) -> Held:
    """Read the registered version and hold its bytes: its SHA-256, VersionId, and the
    bytes themselves if small (held in the database, by the caller)."""
    with storage.fetched(s3, settings.bucket, file.key, etag=file.etag) as got:
        if got.size <= settings.hold_in_database_bytes:
            return got.sha256, got.version_id, got.file.read()
        storage.hold(s3, settings.bucket, got, file.held(settings).held_key, file.file_id)
    return got.sha256, got.version_id, None


def _record_held(
    conn: psycopg.Connection, held: list[tuple[int, Registered, Held]], reprocess: bool
) -> list[tuple[int, Registered]]:
    """Record a batch of held versions (place, file, what holding it gave): the bytes
    of small ones, then SHA-256 and status, a few statements for the batch. A
    duplicate is content an earlier file took, one of the same batch included."""
    if not held:
        return []
    # the bytes first: a version's SHA-256 marks it held
    ledger.hold_contents(conn, [(f.file_id, got[2]) for _, f, got in held if got[2] is not None])
    taken = ledger.taken_contents(conn, [(got[0], f.file_id) for _, f, got in held])
    first_here: dict[str, tuple[int, str]] = {}
    done = []
    for place, file, (sha256, version_id, _) in held:
        original = taken.get(file.file_id)
        here = first_here.get(sha256)
        if here is not None and here[0] < file.file_id and (original is None or here < original):
            original = here
        status = "duplicate" if original is not None and not reprocess else "registered"
        if status == "duplicate":
            assert original is not None
            log.info(
                "%s: duplicate of %s (file %s), not parsed again",
                file.key,
                original[1],
                original[0],
            )
        else:
            first_here.setdefault(sha256, (file.file_id, file.key))
            log.info("%s: registered as file %d, %d bytes", file.key, file.file_id, file.size)
        done.append((place, replace(file, status=status, sha256=sha256, version_id=version_id)))
    ledger.record_versions(conn, [(f.file_id, f.sha256, f.version_id, f.status) for _, f in done])
    return done


@dataclass
class Validation:
    """What validation decided for a run's files."""

    accepted: list[Registered] = field(default_factory=list)
    #: Accepted small files validation staged itself, file id -> readings (the
    #: others go to load tasks).
    staged: dict[int, int] = field(default_factory=dict)
    rejected: list[Registered] = field(default_factory=list)
    report_location: str | None = None
    errors: int = 0  # findings of the run's files by severity
    warnings: int = 0
    rejected_blocks: int = 0  # data-stream blocks rejected in files otherwise kept


@dataclass
class _Parsed:
    """A member parsed in full: its rows kept (a small file's), and its result."""

    days: list[pl.DataFrame]
    result: ParseResult
    version: str  # NEM12 (days) or NEM13 (reads)

    def batches(self) -> Iterator[pl.DataFrame]:
        return iter(self.days)


@dataclass
class _Read:
    """What validation read of a file: each member's parse and the text of the records
    its findings name ((member, line) -> text)."""

    parses: list[_Parsed]
    texts: dict[tuple[str, int], str]

    @property
    def reports(self) -> list[ParseResult]:
        return [p.result for p in self.parses]


@contextmanager
def _held_copy(
    s3: storage.S3Client, settings: Settings, file: Registered, content: bytes | None
) -> Iterator[storage.Download]:
    """The registered version's bytes: ``content`` if held in the database, else
    the held copy in S3; only if they hash to the registered SHA-256."""
    if content is not None:
        with storage.held_in_memory(content, file.sha256, f"file {file.file_id}") as got:
            yield got
        return
    held_key = file.held(settings).held_key
    with storage.fetched(s3, settings.bucket, held_key, sha256=file.sha256) as got:
        yield got


def _parse_for_findings(
    s3: storage.S3Client,
    settings: Settings,
    file: Registered,
    dry_run: bool,
    keep_days: bool,
    content: bytes | None,
) -> _Read:
    """Every member's report and the text of the records its findings name; with
    ``keep_days``, the day rows too (small files, staged by validation).

    A dry run reads the delivered version (it holds no copy).
    """
    if dry_run:
        opened = storage.fetched(s3, settings.bucket, file.key, etag=file.etag, sha256=file.sha256)
    else:
        opened = _held_copy(s3, settings, file, content)
    config = settings.parse_config(True, per_day=True)
    with opened as got:
        parses = []
        for parse in parse_source(got.file, name=file.key, config=config):
            days = [batch for batch in parse.batches() if keep_days]
            parses.append(_Parsed(days, parse.result, parse.version))
        wanted: dict[str, set[int]] = {}
        for finding in (f for p in parses for f in p.result.findings if f.line is not None):
            wanted.setdefault(finding.file, set()).add(finding.line)
        got.file.seek(0)
        limits = settings.read_limits()
        texts = record_texts(got.file, wanted, name=file.key, limits=limits) if wanted else {}
        return _Read(parses, texts)


#: Files this small are read and parsed a few at a time; a step holding a
#: bigger one reads one at a time (a parse's memory is per file).
SMALL_FILE_BYTES = 1 << 20


def _workers(files: list[Registered]) -> int:
    return storage.S3_WORKERS if all(f.size <= SMALL_FILE_BYTES for f in files) else 1


def _staged_by_validation(file: Registered, settings: Settings) -> bool:
    """Small files are staged from validation's parse: no second download, parse or task."""
    return file.size <= settings.stage_with_validation_bytes


def _stage(
    conn: psycopg.Connection, file: Registered, parses: Iterable[_Parsed | Parse]
) -> int | None:
    """Stage a file's accepted days: its readings, None if another run finished it
    meanwhile."""
    rows = {file.file_id: staging.stage_days(conn, file.file_id, parses)}
    return _mark_staged(conn, [file], rows).get(file.file_id)


def _stage_many(
    conn: psycopg.Connection, files: list[tuple[Registered, list[_Parsed]]]
) -> dict[int, int]:
    """``_stage`` for many files parsed in full, together: readings per file staged."""
    rows = staging.stage_parsed(conn, [(file.file_id, parses) for file, parses in files])
    return _mark_staged(conn, [file for file, _ in files], rows)


def _mark_staged(
    conn: psycopg.Connection, files: list[Registered], rows: dict[int, int]
) -> dict[int, int]:
    """Mark staged files as staged, but those another run finished meanwhile:
    readings per file marked."""
    marked = ledger.mark_staged_many(conn, list(rows))
    for file in files:
        if file.file_id not in marked:
            log.info("%s: finished by another run (file %d) while staging", file.key, file.file_id)
        else:
            log.info("%s: %d readings staged (file %d)", file.key, rows[file.file_id], file.file_id)
    return {file_id: rows[file_id] for file_id in sorted(marked)}


def _moved_by_another_run(conn: psycopg.Connection, file: Registered) -> bool:
    """Whether a vanished object is one an overlapping run finished (and archived)."""
    if not ledger.finished_files(conn, [file.file_id]):
        return False
    log.info("%s: finished and moved by another run (file %d)", file.key, file.file_id)
    return True


def _combined_status(reports: list[ParseResult]) -> str:
    """An object's quality: accepted, partial (some members or blocks) or rejected."""
    statuses = {r.status for r in reports}
    if statuses == {"accepted"}:
        return "accepted"
    if statuses == {"rejected"}:
        return "rejected"
    return "partial"


def validate(
    s3: storage.S3Client,
    conn: psycopg.Connection,
    settings: Settings,
    files: Iterable[Registered],
    run_name: str,
    dry_run: bool = False,
) -> Validation:
    """Apply the structure rules and the record-level suites to a run's files together.

    A dry run (files from ``preview``) writes the report and nothing else: no
    ledger row, finding or object changes.
    """
    from nem12.pipeline.quality import with_findings

    outcome = Validation()
    record_frames: list[pl.DataFrame] = []
    files = list(files)
    finished = ledger.finished_files(conn, [f.file_id for f in files])
    todo = []
    for file in files:
        if file.status == "duplicate":
            continue
        if file.file_id in finished:
            log.info("%s: finished by another run (file %d), not validated", file.key, file.file_id)
            continue
        todo.append(file)
    for batch in _batches(todo, settings):  # parsed, then recorded and staged together
        validated: list[tuple[Registered, _Read, str]] = []
        for file, got, error in _parse_batch(s3, conn, settings, batch, dry_run):
            if isinstance(error, storage.ObjectGone | storage.VersionReplaced):
                if dry_run:
                    log.info("%s: replaced or removed since it was listed; not validated", file.key)
                    continue
                if not _moved_by_another_run(conn, file):
                    raise error
                continue
            if error is not None:
                raise error
            assert got is not None
            validated.append((file, got, _tally(outcome, file, got.reports)))
            record_frames.extend(
                with_findings(r.records, r.findings) for r in got.reports if r.records is not None
            )
        _record(s3, conn, settings, validated, outcome, dry_run)
    if record_frames:
        records = pl.concat(record_frames, how="vertical_relaxed")
        outcome.report_location = _write_report(s3, settings, records, run_name)
        if not dry_run:
            ids = [f.file_id for f in (*outcome.accepted, *outcome.rejected)]
            ledger.set_report_location(conn, ids, outcome.report_location)
        log.info("validation report: %s", outcome.report_location)
    return outcome


def _tally(outcome: Validation, file: Registered, reports: list[ParseResult]) -> str:
    """Count and log what validation found of a file; its quality."""
    quality = _combined_status(reports)
    errors = sum(len(r.errors) for r in reports)
    warnings = sum(len(r.findings) for r in reports) - errors
    rejected_blocks = sum(r.rejected_blocks for r in reports)
    outcome.errors += errors
    outcome.warnings += warnings
    if quality != "rejected":
        outcome.rejected_blocks += rejected_blocks
    log.info(
        "%s: %s (file %d), %d readings, %d errors, %d warnings, %d of %d blocks rejected",
        file.key,
        quality,
        file.file_id,
        sum(r.readings for r in reports),
        errors,
        warnings,
        rejected_blocks,
        sum(r.blocks for r in reports),
    )
    return quality


def _parse_batch(
    s3: storage.S3Client,
    conn: psycopg.Connection,
    settings: Settings,
    files: list[Registered],
    dry_run: bool,
) -> Iterator[tuple[Registered, _Read | None, Exception | None]]:
    """Parse these files a few at a time: (file, read, error), in order."""
    contents = {} if dry_run else ledger.held_contents(conn, [f.file_id for f in files])
    return storage.each_in_parallel(
        lambda file: _parse_for_findings(
            s3,
            settings,
            file,
            dry_run,
            _staged_by_validation(file, settings),
            contents.get(file.file_id),
        ),
        files,
        _workers(files),
    )


def _batches(files: list[Registered], settings: Settings) -> Iterator[list[Registered]]:
    """The files in runs of at most ``STAGE_BATCH_FILES``, whose small files (held in
    the database, staged by validation: in memory for the batch) hold at most
    ``STAGE_BATCH_BYTES``. Registration, validation and the merge work batch by batch."""
    in_memory = max(settings.hold_in_database_bytes, settings.stage_with_validation_bytes)
    batch: list[Registered] = []
    size = 0
    for file in files:
        small = file.size if file.size <= in_memory else 0
        if batch and (size + small > STAGE_BATCH_BYTES or len(batch) >= STAGE_BATCH_FILES):
            yield batch
            batch, size = [], 0
        batch.append(file)
        size += small
    if batch:
        yield batch


#: Files are registered, validated (recorded, small ones staged) and merged in
#: batches of up to this many bytes of small files, or files (see ``_batches``).
STAGE_BATCH_BYTES = 32 << 20
STAGE_BATCH_FILES = 1000


def _record(
    s3: storage.S3Client,
    conn: psycopg.Connection,
    settings: Settings,
    validated: list[tuple[Registered, _Read, str]],
    outcome: Validation,
    dry_run: bool,
) -> None:
    """Keep what validation found of these files (file, read, quality); quarantine
    the rejected, stage the accepted small ones."""
    if not dry_run:
        ledger.record_parses(
            conn, [(f.file_id, got.reports, quality, got.texts) for f, got, quality in validated]
        )
    to_stage = []
    for file, got, quality in validated:
        if quality == "rejected":
            if not dry_run:
                _quarantine(s3, conn, settings, file, got.reports)
            outcome.rejected.append(file)
            continue
        outcome.accepted.append(file)
        if _staged_by_validation(file, settings) and not dry_run:
            to_stage.append((file, got.parses))
    if to_stage:
        outcome.staged.update(_stage_many(conn, to_stage))


def _write_report(
    s3: storage.S3Client, settings: Settings, records: pl.DataFrame, run_name: str
) -> str:
    """Data Docs for the run: in a local folder, or under an ``s3://bucket/prefix``."""
    from nem12.pipeline.quality import validate_records

    if not settings.reports_dir.startswith("s3://"):
        result = validate_records(
            records, run_name, Path(settings.reports_dir) / run_name, settings.suites_dir
        )
        return str(result.report_path)
    bucket, _, prefix = settings.reports_dir[len("s3://") :].partition("/")
    prefix = f"{prefix.rstrip('/')}/{run_name}" if prefix else run_name
    with tempfile.TemporaryDirectory(prefix="nem12-report-") as local:
        result = validate_records(records, run_name, Path(local), settings.suites_dir)
        storage.upload_folder(s3, Path(local), bucket, prefix)
        page = result.report_path.relative_to(local).as_posix()
    return f"s3://{bucket}/{prefix}/{page}"


def _quarantine(
    s3: storage.S3Client,
    conn: psycopg.Connection,
    settings: Settings,
    file: Registered,
    reports: list[ParseResult],
) -> None:
    """Move a rejected version to the rejected prefix with its findings beside it."""
    name = _archive_key(settings, file.key)
    wanted = settings.rejected_prefix + (
        name[len(settings.archive_prefix) :] if name else posixpath.basename(file.key)
    )
    findings = [f.as_dict() for r in reports for f in r.findings]
    [target] = _place(s3, conn, settings, [(file, wanted)])
    if target is not None:  # None: a retry after the move, its findings written then
        storage.put_bytes(
            s3,
            settings.bucket,
            target + ".findings.json",
            json.dumps(findings, indent=2).encode(),
            "application/json",
        )
    _retire(s3, conn, settings, [(file, wanted)])
    log.info("%s rejected: %d findings, moved to %s", file.key, len(findings), target)


def _conditions(s3: storage.S3Client, settings: Settings) -> storage.Conditions:
    """The conditional requests the bucket enforces (probed once per process)."""
    return storage.conditions(s3, settings.bucket, settings.held_prefix)


def _place(
    s3: storage.S3Client,
    conn: psycopg.Connection,
    settings: Settings,
    wanted: list[tuple[Registered, str | None]],
) -> list[str | None]:
    """Each version's bytes to its wanted key or the free name beside it, then the
    ledger names where they lie (before the delivered version goes: repeatable)."""
    contents = ledger.held_contents(conn, [file.file_id for file, _ in wanted])
    held = [(file.held(settings), target) for file, target in wanted]
    placed = storage.place(s3, held, contents)
    moved = [(file, key) for (file, _), key in zip(wanted, placed, strict=True) if key]
    ledger.set_moved_to_many(conn, [(file.file_id, key) for file, key in moved])
    for file, key in moved:
        if key.startswith(settings.archive_prefix):
            log.info("%s: archived to %s", file.key, key)
    return placed


def _retire(
    s3: storage.S3Client,
    conn: psycopg.Connection,
    settings: Settings,
    wanted: list[tuple[Registered, str | None]],
) -> None:
    """Done with these placed versions: the delivered ones removed (those given a
    place), then the held copies, in S3 and in the database."""
    newer = storage.retire(
        s3,
        [(file.held(settings), target is not None) for file, target in wanted],
        _conditions(s3, settings),
    )
    ledger.drop_held(conn, [file.file_id for file, _ in wanted])
    for (file, _), newer_left in zip(wanted, newer, strict=True):
        if newer_left:
            log.warning(
                "%s: a newer version is under the key; left there for the next run (file %d done)",
                file.key,
                file.file_id,
            )


def loading_groups(files: Iterable[Registered], settings: Settings) -> list[list[Registered]]:
    """Small files share a mapped task; a big one gets its own."""
    groups: list[list[Registered]] = []
    current: list[Registered] = []
    size = 0
    for file in sorted(files, key=lambda f: f.size, reverse=True):
        if current and (
            size + file.size > settings.group_bytes or len(current) >= settings.group_files
        ):
            groups.append(current)
            current, size = [], 0
        current.append(file)
        size += file.size
    if current:
        groups.append(current)
    return groups


def load_group(
    s3: storage.S3Client, conn: psycopg.Connection, settings: Settings, group: list[Registered]
) -> dict[int, int]:
    """Parse each file and COPY its accepted days into staging; readings per file."""
    staged: dict[int, int] = {}
    config = settings.parse_config(per_day=True)
    finished = ledger.finished_files(conn, [f.file_id for f in group])
    for file in group:
        if file.file_id in finished:
            log.info("%s: finished by another run (file %d), not loaded", file.key, file.file_id)
            continue
        content = ledger.held_contents(conn, [file.file_id]).get(file.file_id)
        try:
            with _held_copy(s3, settings, file, content) as got:
                parses = parse_source(got.file, name=file.key, config=config)
                rows = _stage(conn, file, parses)
        except storage.ObjectGone:
            if not _moved_by_another_run(conn, file):
                raise
            continue
        if rows is not None:
            staged[file.file_id] = rows
    return staged


def _archive_key(settings: Settings, key: str) -> str | None:
    """Where a landed object goes once done; None for objects not under landing/."""
    if not key.startswith(settings.landing_prefix):
        return None
    return settings.archive_prefix + key[len(settings.landing_prefix) :]


def merge(
    s3: storage.S3Client,
    conn: psycopg.Connection,
    settings: Settings,
    file_ids: list[int],
    also_archive: Iterable[Registered] = (),
) -> MergeCounts:
    """Merge staged files, then archive their objects and the duplicates (after the commit)."""
    counts = merge_files(conn, file_ids, settings.history_days) if file_ids else MergeCounts()
    for file_id, key in ledger.keys_of(conn, file_ids):
        got = counts.per_file.get(file_id, {})
        log.info(
            "%s: merged (file %d) as %s: %d inserted, %d updated, %d unchanged, %d superseded",
            key,
            file_id,
            counts.status.get(file_id, "?"),
            *(got.get(outcome, 0) for outcome in OUTCOMES),
        )
    log.info(
        "merge of %d files: %d inserted, %d updated, %d unchanged, %d superseded",
        len(file_ids),
        counts.inserted,
        counts.updated,
        counts.unchanged,
        counts.superseded,
    )
    held_duplicates = [f.file_id for f in also_archive if not f.retired]
    retiring = registered_files(conn, file_ids + held_duplicates)
    if not retiring:
        return counts
    for batch in _batches(retiring, settings):
        wanted = [(file, _archive_key(settings, file.key)) for file in batch]
        _place(s3, conn, settings, wanted)
        _retire(s3, conn, settings, wanted)
    return counts


def registered_files(conn: psycopg.Connection, file_ids: list[int]) -> list[Registered]:
    """The ledger's rows of ``file_ids`` as steps hand them on."""
    return [Registered(*row) for row in ledger.registered_versions(conn, file_ids)]
