"""Moving held versions on a real S3 endpoint (moto over HTTP): the conditional
requests it enforces, and placing bytes under a free name."""

from __future__ import annotations

import uuid

import pytest

from nem12.pipeline import storage

HELD = "held/"


@pytest.fixture(params=[False, True], ids=["unversioned", "versioned"])
def bucket(request, shared_services):
    s3 = shared_services.s3_client()
    name = f"s-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    if request.param:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return s3, name


def every_version(s3, name: str) -> list[str]:
    listed = s3.list_object_versions(Bucket=name)
    return sorted(v["Key"] for v in (*listed.get("Versions", []), *listed.get("DeleteMarkers", [])))


def test_the_probe_finds_moto_enforces_a_deletes_if_match_and_leaves_nothing(bucket):
    s3, name = bucket
    assert storage.conditions(s3, name, HELD) == storage.Conditions(delete_if_match=True)
    assert every_version(s3, name) == []


def hold(s3, name: str, file_id: int, data: bytes) -> storage.HeldVersion:
    held_key = f"{HELD}{file_id}/a.csv"
    s3.put_object(
        Bucket=name, Key=held_key, Body=data, Metadata={storage.FILE_ID_METADATA: str(file_id)}
    )
    return storage.HeldVersion(name, "landing/a.csv", "etag", None, held_key, file_id, len(data))


def read(s3, name: str, key: str) -> bytes:
    return s3.get_object(Bucket=name, Key=key)["Body"].read()


@pytest.mark.parametrize(
    ("page", "heads"), [(1000, 5), (1, 6)], ids=["listed", "crowded range: HEAD past the list"]
)
def test_place_takes_a_free_name_keeps_its_own_and_never_overwrites_another(
    bucket, page, heads, monkeypatch
):
    """A HEAD only for names the listing found taken or did not reach, and for the
    names beside them."""
    monkeypatch.setattr(storage, "LIST_PAGE", page)
    s3, name = bucket
    crowd = [f"archive/a{letter}.csv" for letter in "abcdefgh"]  # more than 5 pages of 1
    for key in ("archive/a.csv", *crowd, "archive/c.csv"):
        s3.put_object(Bucket=name, Key=key, Body=b"v0", Metadata={storage.FILE_ID_METADATA: "7"})
    first, second, third, fourth = (hold(s3, name, i, f"v{i}".encode()) for i in (8, 9, 10, 11))
    wanted = [
        (first, "archive/a.csv"),
        (second, "archive/b.csv"),
        (third, "archive/b.csv"),
        (fourth, "archive/c.csv"),
    ]
    asked: list[str] = []
    s3.meta.events.register(
        "before-call.s3.HeadObject", lambda params, **_: asked.append(params["url_path"])
    )
    placed = storage.place(s3, [*wanted, (first, None)])
    assert len(asked) == heads
    assert placed == [
        "archive/a.file8.csv",
        "archive/b.csv",
        "archive/b.file10.csv",
        "archive/c.file11.csv",
        None,
    ]
    assert [read(s3, name, k) for k in placed[:4]] == [b"v8", b"v9", b"v10", b"v11"]
    assert {read(s3, name, k) for k in ("archive/a.csv", "archive/c.csv")} == {b"v0"}
    # a retried move finds its own copies where they went
    assert storage.place(s3, wanted) == placed[:4]
    s3.delete_object(Bucket=name, Key=first.held_key)
    assert storage.place(s3, wanted[:1]) == [None]  # moved and let go before


@pytest.mark.parametrize("enforced", [True, False], ids=["If-Match trusted", "HEAD first"])
def test_a_delete_takes_only_the_version_it_names(bucket, enforced):
    s3, name = bucket
    conditions = storage.conditions(s3, name, HELD) if enforced else storage.UNENFORCED
    old = s3.put_object(Bucket=name, Key="landing/a.csv", Body=b"old")
    new = s3.put_object(Bucket=name, Key="landing/a.csv", Body=b"new")
    etag = old["ETag"].strip('"')
    kept = storage.delete_version(s3, name, "landing/a.csv", etag, old.get("VersionId"), conditions)
    assert read(s3, name, "landing/a.csv") == b"new"
    # by VersionId the old version goes and the newer stays; by ETag it is refused
    assert kept is bool(old.get("VersionId"))
    etag = new["ETag"].strip('"')
    assert storage.delete_version(s3, name, "landing/a.csv", etag, new.get("VersionId"), conditions)
    assert "Contents" not in s3.list_objects_v2(Bucket=name, Prefix="landing/")
