"""Reading MDFF bytes: plain, .gz, .zip (several members, zips inside zips).

Every member of an archive is a file of its own. Member names are labels
only, never paths on disk; decompression is bounded by ``ReadLimits`` so a zip
bomb stops with a clear ``archive_limit`` error instead of filling memory.
The chunker cuts a member's bytes into pieces that end on 200-record
boundaries, so a parser can work on whole data-stream blocks in flat memory.
"""

from __future__ import annotations

import gzip
import io
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
GZIP_MAGIC = b"\x1f\x8b"
_SPOOL_IN_MEMORY = 32 << 20


@dataclass(frozen=True)
class ReadLimits:
    """Limits on what reading may cost (the pipeline sets them from ``NEM12_*`` settings)."""

    max_member_bytes: int = 8 << 30
    max_ratio: float = 500.0
    max_depth: int = 3
    max_members: int = 10_000
    max_line_bytes: int = 1 << 20
    chunk_bytes: int = 6 << 20


class ReadError(Exception):
    """Bytes that cannot be turned into MDFF text; ``rule`` names the finding."""

    def __init__(self, rule: str, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message
        self.line = line


@dataclass
class Member:
    """One MDFF file: a plain file, the content of a .gz, or one archive member."""

    name: str
    opener: Callable[[], BinaryIO] | None
    size: int | None = None
    error: ReadError | None = None
    warnings: list[ReadError] = field(default_factory=list)

    @contextmanager
    def open(self) -> Iterator[BinaryIO]:
        if self.error is not None or self.opener is None:
            raise self.error or ReadError("input_unreadable", "nothing to read")
        stream = self.opener()
        try:
            yield stream
        finally:
            stream.close()


class _Counting(io.RawIOBase):
    """Counts the compressed bytes a decompressor pulls, for the ratio limit."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self.count += len(data)
        return len(data)


class _Limited(io.RawIOBase):
    """Stops decompression past the size or ratio limit, naming the member."""

    def __init__(
        self,
        inner: BinaryIO,
        label: str,
        limits: ReadLimits,
        compressed: Callable[[], int] | None,
    ) -> None:
        self._inner = inner
        self._label = label
        self._limits = limits
        self._compressed = compressed
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buffer))
        except (zlib.error, EOFError, OSError, zipfile.BadZipFile) as exc:
            raise ReadError("archive_invalid", f"{self._label}: {exc}") from exc
        self.total += len(data)
        if self.total > self._limits.max_member_bytes:
            raise ReadError(
                "archive_limit",
                f"{self._label} expands beyond {self._limits.max_member_bytes} bytes",
            )
        if self._compressed is not None and self.total > (1 << 20):
            packed = max(self._compressed(), 1)
            if self.total / packed > self._limits.max_ratio:
                raise ReadError(
                    "archive_limit",
                    f"{self._label} expands more than {self._limits.max_ratio:g}x "
                    f"({packed} compressed bytes gave {self.total})",
                )
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def _kind(head: bytes) -> str:
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    return "plain"


def _peek(stream: BinaryIO) -> bytes:
    position = stream.tell()
    head = stream.read(4)
    stream.seek(position)
    return head


def _safe_label(name: str) -> tuple[str, ReadError | None]:
    """Archive member names are untrusted: keep them as labels, flag odd ones."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in name)
    parts = clean.replace("\\", "/").split("/")
    if clean.startswith(("/", "\\")) or ".." in parts or (len(clean) > 1 and clean[1] == ":"):
        return clean, ReadError("member_name_unsafe", f"member name {clean!r} looks like a path")
    return clean, None


def iter_members(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    name: str | None = None,
    limits: ReadLimits | None = None,
) -> Iterator[Member]:
    """Yield every MDFF file inside ``source``; use each before taking the next."""
    limits = limits or ReadLimits()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = name or path.name
        try:
            handle = path.open("rb")
        except OSError as exc:
            yield Member(
                label, None, error=ReadError("input_unreadable", f"{label}: {exc.strerror}")
            )
            return
        with handle:
            yield from _members_of(handle, label, limits, depth=0, size=path.stat().st_size)
        return
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        yield from _members_of(io.BytesIO(data), name or "<bytes>", limits, depth=0, size=len(data))
        return
    yield from _members_of(source, name or "<stream>", limits, depth=0, size=None)


def record_texts(
    source: str | os.PathLike[str] | bytes | BinaryIO,
    wanted: dict[str, set[int]],
    name: str | None = None,
    limits: ReadLimits | None = None,
    chars: int = 500,
) -> dict[tuple[str, int], str]:
    """The text of the lines ``wanted`` names per member (by its label), cut to ``chars``.

    What a reviewer sends back to the data provider beside a finding; reading
    stops at each member's last wanted line, and a long line is never held whole.
    """
    found: dict[tuple[str, int], str] = {}
    try:
        for member in iter_members(source, name=name, limits=limits):
            lines = wanted.get(member.name)
            if lines and member.error is None:
                try:
                    _read_lines(member, lines, chars, found)
                except ReadError:
                    continue  # a limit the parse reported already (a bomb, say)
    except ReadError:
        pass  # the archive stopped being readable: a finding says so; the lines found stay
    return found


def _read_lines(
    member: Member, lines: set[int], chars: int, found: dict[tuple[str, int], str]
) -> None:
    last, number, continued = max(lines), 0, False
    with member.open() as stream:
        while number < last or continued:
            piece = stream.readline(chars * 4)
            if not piece:
                break
            if not continued:
                number += 1
                if number in lines:
                    text = piece.removeprefix(b"\xef\xbb\xbf") if number == 1 else piece
                    text = text.rstrip(b"\r\n")
                    try:
                        decoded = text.decode("utf-8")
                    except UnicodeDecodeError:
                        decoded = text.decode("latin-1")
                    found[(member.name, number)] = decoded[:chars]
            continued = not piece.endswith(b"\n")


def _members_of(
    stream: BinaryIO, label: str, limits: ReadLimits, depth: int, size: int | None
) -> Iterator[Member]:
    kind = _kind(_peek(stream))
    if kind == "plain":
        start = stream.tell()

        def reopen() -> BinaryIO:
            stream.seek(start)
            return _Borrowed(stream)

        yield Member(label, reopen, size=size)
        return
    if depth >= limits.max_depth:
        yield Member(
            label,
            None,
            error=ReadError(
                "archive_limit", f"{label}: archives nested deeper than {limits.max_depth}"
            ),
        )
        return
    if kind == "gzip":
        yield from _gzip_members(stream, label, limits, depth)
    else:
        yield from _zip_members(stream, label, limits, depth)


class _Borrowed(io.RawIOBase):
    """A view of a stream that the caller owns: closing it leaves the stream open."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)  # no copy through a buffer: chunks are megabytes


def _gzip_members(stream: BinaryIO, label: str, limits: ReadLimits, depth: int) -> Iterator[Member]:
    inner_label = label[:-3] if label.lower().endswith(".gz") else label
    start = stream.tell()

    def open_gzip() -> BinaryIO:
        stream.seek(start)
        counting = _Counting(stream)
        decompressed = gzip.GzipFile(fileobj=io.BufferedReader(counting), mode="rb")
        return _Limited(decompressed, label, limits, lambda: counting.count)

    try:
        with open_gzip() as probe:
            head = probe.read(4)
    except ReadError as exc:
        yield Member(inner_label, None, error=exc)
        return
    if _kind(head) == "plain":
        yield Member(inner_label, open_gzip)
        return
    with _spooled(open_gzip, label) as (spool, error):
        if error is not None:
            yield Member(inner_label, None, error=error)
            return
        yield from _members_of(spool, inner_label, limits, depth + 1, size=None)


def _zip_members(stream: BinaryIO, label: str, limits: ReadLimits, depth: int) -> Iterator[Member]:
    try:
        archive = zipfile.ZipFile(stream)
        infos = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        yield Member(label, None, error=ReadError("archive_invalid", f"{label}: {exc}"))
        return
    if not infos:
        yield Member(label, None, error=ReadError("archive_empty", f"{label} holds no files"))
        return
    if len(infos) > limits.max_members:
        yield Member(
            label,
            None,
            error=ReadError(
                "archive_limit", f"{label} holds {len(infos)} members (limit {limits.max_members})"
            ),
        )
        return
    with archive:
        for info in infos:
            member_name, warning = _safe_label(info.filename)
            member_label = f"{label}!{member_name}"
            declared = _declared_limit(info, member_label, limits)
            if declared is not None:
                yield Member(member_label, None, error=declared)
                continue

            def open_member(
                info: zipfile.ZipInfo = info, member_label: str = member_label
            ) -> BinaryIO:
                try:
                    raw = archive.open(info)
                except (
                    zipfile.BadZipFile,
                    NotImplementedError,
                    RuntimeError,
                    OSError,
                    ValueError,
                ) as exc:
                    raise ReadError("archive_invalid", f"{member_label}: {exc}") from exc
                return _Limited(raw, member_label, limits, lambda: info.compress_size)

            try:
                with open_member() as probe:
                    head = probe.read(4)
            except ReadError as exc:
                yield Member(member_label, None, error=exc)
                continue
            if _kind(head) == "plain":
                member = Member(member_label, open_member, size=info.file_size)
                if warning:
                    member.warnings.append(warning)
                yield member
                continue
            with _spooled(open_member, member_label) as (spool, error):
                if error is not None:
                    yield Member(member_label, None, error=error)
                    continue
                yield from _members_of(spool, member_label, limits, depth + 1, size=None)


def _declared_limit(info: zipfile.ZipInfo, label: str, limits: ReadLimits) -> ReadError | None:
    """Refuse a member whose own header announces a bomb; liars are caught while reading."""
    if info.file_size > limits.max_member_bytes:
        return ReadError(
            "archive_limit",
            f"{label} declares {info.file_size} bytes (limit {limits.max_member_bytes})",
        )
    if info.file_size > (1 << 20) and info.file_size > limits.max_ratio * max(
        info.compress_size, 1
    ):
        return ReadError(
            "archive_limit",
            f"{label} expands more than {limits.max_ratio:g}x "
            f"({info.compress_size} compressed bytes declare {info.file_size})",
        )
    return None


@contextmanager
def _spooled(
    opener: Callable[[], BinaryIO], label: str
) -> Iterator[tuple[BinaryIO, ReadError | None]]:
    """Copy a decompressed stream to an anonymous temp file (archives need seeking)."""
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
        try:
            with opener() as source:
                while block := source.read(1 << 20):
                    spool.write(block)
        except ReadError as exc:
            yield spool, exc
            return
        spool.seek(0)
        yield spool, None  # type: ignore[misc]


@dataclass(frozen=True)
class Chunk:
    """Whole lines of one member; ``block_complete`` says the last 200 block ends here,
    ``last`` that the member ends here (a chunk cut before a 200 always has one after it)."""

    data: bytes
    first_line: int
    block_complete: bool
    last: bool = False


def iter_chunks(stream: BinaryIO, limits: ReadLimits, block_record: str = "200") -> Iterator[Chunk]:
    """Cut a member into chunks of about ``chunk_bytes`` ending before a ``block_record``
    (200 in NEM12; 250 in NEM13, so a 550 stays with its read).

    A data-stream block larger than four chunks is cut before a 300 record
    instead (so 400 events stay with their day) and flagged incomplete.
    """
    boundary = f"\n{block_record},".encode()
    target = limits.chunk_bytes
    buffer = b""
    line = 1
    eof = False
    while not eof or buffer:
        while not eof and len(buffer) < target:
            block = stream.read(target)
            if not block:
                eof = True
                break
            buffer += block
        _check_line_length(buffer, line, limits)
        if eof:
            if buffer:
                yield Chunk(buffer, line, True, last=True)
            return
        cut = buffer.rfind(boundary)
        complete = cut > 0
        if not complete:
            cut = -1
            if len(buffer) >= 4 * target:  # a block larger than four chunks
                cut = buffer.rfind(b"\n300,")
                if cut <= 0:
                    cut = buffer.rfind(b"\n")
        if cut < 0:  # nowhere to cut yet (a long block or line): read on; the limits bound it
            block = stream.read(target)
            if block:
                buffer += block
            else:
                eof = True
            continue
        piece, buffer = buffer[: cut + 1], buffer[cut + 1 :]
        yield Chunk(piece, line, complete)
        line += piece.count(b"\n")


def _check_line_length(buffer: bytes, line: int, limits: ReadLimits) -> None:
    """Raise if any line in ``buffer`` is longer than the limit (cost: len/limit finds)."""
    limit = limits.max_line_bytes
    position = 0
    while len(buffer) - position > limit:
        newline = buffer.rfind(b"\n", position, position + limit + 1)
        if newline == -1:
            at = line + buffer.count(b"\n", 0, position)
            raise ReadError("line_too_long", f"line {at} is longer than {limit} bytes", line=at)
        position = newline + 1
