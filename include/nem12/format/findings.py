"""Collecting the findings of one file, bounded per rule so broken input stays cheap."""

from __future__ import annotations

from collections import Counter

import polars as pl

from nem12.format.rules import Finding, RuleBook

#: Polars engine for the small queries each chunk runs (checks, and the parser's
#: frames): on the streaming engine their setup and threads competed with the
#: Parquet sink's, and ``nem12 parse`` took ~15% longer.
CHUNK_ENGINE = "in-memory"
#: The checks' plans: filters and selects of small in-memory frames, which
#: Polars' optimizer slows (it took 40% of a small file's checks).
CHECK_OPTIMIZATIONS = pl.QueryOptFlags.none()


class FindingCollector:
    """Keeps up to ``cap`` findings per rule and counts the rest.

    Also knows which blocks and whether the whole file an error rejects.
    Checks given as LazyFrames wait and then run together in one Polars call
    (a chunk holds dozens of small checks; one call each would cost more than
    the checking itself); reading the outcome runs them first.
    """

    def __init__(
        self,
        file: str,
        rulebook: RuleBook,
        cap: int = 100,
        reject_file_on_block_error: bool = False,
    ) -> None:
        self.file = file
        self.rulebook = rulebook
        self.cap = cap
        self.reject_file_on_block_error = reject_file_on_block_error
        self._findings: list[Finding] = []
        self._counts: Counter[str] = Counter()
        self._rejected_blocks: set[int] = set()
        self._file_rejected = False
        self._pending: list[tuple[str, pl.LazyFrame]] = []

    @property
    def rejected_blocks(self) -> set[int]:
        self.flush()
        return self._rejected_blocks

    @property
    def file_rejected(self) -> bool:
        self.flush()
        return self._file_rejected

    def add(
        self,
        rule: str,
        message: str,
        line: int | None = None,
        record_type: str | None = None,
        nmi: str | None = None,
        block: int | None = None,
    ) -> None:
        self._reject(rule, [block])
        self._counts[rule] += 1
        if self._counts[rule] <= self.cap:
            self._findings.append(
                Finding(
                    self.file, rule, self.rulebook.severity(rule), line, record_type, nmi, message
                )
            )

    def add_frame(self, rule: str, frame: pl.DataFrame | pl.LazyFrame) -> None:
        """Add one finding per row of ``frame`` (line, record_type, nmi, message, block)."""
        if isinstance(frame, pl.LazyFrame):
            self._pending.append((rule, frame))
        else:
            self._add_rows(rule, frame)

    def flush(self) -> None:
        """Run the waiting checks, in the order they were added."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        frames = pl.collect_all(
            [frame for _, frame in pending],
            engine=CHUNK_ENGINE,
            optimizations=CHECK_OPTIMIZATIONS,
        )
        for (rule, _), frame in zip(pending, frames, strict=True):
            self._add_rows(rule, frame)

    def _add_rows(self, rule: str, frame: pl.DataFrame) -> None:
        if frame.is_empty():
            return
        if "block" in frame.columns:
            self._reject(rule, frame.get_column("block").unique().to_list())
        else:
            self._reject(rule, [None])
        room = max(self.cap - self._counts[rule], 0)
        self._counts[rule] += frame.height
        severity = self.rulebook.severity(rule)
        for row in frame.head(room).iter_rows(named=True):
            self._findings.append(
                Finding(
                    self.file,
                    rule,
                    severity,
                    row.get("line"),
                    row.get("record_type"),
                    row.get("nmi"),
                    row["message"],
                )
            )

    def _reject(self, rule: str, blocks: list[int | None]) -> None:
        if self.rulebook.severity(rule) != "error":
            return
        if self.rulebook.scope(rule) == "file" or self.reject_file_on_block_error:
            self._file_rejected = True
            return
        for block in blocks:
            if block is None:
                self._file_rejected = True
            else:
                self._rejected_blocks.add(int(block))

    def finish(self) -> list[Finding]:
        """The findings, with one line per rule that hit the cap saying how many were left out."""
        self.flush()
        for rule, count in sorted(self._counts.items()):
            if count > self.cap:
                self._findings.append(
                    Finding(
                        self.file,
                        rule,
                        self.rulebook.severity(rule),
                        None,
                        None,
                        None,
                        f"{count - self.cap} more findings of rule {rule} not listed "
                        f"({count} in all)",
                    )
                )
        self._findings.sort(key=lambda f: (f.line is None, f.line or 0))
        return self._findings
