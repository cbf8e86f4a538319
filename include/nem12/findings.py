"""Collecting the findings of one file, bounded per rule so broken input stays cheap."""

from __future__ import annotations

from collections import Counter

import polars as pl

from nem12.rules import Finding, RuleBook


class FindingCollector:
    """Keeps up to ``cap`` findings per rule and counts the rest.

    Also knows which blocks and whether the whole file an error rejects.
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
        self.findings: list[Finding] = []
        self.counts: Counter[str] = Counter()
        self.rejected_blocks: set[int] = set()
        self.file_rejected = False

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
        self.counts[rule] += 1
        if self.counts[rule] <= self.cap:
            self.findings.append(
                Finding(
                    self.file, rule, self.rulebook.severity(rule), line, record_type, nmi, message
                )
            )

    def add_frame(self, rule: str, frame: pl.DataFrame) -> None:
        """Add one finding per row of ``frame`` (line, record_type, nmi, message, block)."""
        if frame.is_empty():
            return
        if "block" in frame.columns:
            self._reject(rule, frame.get_column("block").unique().to_list())
        else:
            self._reject(rule, [None])
        room = max(self.cap - self.counts[rule], 0)
        self.counts[rule] += frame.height
        severity = self.rulebook.severity(rule)
        for row in frame.head(room).iter_rows(named=True):
            self.findings.append(
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
            self.file_rejected = True
            return
        for block in blocks:
            if block is None:
                self.file_rejected = True
            else:
                self.rejected_blocks.add(int(block))

    def finish(self) -> list[Finding]:
        """The findings, with one line per rule that hit the cap saying how many were left out."""
        for rule, count in sorted(self.counts.items()):
            if count > self.cap:
                self.findings.append(
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
        self.findings.sort(key=lambda f: (f.line is None, f.line or 0))
        return self.findings
