"""S3 objects of the pipeline: listing the landing prefix, fetching, moving.

Works with any boto3 S3 client (Airflow's S3Hook gives one configured from
the connection, MinIO's ``endpoint_url`` included). Objects are read into
anonymous temporary files, never into memory whole and never under their
key's name.
"""

from __future__ import annotations

import hashlib
import mimetypes
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

S3Client = Any  # boto3's client type is generated at runtime


@dataclass(frozen=True)
class StoredObject:
    """One object version as S3 lists it."""

    bucket: str
    key: str
    etag: str
    size: int
    last_modified: str  # ISO 8601, as S3 reports arrival


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


class ObjectGone(Exception):
    """The object is not (or no longer) there: moved by an overlapping run, say."""


@contextmanager
def fetched(s3: S3Client, bucket: str, key: str) -> Iterator[tuple[IO[bytes], str]]:
    """The object in a temporary file (rewound) and its SHA-256."""
    from botocore.exceptions import ClientError

    digest = hashlib.sha256()
    with tempfile.TemporaryFile(prefix="nem12-") as local:
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise ObjectGone(f"s3://{bucket}/{key} is gone") from exc
            raise
        for block in iter(lambda: body.read(1 << 20), b""):
            digest.update(block)
            local.write(block)
        local.seek(0)
        yield local, digest.hexdigest()


def put_bytes(s3: S3Client, bucket: str, key: str, data: bytes, content_type: str) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType=content_type)


def copy_object(s3: S3Client, bucket: str, key: str, new_key: str) -> None:
    s3.copy_object(Bucket=bucket, Key=new_key, CopySource={"Bucket": bucket, "Key": key})


def move_object(s3: S3Client, bucket: str, key: str, new_key: str) -> None:
    """Copy then delete: S3 has no rename; a crash in between leaves a copy, never a loss.

    A retry after a completed move finds no source and leaves the target be.
    """
    from botocore.exceptions import ClientError

    try:
        copy_object(s3, bucket, key, new_key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
            raise
        s3.head_object(Bucket=bucket, Key=new_key)
        return
    s3.delete_object(Bucket=bucket, Key=key)


def upload_folder(s3: S3Client, folder: Path, bucket: str, prefix: str) -> None:
    """Every file below ``folder`` to ``prefix`` (a Data Docs site, say)."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        key = prefix.rstrip("/") + "/" + path.relative_to(folder).as_posix()
        put_bytes(s3, bucket, key, path.read_bytes(), content_type)
