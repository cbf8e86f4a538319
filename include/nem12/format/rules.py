"""The one catalogue of MDFF NEM12 structure rules, and the findings they produce.

Every check anywhere in the project (parser, CLI, Great Expectations suites)
names a rule from ``RULES``; its scope says what an error rejects:
``file`` the whole file, ``block`` the 200 data-stream block it occurs in.
Warnings are reported and never reject anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Literal

Severity = Literal["error", "warning"]
Scope = Literal["file", "block"]


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    scope: Scope
    message: str


def _catalogue(*rules: Rule) -> dict[str, Rule]:
    return {rule.id: rule for rule in rules}


# Spec references are to the AEMO "Meter Data File Format Specification NEM12 &
# NEM13" v2.6; where real AEMO example files break a rule that public
# implementations quote, the rule is a warning and says so.
RULES: dict[str, Rule] = _catalogue(
    # --- reading the bytes ---------------------------------------------------
    Rule(
        "input_unreadable",
        "error",
        "file",
        "the input cannot be read or parsed (the message names the cause)",
    ),
    Rule("archive_invalid", "error", "file", "corrupt or unsupported archive"),
    Rule("archive_empty", "error", "file", "the archive holds no files"),
    Rule(
        "archive_limit",
        "error",
        "file",
        "decompression stopped by a size, ratio, depth or member-count limit",
    ),
    Rule(
        "member_name_unsafe",
        "warning",
        "file",
        "archive member name holds path components; it is used as a label only",
    ),
    Rule(
        "encoding",
        "warning",
        "file",
        "bytes that are not UTF-8 (MDFF is ASCII); decoded as Latin-1",
    ),
    Rule("line_too_long", "error", "file", "a line exceeds the configured maximum length"),
    # --- file structure ------------------------------------------------------
    Rule("file_empty", "error", "file", "the file holds no records"),
    Rule("header_missing", "error", "file", "the first record is not a 100 header"),
    Rule("header_repeated", "error", "file", "more than one 100 header"),
    Rule("version_invalid", "error", "file", "VersionHeader is not NEM12 or NEM13"),
    Rule("header_datetime", "error", "file", "header DateTime is not a valid YYYYMMDDHHMM"),
    Rule(
        "header_only",
        "error",
        "file",
        "the file holds no data records (no 200/300 in NEM12, no 250 in NEM13)",
    ),
    Rule("end_missing", "error", "file", "no 900 end-of-data record (truncated file?)"),
    Rule("end_repeated", "error", "file", "more than one 900 end-of-data record"),
    Rule("data_after_end", "error", "file", "records after the 900 end-of-data record"),
    Rule(
        "record_type_unknown",
        "error",
        "file",
        "unknown record indicator (NEM12 has 100, 200, 300, 400, 500, 900; "
        "NEM13 has 100, 250, 550, 900)",
    ),
    Rule(
        "record_wrong_version",
        "error",
        "file",
        "a NEM13 record (250, 550) in a NEM12 file or a NEM12 record (200-500) in a "
        "NEM13 file: the spec allows one version per file",
    ),
    Rule(
        "record_outside_block",
        "error",
        "file",
        "a 300/400/500 record before any 200 record (NEM13: a 550 before any 250)",
    ),
    Rule("blank_line", "warning", "file", "blank line ignored"),
    Rule(
        "filename_participants",
        "warning",
        "file",
        "participants in the file name differ from the header's From/To",
    ),
    # --- 200 NMI data details --------------------------------------------------
    Rule("record_fields", "error", "block", "record has too few fields or unexpected extra fields"),
    Rule(
        "nmi_format",
        "warning",
        "block",
        "NMI is not 10 characters of A-Z (no I or O) and 0-9; warning by default "
        "because AEMO's published examples use placeholder NMIs",
    ),
    Rule("nmi_missing", "error", "block", "NMI is empty"),
    Rule("nmi_suffix_missing", "error", "block", "NMISuffix is empty"),
    Rule("interval_length", "error", "block", "IntervalLength is not 5, 15 or 30"),
    Rule("uom_invalid", "error", "block", "UOM is not a unit of the MDFF list"),
    # --- 300 interval data ----------------------------------------------------
    Rule(
        "value_count",
        "error",
        "block",
        "number of interval values does not equal 1440 / IntervalLength",
    ),
    Rule("interval_date", "error", "block", "IntervalDate is not a real YYYYMMDD date"),
    Rule(
        "interval_date_repeated",
        "error",
        "block",
        "IntervalDate repeated for the same NMI and suffix in one file",
    ),
    Rule(
        "interval_date_order",
        "warning",
        "block",
        "300 records of a data stream are not in date order",
    ),
    Rule("value_not_numeric", "error", "block", "interval value is not a decimal number"),
    Rule("value_negative", "error", "block", "interval value is negative"),
    Rule(
        "quality_method",
        "error",
        "block",
        "QualityMethod is not A, E, F, N, S or V with an optional two-digit method",
    ),
    Rule(
        "quality_method_number",
        "error",
        "block",
        "quality flags E, F and S need a two-digit method number",
    ),
    Rule("reason_code_required", "error", "block", "quality flags F and S need a ReasonCode"),
    Rule("reason_code_invalid", "warning", "block", "ReasonCode is not a known MDFF reason code"),
    Rule(
        "reason_code_on_variable",
        "warning",
        "block",
        "a 300 record with QualityMethod V carries no ReasonCode (it belongs in the 400s)",
    ),
    Rule(
        "reason_description_required",
        "warning",
        "block",
        "ReasonCode 0 (free text) needs a ReasonDescription",
    ),
    Rule(
        "update_datetime_invalid", "error", "block", "UpdateDateTime is not a valid YYYYMMDDHHMMSS"
    ),
    Rule(
        "update_datetime_nonstandard",
        "warning",
        "block",
        "UpdateDateTime missing or in 12-digit YYYYMMDDHHMM form",
    ),
    Rule(
        "msats_datetime_invalid",
        "warning",
        "block",
        "MSATSLoadDateTime is not a valid YYYYMMDDHHMMSS",
    ),
    # --- 400 interval events --------------------------------------------------
    Rule("event_missing", "error", "block", "QualityMethod V but no 400 records follow"),
    Rule(
        "event_unexpected",
        "error",
        "block",
        "400 record not after a 300 record with QualityMethod V",
    ),
    Rule(
        "event_range",
        "error",
        "block",
        "400 StartInterval/EndInterval not whole numbers within 1..N with start <= end",
    ),
    Rule(
        "event_coverage",
        "error",
        "block",
        "400 records of a V day do not cover intervals 1..N exactly once",
    ),
    Rule(
        "event_quality",
        "error",
        "block",
        "400 QualityMethod invalid (V is not allowed in a 400 record)",
    ),
    # --- 250 basic meter data and 550 B2B details (NEM13) ------------------------
    # A block of a NEM13 file is one 250 read (with its 550): an error rejects the
    # read, the file's other reads load. The rules above that a 250 shares with
    # NEM12 (record_fields, nmi_*, uom_invalid, quality_method*, reason_*,
    # update_datetime_*, msats_datetime_invalid) apply to it with the same severity.
    Rule(
        "direction_indicator",
        "error",
        "block",
        "DirectionIndicator is not I (import) or E (export): the read's sign is unknown",
    ),
    Rule(
        "register_read_invalid",
        "error",
        "block",
        "Previous or CurrentRegisterRead is not a register read (digits, optional decimals)",
    ),
    Rule(
        "read_datetime_invalid",
        "error",
        "block",
        "Previous or CurrentRegisterReadDateTime is not a real YYYYMMDDHHMMSS",
    ),
    Rule(
        "read_datetime_nonstandard",
        "warning",
        "block",
        "a read datetime in 12-digit YYYYMMDDHHMM form (the spec has 14 digits); read so",
    ),
    Rule(
        "read_period_order",
        "error",
        "block",
        "PreviousRegisterReadDateTime is not before CurrentRegisterReadDateTime "
        "(the spec: the previous read is the earlier one)",
    ),
    Rule(
        "previous_read_estimated",
        "warning",
        "block",
        "PreviousQualityMethod is E: the spec says an estimate cannot be the previous "
        "read; a warning, the quantity is still the MDP's",
    ),
    Rule("quantity_invalid", "error", "block", "Quantity is not a decimal number"),
    Rule(
        "quantity_negative",
        "warning",
        "block",
        "Quantity is negative; the spec forbids it, but AEMO's published NEM13 examples "
        "carry negative quantities, so it is a warning",
    ),
    Rule(
        "quantity_mismatch",
        "warning",
        "block",
        "an energy Quantity differs from CurrentRegisterRead - PreviousRegisterRead, "
        "also allowing one rollover at the dial's digits; a warning because the "
        "register multiplier is not in the file",
    ),
    Rule(
        "next_read_date_invalid",
        "warning",
        "block",
        "NextScheduledReadDate is given but not a real YYYYMMDD date",
    ),
    Rule(
        "read_repeated",
        "error",
        "block",
        "a read of the same NMI, suffix and CurrentRegisterReadDateTime earlier in the file",
    ),
    Rule(
        "trans_code_invalid",
        "warning",
        "block",
        "a 550 TransCode is not an Appendix A transaction code",
    ),
    Rule(
        "b2b_repeated",
        "warning",
        "block",
        "more than one 550 after a 250; the first is kept with the read",
    ),
)

SEVERITIES: tuple[Severity, ...] = ("error", "warning")


@dataclass(frozen=True)
class Finding:
    """One broken rule at one place: what a reviewer needs to chase the MDP."""

    file: str
    rule: str
    severity: Severity
    line: int | None
    record_type: str | None
    nmi: str | None
    message: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def as_line(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        nmi = f" [NMI {self.nmi}]" if self.nmi else ""
        return f"{where}: {self.severity} {self.rule}: {self.message}{nmi}"


class RuleBook:
    """The catalogue with a user's severity overrides applied (e.g. nmi_format=error)."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        overrides = dict(overrides or {})
        for rule_id, severity in overrides.items():
            if rule_id not in RULES:
                raise ValueError(f"unknown rule {rule_id!r}")
            if severity not in SEVERITIES:
                raise ValueError(f"severity for {rule_id} must be error or warning")
        self._overrides = overrides

    def severity(self, rule_id: str) -> Severity:
        return self._overrides.get(rule_id, RULES[rule_id].severity)  # type: ignore[return-value]

    def scope(self, rule_id: str) -> Scope:
        return RULES[rule_id].scope
