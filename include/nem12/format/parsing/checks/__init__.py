"""The parser's checks, one module per record type, registered by rule (see ``registry``)."""

from nem12.format.parsing.checks import (  # noqa: F401  (importing registers the checks)
    basic_meter_data,
    file,
    header,
    interval_data,
    interval_event,
    nmi_details,
    values,
)
from nem12.format.parsing.checks.registry import (
    CHECKS,
    RAISED_BY_DRIVER,
    RAISED_BY_READING,
    FindingRow,
    Frame,
    check,
    checks_on,
)

__all__ = [
    "CHECKS",
    "RAISED_BY_DRIVER",
    "RAISED_BY_READING",
    "FindingRow",
    "Frame",
    "check",
    "checks_on",
]
