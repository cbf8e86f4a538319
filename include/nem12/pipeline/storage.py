"""S3 objects of the pipeline: listing the landing prefix, holding, reading, retiring.

Works with any boto3 S3 client (Airflow's S3Hook gives one configured from
the connection, MinIO's ``endpoint_url`` included). Objects are read into
anonymous temporary files, never into memory whole and never under their
key's name.

A delivered key can be overwritten at any moment (providers re-send corrected
files under the same name), so the pipeline never works on "whatever is under
the key now": registration reads one version, pinned by its ETag, and uploads
exactly those bytes to a key of its own (the held copy); every later step reads
the held copy; retiring a version deletes that version only (by VersionId on a
versioned bucket, else with ``If-Match``), so a newer one stays for the next run.

Moving many versions costs one request each: the names they go to are found
free by listing the range they span, not a HEAD each, and a delete's
``If-Match`` is trusted where the endpoint enforces it (AWS S3, moto:
``conditions`` probes once per endpoint and bucket; MinIO gets a HEAD first).
"""

from __future__ import annotations

import hashlib
import io
import logging
import mimetypes
import os
import posixpath
import tempfile
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeVar

log = logging.getLogger(__name__)

S3Client = Any  # boto3's client type is generated at runtime

#: Metadata on a held copy (and so on its archived copy) naming its ledger row.
FILE_ID_METADATA = "nem12-file-id"

_MISSING = ("NoSuchKey", "404", "NotFound")
_PRECONDITION = ("PreconditionFailed", "412")


@dataclass(frozen=True)
class StoredObject:
    """One object version as S3 lists it."""

    bucket: str
    key: str
    etag: str
    size: int
    last_modified: str  # ISO 8601, as S3 reports arrival


class ObjectGone(Exception):
    """The object is not (or no longer) there: moved by an overlapping run, say."""


class VersionReplaced(Exception):
    """The key holds another version than the registered one: a re-sent file."""


class ContentMismatch(Exception):
    """A held copy's bytes are not the registered SHA-256: never parsed in its place."""


@dataclass(frozen=True)
class HeldVersion:
    """A registered object version: the key it was delivered under and the held copy."""

    bucket: str
    key: str
    etag: str
    version_id: str | None
    held_key: str
    file_id: int
    size: int = 0  # bytes, when known


#: Held copies up to this size are uploaded in one PUT (s3transfer's multipart threshold).
SINGLE_PUT_BYTES = 8 << 20
#: Objects up to this size are copied in one request (S3's CopyObject limit);
#: bigger ones, or of unknown size, by the managed (multipart) copy.
COPY_OBJECT_LIMIT = 5 << 30


@dataclass
class Download:
    """An object version in a rewound temporary file, with its SHA-256 and VersionId."""

    file: IO[bytes]
    sha256: str
    version_id: str | None
    size: int = 0


#: Requests one step keeps in flight: a small file costs a few round trips,
#: so a step over many of them waits on S3, not on its CPU.
S3_WORKERS = 8


T = TypeVar("T")
R = TypeVar("R")


