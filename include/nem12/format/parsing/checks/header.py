"""Checks of the 100 header record: that it comes first, its version, DateTime and participants.

The same for NEM12 and NEM13 files.

They read the file's first record (a ``records.HeaderRecord``) in Python: there is one per file.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from nem12.format import spec
from nem12.format.parsing.checks.registry import FindingRow, check
from nem12.format.parsing.records import HeaderRecord, header_datetime


def _is_mdff(first: HeaderRecord) -> bool:
    return first.record_type == "100" and first.version.upper() in spec.RECORD_TYPES_OF


@check("header_missing", on="header")
def header_missing(first: HeaderRecord) -> list[FindingRow]:
    if first.record_type == "100":
        return []
    message = f"the first record is {first.record_type!r}, not a 100 header"
    return [FindingRow(message, first.line, first.record_type)]


@check("version_invalid", on="header")
def version_invalid(first: HeaderRecord) -> list[FindingRow]:
    if first.record_type != "100" or _is_mdff(first):
        return []
    message = f"VersionHeader {first.version[:20]!r} is not NEM12 or NEM13"
    return [FindingRow(message, first.line, "100")]


@check("header_datetime", on="header")
def header_datetime_invalid(first: HeaderRecord) -> list[FindingRow]:
    if not _is_mdff(first) or header_datetime(first.datetime) is not None:
        return []
    message = f"header DateTime {first.datetime[:20]!r} is not YYYYMMDDHHMM"
    return [FindingRow(message, first.line, "100")]


@check("filename_participants", on="header")
def filename_participants(first: HeaderRecord) -> list[FindingRow]:
    """NEM12#<FileID>#<From>#<To>: compare the participants with the header's."""
    if not _is_mdff(first):
        return []
    parts = PurePosixPath(first.file.replace("!", "/")).name.split("#")
    if len(parts) != 4 or parts[0].upper() not in ("NEM12", "NEM13"):
        return []
    to_name = parts[3].split(".")[0]
    header = first.header()
    pairs = [(parts[2], header.from_participant), (to_name, header.to_participant)]
    if not any(said and named.upper() != said.upper() for named, said in pairs):
        return []
    message = (
        f"file name says From {parts[2]} To {to_name}; header says From "
        f"{header.from_participant} To {header.to_participant}"
    )
    return [FindingRow(message, first.line, "100")]