def each_in_parallel(
    work: Callable[[T], R], items: Iterable[T], workers: int = S3_WORKERS
) -> Iterator[tuple[T, R | None, Exception | None]]:
    """``work`` over ``items`` on a few threads, in order: (item, result, exception).

    For S3 round trips and parsing (Polars releases the GIL); the caller
    does the database work, on its one connection, as the results come.
    """
    items = list(items)
    if len(items) <= 1:
        workers = 1

    def attempt(item: T) -> tuple[T, R | None, Exception | None]:
        try:
            return item, work(item), None
        except Exception as exc:  # handed to the caller, who re-raises what it does not expect
            return item, None, exc

    if workers == 1:
        yield from map(attempt, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nem12-s3") as pool:
        ahead: deque[Future[tuple[T, R | None, Exception | None]]] = deque()
        for item in items:  # at most two rounds ahead of the caller: memory stays flat
            ahead.append(pool.submit(attempt, item))
            if len(ahead) >= 2 * workers:
                yield ahead.popleft().result()
        while ahead:
            yield ahead.popleft().result()


def list_objects(s3: S3Client, bucket: str, prefix: str) -> list[StoredObject]:
    """Every object under ``prefix`` (folders and zero-byte markers left out)."""
    found: list[StoredObject] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/"):
                continue
            found.append(
                StoredObject(
                    bucket,
                    item["Key"],
                    item["ETag"].strip('"'),
                    int(item["Size"]),
                    item["LastModified"].isoformat(),
                )
            )
    return found


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _quoted(etag: str) -> str:
    return f'"{etag.strip(chr(34))}"'


@contextmanager
def fetched(
    s3: S3Client, bucket: str, key: str, etag: str | None = None, sha256: str | None = None
) -> Iterator[Download]:
    """The object in a temporary file: only the version ``etag`` names, if given
    (``VersionReplaced`` otherwise), and only if its bytes hash to ``sha256``, if given."""
    from botocore.exceptions import ClientError

    digest = hashlib.sha256()
    with tempfile.TemporaryFile(prefix="nem12-") as local:
        try:
            pinned = {"IfMatch": _quoted(etag)} if etag else {}
            response = s3.get_object(Bucket=bucket, Key=key, **pinned)
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                raise ObjectGone(f"s3://{bucket}/{key} is gone") from exc
            if _error_code(exc) in _PRECONDITION:
                raise VersionReplaced(
                    f"s3://{bucket}/{key} no longer holds version {etag}"
                ) from exc
            raise
        size = 0
        for block in iter(lambda: response["Body"].read(1 << 20), b""):
            digest.update(block)
            local.write(block)
            size += len(block)
        local.seek(0)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ContentMismatch(
                f"s3://{bucket}/{key} has SHA-256 {digest.hexdigest()}, registered {sha256}"
            )
        version_id = response.get("VersionId")  # "null" or none on an unversioned bucket
        version_id = None if version_id == "null" else version_id
        yield Download(local, digest.hexdigest(), version_id, size)


@contextmanager
def held_in_memory(content: bytes, sha256: str, name: str) -> Iterator[Download]:
    """Bytes held outside S3 (the database) as a ``Download``: only if they hash to
    ``sha256``."""
    digest = hashlib.sha256(content).hexdigest()
    if digest != sha256:
        raise ContentMismatch(f"{name} has SHA-256 {digest}, registered {sha256}")
    yield Download(io.BytesIO(content), digest, None, len(content))


def hold(s3: S3Client, bucket: str, download: Download, held_key: str, file_id: int) -> None:
    """Upload exactly the downloaded bytes under the pipeline's own key (multipart if big).

    An upload, not a server-side copy: moto ignores ``CopySourceIfMatch``, and a
    copy that is not pinned could hold a newer version under the older one's row.
    """
    metadata = {FILE_ID_METADATA: str(file_id)}
    download.file.seek(0)
    if download.size <= SINGLE_PUT_BYTES:  # one request, no transfer threads
        s3.put_object(Bucket=bucket, Key=held_key, Body=download.file.read(), Metadata=metadata)
    else:
        # s3transfer closes the file it uploads; give it a descriptor of its own
        with os.fdopen(os.dup(download.file.fileno()), "rb") as upload:
            s3.upload_fileobj(upload, bucket, held_key, ExtraArgs={"Metadata": metadata})
    download.file.seek(0)


def put_bytes(s3: S3Client, bucket: str, key: str, data: bytes, content_type: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


@dataclass(frozen=True)
class Conditions:
    """Which conditional requests an endpoint and bucket enforce (see ``conditions``)."""

    #: A DeleteObject whose If-Match names another ETag is refused (MinIO ignores it).
    delete_if_match: bool


#: Assumed of an endpoint nobody probed: nothing enforced, a HEAD before each delete.
UNENFORCED = Conditions(delete_if_match=False)

_PROBED: dict[tuple[str, str], Conditions] = {}
#: An ETag no object has: S3 ETags are an MD5 (or one with a part count).
_NO_SUCH_ETAG = '"00000000000000000000000000000000"'


def conditions(s3: S3Client, bucket: str, scratch_prefix: str) -> Conditions:
    """What ``bucket`` enforces, probed once per process with an object under
    ``scratch_prefix`` (the pipeline's own prefix) that is removed again."""
    endpoint = (s3.meta.endpoint_url, bucket)
    if endpoint not in _PROBED:
        _PROBED[endpoint] = _probe(s3, bucket, f"{scratch_prefix}.probe-{uuid.uuid4().hex}")
        log.info("s3 %s/%s enforces %s", *endpoint, _PROBED[endpoint])
    return _PROBED[endpoint]


def _probe(s3: S3Client, bucket: str, key: str) -> Conditions:
    from botocore.exceptions import ClientError

    def refused(request: Callable[[], object]) -> bool:
        try:
            request()
        except ClientError as exc:
            if _error_code(exc) in _PRECONDITION:
                return True
            log.info("s3 %s: a conditional request failed (%s): taken as not enforced", bucket, exc)
        return False

    version_id = s3.put_object(Bucket=bucket, Key=key, Body=b"probe").get("VersionId")
    try:
        delete = refused(lambda: s3.delete_object(Bucket=bucket, Key=key, IfMatch=_NO_SUCH_ETAG))
    finally:
        if version_id:  # a versioned bucket: the version and any delete marker
            _delete_all_versions(s3, bucket, key)
        else:
            s3.delete_object(Bucket=bucket, Key=key)
    return Conditions(delete_if_match=delete)


def _delete_all_versions(s3: S3Client, bucket: str, prefix: str) -> None:
    """The probe's leftovers on a versioned bucket (its version, a delete marker)."""
    listed = s3.list_object_versions(Bucket=bucket, Prefix=prefix)
    for item in (*listed.get("Versions", []), *listed.get("DeleteMarkers", [])):
        s3.delete_object(Bucket=bucket, Key=item["Key"], VersionId=item["VersionId"])


def _file_id_at(s3: S3Client, bucket: str, key: str) -> str | None:
    """The ledger file id an object under ``key`` carries ("" for none); None if no object."""
    from botocore.exceptions import ClientError

    try:
        found = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _error_code(exc) in _MISSING:
            return None
        raise
    return str(found.get("Metadata", {}).get(FILE_ID_METADATA, ""))


def key_beside(key: str, file_id: int) -> str:
    """The name beside ``key`` that only this file's version can have."""
    folder, name = posixpath.split(key)
    stem, dot, extensions = name.partition(".")
    return posixpath.join(folder, f"{stem}.file{file_id}{dot}{extensions}")


def place(
    s3: S3Client,
    versions: list[tuple[HeldVersion, str | None]],
    contents: dict[int, bytes] | None = None,
) -> list[str | None]:
    """Copy each held version (of one bucket) to its wanted key, or to the name beside
    it when another version lies there, a few at a time: where each went. A name
    re-used for every delivery must not overwrite the archived or quarantined copy
    of an earlier version.

    None where nothing was wanted (a backfill of archived objects keeps its object)
    or the held copy is gone (an earlier try finished this move). A name two of
    them want goes to the first; the later ones get the names beside it. Safe to
    repeat: a retried copy finds its own bytes (the file id metadata) and keeps them.
    A version whose bytes are in ``contents`` (file id -> bytes, held in the
    database) is uploaded from them instead.
    """
    contents = contents or {}
    taken: set[str] = set()
    jobs: list[tuple[HeldVersion, list[str]] | None] = []
    for version, target in versions:
        if target is None:
            jobs.append(None)
            continue
        beside = key_beside(target, version.file_id)
        jobs.append((version, [beside] if target in taken else [target, beside]))
        taken.add(target)
    known = Listing(s3, versions[0][0].bucket, sorted(taken)) if taken else None
    placed: list[str | None] = []
    for _, got, error in each_in_parallel(
        lambda job: None if job is None else _copy_held(s3, *job, known, contents), jobs
    ):
        if error is not None:
            raise error
        placed.append(got)
    return placed


#: Keys per listed page (S3's most).
LIST_PAGE = 1000


class Listing:
    """Which of some keys exist, from listing the range they span (a page per
    thousand keys) rather than a HEAD each; a range too crowded with other
    objects is listed only in part, and the keys past it count as unknown."""

    def __init__(self, s3: S3Client, bucket: str, keys: list[str]) -> None:
        prefix = posixpath.commonprefix(keys)
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket,
            Prefix=prefix,
            StartAfter=keys[0][:-1],
            PaginationConfig={"PageSize": LIST_PAGE},
        )
        self.wanted, budget = set(keys), len(keys) // LIST_PAGE + 2
        self.present: set[str] = set()
        self.covered_to = ""  # every key up to this one is known
        for number, page in enumerate(pages, start=1):
            listed = [item["Key"] for item in page.get("Contents", [])]
            self.present.update(key for key in listed if key in self.wanted)
            if not page.get("IsTruncated"):
                self.covered_to = max(keys)
                break
            self.covered_to = listed[-1]
            if self.covered_to >= keys[-1] or number >= budget:
                break

    def absent(self, key: str) -> bool:
        """Known not to exist (False: there, or not known)."""
        return key in self.wanted and key <= self.covered_to and key not in self.present


def _copy_held(
    s3: S3Client,
    version: HeldVersion,
    candidates: list[str],
    known: Listing | None,
    contents: dict[int, bytes],
) -> str | None:
    """The held bytes under the first candidate key that is free or already ours."""
    from botocore.exceptions import ClientError

    source = {"Bucket": version.bucket, "Key": version.held_key}
    for target in candidates:
        if not (known is not None and known.absent(target)):
            found = _file_id_at(s3, version.bucket, target)
            if found not in (None, str(version.file_id)):
                continue  # another version's: try the name beside it
        try:
            if version.file_id in contents:
                s3.put_object(
                    Bucket=version.bucket,
                    Key=target,
                    Body=contents[version.file_id],
                    Metadata={FILE_ID_METADATA: str(version.file_id)},
                )
            elif 0 < version.size <= COPY_OBJECT_LIMIT:
                s3.copy_object(Bucket=version.bucket, Key=target, CopySource=source)
            else:  # managed copy: multipart for objects over 5 GB
                s3.copy(source, version.bucket, target)
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                return None  # no held copy: an earlier try completed this move
            raise
        return target
    raise RuntimeError(
        f"s3://{version.bucket}: every name for file {version.file_id} is another "
        f"version's: {', '.join(candidates)}"
    )


def delete_version(
    s3: S3Client,
    bucket: str,
    key: str,
    etag: str,
    version_id: str | None,
    enforced: Conditions = UNENFORCED,
) -> bool:
    """Delete this version of ``key`` only; False when a newer version is there (left be).

    With a VersionId (a versioned bucket) exactly that version goes and any
    newer one stays current. Without, the delete carries ``If-Match``; where
    the endpoint does not enforce it (MinIO), a HEAD with ``If-Match`` goes just
    before (and versioning is advised for MinIO deployments).
    """
    from botocore.exceptions import ClientError

    try:
        if version_id:
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
            return True
        if not enforced.delete_if_match:
            s3.head_object(Bucket=bucket, Key=key, IfMatch=_quoted(etag))
        s3.delete_object(Bucket=bucket, Key=key, IfMatch=_quoted(etag))
    except ClientError as exc:
        if _error_code(exc) in _MISSING:
            return True
        if _error_code(exc) in _PRECONDITION:
            return False
        raise
    return True


def retire(
    s3: S3Client, versions: list[tuple[HeldVersion, bool]], enforced: Conditions = UNENFORCED
) -> list[bool]:
    """Done with these versions (their bytes ``place``d): each delivered version
    deleted where flagged, a few at a time; then the held copies, in batches.
    Safe to repeat: the held copies go last.

    Per version, True when the delivered key holds a newer version, which stays
    for the next run.
    """

    def let_go(item: tuple[HeldVersion, bool]) -> bool:
        version, delivered_too = item
        if not delivered_too:
            return False
        kept = delete_version(
            s3, version.bucket, version.key, version.etag, version.version_id, enforced
        )
        return not kept

    newer_left = []
    for _, left, error in each_in_parallel(let_go, versions):
        if error is not None:
            raise error
        assert left is not None
        newer_left.append(left)
    by_bucket: dict[str, list[str]] = {}
    for version, _ in versions:
        by_bucket.setdefault(version.bucket, []).append(version.held_key)
    for bucket, keys in by_bucket.items():
        delete_keys(s3, bucket, keys)
    return newer_left


#: Keys one DeleteObjects request takes at most (S3's limit).
DELETE_BATCH = 1000


def delete_keys(s3: S3Client, bucket: str, keys: list[str]) -> None:
    """Delete these keys (the pipeline's own objects), a thousand per request."""
    for start in range(0, len(keys), DELETE_BATCH):
        batch = [{"Key": key} for key in keys[start : start + DELETE_BATCH]]
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        if answer.get("Errors"):
            first = answer["Errors"][0]
            raise RuntimeError(
                f"s3://{bucket}: {len(answer['Errors'])} deletes failed, the first "
                f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
            )


def upload_folder(s3: S3Client, folder: Path, bucket: str, prefix: str) -> None:
    """Every file below ``folder`` to ``prefix`` (a Data Docs site, say)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        key = prefix.rstrip("/") + "/" + path.relative_to(folder).as_posix()
        put_bytes(s3, bucket, key, path.read_bytes(), content_type)
