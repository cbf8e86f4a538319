"""The alert rules and the notifiers, read from one versioned JSON config.

The config is a file (``NEM12_ALERT_CONFIG``, by default ``include/config/alerts.json``
in the checkout) or the Airflow Variable ``nem12_alert_config`` holding the same
JSON, which wins when set (the DAG reads the Variable and passes its text here;
this module imports nothing of Airflow)::

    {"version": "2026-12-01.1",
     "notifiers": {"ops-mail": {"type": "smtp", "conn_id": "smtp_default",
                                "to": ["ops@example.com"]},
                   "ops-hook": {"type": "webhook", "conn_id": "nem12_webhook",
                                "endpoint": "/alerts"}},
     "notify": {"alerts": ["ops-hook"], "runs": ["ops-hook"]},
     "rules": [{"name": "usage_above_50kwh", "kind": "usage_above", "suffixes": ["E"],
                "threshold": "50", "uom": "kWh",
                "severity": {"high": 1.5, "critical": 2}, "notify": ["ops-mail"]}]}

Numbers may be JSON numbers or decimal strings; both are kept exact
(``Decimal``). A notifier holds no secret: its ``conn_id`` names the Airflow
connection that does. A rule's alerts go to the notifiers of the config's
``notify.alerts`` and to those of the rule's own ``notify``. Every error is an
``AlertConfigError``, one line: the source, the JSON path of the field and
what is wrong with it.

The rule kinds and their parameters (``suffixes`` filters the streams by the
start of their suffix, ``"E"`` for every consumption stream, ``"E1"`` for one;
absent or ``[]``: every stream; ``nem12.warehouse.alerts`` evaluates them):

``usage_above``
    a day's total above ``threshold`` (in ``uom``; streams of that uom only).
``usage_above_median``
    a day's total above ``factor`` times the median of the stream's totals
    over the ``window_days`` (30) days before it, at least ``min_prior_days``
    (7) of them delivered and the median above zero; ``minimum`` (0): totals at
    or below it never fire; ``uom`` optional.
``missing_days``
    a day a stream that was reporting did not deliver: after a delivered day
    of the stream, and before a later delivered day of the stream (a gap) or
    up to the newest day delivered for any stream of its NMI less ``grace_days``
    (0; it stopped while the NMI's others go on). One alert per missing day, the
    first ``max_days`` (31) days of a gap; observed: the days missing so far
    (the day's distance from the stream's last delivered day), threshold 0.
``estimated_share``
    the share of a day's intervals in the quality ``classes`` (``["E", "N"]``:
    estimated and null, i.e. missing) above ``limit`` (a fraction, 0 < limit < 1).
``export_on_consumption_only``
    an export stream's day (``suffixes``, default ``["B"]``) with a total above
    ``threshold`` at an NMI that, over the ``window_days`` (30) days before it,
    delivered consumption days (``consumption_suffixes``, default ``["E"]``)
    and no export day above ``threshold``; ``uom`` optional. One alert when
    export starts, not one a day after.

Severity, by how far a day is over: an alert is ``medium``; ``high`` when the
observed figure is at least ``severity.high`` times the threshold (1.5 by
default), ``critical`` at ``severity.critical`` times (2). For ``missing_days``
the bands are days missing so far (high 3, critical 7).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nem12.pipeline.settings import Settings

#: The Airflow Variable that, when set, holds the config instead of the file.
VARIABLE = "nem12_alert_config"
VARIABLE_SOURCE = f"Variable {VARIABLE}"

NOTIFIER_KINDS = ("smtp", "webhook")
RULE_KINDS = (
    "usage_above",
    "usage_above_median",
    "missing_days",
    "estimated_share",
    "export_on_consumption_only",
)
#: The quality classes ``estimated_share`` may count (QualityFlag letters).
SHARE_CLASSES = ("A", "E", "F", "N", "S")

#: Option names that would hold a secret: those belong in an Airflow connection.
_SECRET_WORDS = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "credential",
    "authorization",
)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SUFFIX = re.compile(r"[A-Z][A-Z0-9]?")


class AlertConfigError(ValueError):
    """The alert config cannot be used; the message is one line naming where and why."""


@dataclass(frozen=True)
class NotifierConfig:
    """A notifier: ``kind`` smtp or webhook, ``options`` the rest of its entry
    (``conn_id``, ``to``, ``endpoint``...) as written."""

    name: str
    kind: str  # "smtp" | "webhook"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Bands:
    """Severity bands: at least ``high`` (``critical``) times over is high (critical);
    for ``missing_days``, days missing so far."""

    high: Decimal
    critical: Decimal

    def severity(self, over: Decimal) -> str:
        """The severity of an alert ``over`` times over (or days missing)."""
        if over >= self.critical:
            return "critical"
        return "high" if over >= self.high else "medium"


RATIO_BANDS = Bands(high=Decimal("1.5"), critical=Decimal("2"))
DAY_BANDS = Bands(high=Decimal("3"), critical=Decimal("7"))


@dataclass(frozen=True)
class AlertRule:
    """One rule of the config; the parameters a kind does not use keep their defaults."""

    name: str
    kind: str
    severity: Bands
    notify: tuple[str, ...]  # besides the config's notify.alerts
    suffixes: tuple[str, ...] = ()
    description: str = ""
    threshold: Decimal | None = None  # usage_above, export_on_consumption_only
    uom: str | None = None  # usage_above (required), the others' optional filter
    factor: Decimal | None = None  # usage_above_median
    window_days: int = 30  # usage_above_median, export_on_consumption_only
    min_prior_days: int = 7  # usage_above_median
    minimum: Decimal = Decimal(0)  # usage_above_median
    max_days: int = 31  # missing_days
    grace_days: int = 0  # missing_days
    classes: tuple[str, ...] = ("E", "N")  # estimated_share
    limit: Decimal | None = None  # estimated_share
    consumption_suffixes: tuple[str, ...] = ("E",)  # export_on_consumption_only


@dataclass(frozen=True)
class AlertConfig:
    """The whole config: its version (stored with every alert), the rules in
    order, the notifiers by name and the notifiers of alerts and of runs."""

    version: str
    rules: tuple[AlertRule, ...]
    notifiers: dict[str, NotifierConfig]
    notify_alerts: tuple[str, ...]
    notify_runs: tuple[str, ...]
    source: str = ""

    def rule(self, name: str) -> AlertRule:
        """The rule called ``name`` (KeyError when there is none)."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)


# --- parsing ------------------------------------------------------------------------

#: Keys every rule may have, then each kind's own (required ones first).
_COMMON_KEYS = ("name", "kind", "suffixes", "severity", "notify", "description")
_KIND_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # kind: (required, optional)
    "usage_above": (("threshold", "uom"), ()),
    "usage_above_median": (("factor",), ("window_days", "min_prior_days", "minimum", "uom")),
    "missing_days": ((), ("max_days", "grace_days")),
    "estimated_share": (("limit",), ("classes",)),
    "export_on_consumption_only": (
        ("threshold",),
        ("window_days", "consumption_suffixes", "uom"),
    ),
}
_TOP_KEYS = ("version", "description", "notifiers", "notify", "rules")


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, what: str) -> AlertConfigError:
        return AlertConfigError(f"{self.source}: {path}: {what}")

    def object(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be an object, not {_json_type(value)}")
        return value

    def keys(self, value: dict[str, Any], path: str, allowed: tuple[str, ...]) -> None:
        for key in value:
            if key not in allowed:
                raise self.fail(
                    _join(path, key), f"unknown key; expected one of {', '.join(allowed)}"
                )

    def text(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"must be a non-empty string, not {_shown(value)}")
        return value

    def name(self, value: Any, path: str) -> str:
        text = self.text(value, path)
        if not _NAME.fullmatch(text):
            raise self.fail(
                path, f"{text!r} is not a name (letters, digits, '_', '.', '-', no spaces)"
            )
        return text

    def names(self, value: Any, path: str, known: dict[str, Any]) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list of notifier names, not {_json_type(value)}")
        names = []
        for index, item in enumerate(value):
            where = f"{path}[{index}]"
            name = self.text(item, where)
            if name not in known:
                choices = ", ".join(known) or "none are defined"
                raise self.fail(where, f"unknown notifier {name!r}; notifiers: {choices}")
            if name in names:
                raise self.fail(where, f"notifier {name!r} is listed twice")
            names.append(name)
        return tuple(names)

    def suffixes(self, value: Any, path: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list of suffixes, not {_json_type(value)}")
        found = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not _SUFFIX.fullmatch(item):
                raise self.fail(
                    f"{path}[{index}]",
                    f"{_shown(item)} is not a suffix or its first letter (E, B1...)",
                )
            found.append(item)
        return tuple(found)

    def number(self, value: Any, path: str, *, above: int | None = None) -> Decimal:
        number: Decimal | None = None
        if isinstance(value, Decimal | int) and not isinstance(value, bool):
            number = Decimal(value)
        elif isinstance(value, str):
            try:
                number = Decimal(value.strip())
            except InvalidOperation:
                number = None
        if number is None or not number.is_finite():
            raise self.fail(path, f"must be a decimal number, not {_shown(value)}")
        if above is not None and number <= above:
            raise self.fail(path, f"must be above {above}, not {_shown(value)}")
        return number

    def whole(self, value: Any, path: str, *, least: int) -> int:
        try:
            number = self.number(value, path) if not isinstance(value, bool) else None
        except AlertConfigError:
            number = None
        if number is None or number != number.to_integral_value():
            raise self.fail(path, f"must be a whole number, not {_shown(value)}")
        if number < least:
            raise self.fail(path, f"must be at least {least}, not {_shown(value)}")
        return int(number)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _shown(value: Any) -> str:
    if isinstance(value, Decimal | int | float) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return repr(value)
    return _json_type(value)


def parse_config(text: str, source: str) -> AlertConfig:
    """The config in ``text`` (JSON), checked whole; ``source`` names it in errors
    (the file's path or ``Variable nem12_alert_config``)."""
    read = _Reader(source)
    try:
        data = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise AlertConfigError(
            f"{source}: line {error.lineno} column {error.colno}: not JSON: {error.msg}"
        ) from None
    except ValueError as error:
        raise AlertConfigError(f"{source}: not JSON: {error}") from None
    top = read.object(data, "$")
    read.keys(top, "", _TOP_KEYS)
    if "version" not in top:
        raise read.fail("version", "missing; the config must say its version")
    version = read.text(top["version"], "version")

    notifiers: dict[str, NotifierConfig] = {}
    for name, entry in read.object(top.get("notifiers", {}), "notifiers").items():
        path = f"notifiers.{name}"
        read.name(name, path)
        notifiers[name] = _notifier(read, name, entry, path)

    notify = read.object(top.get("notify", {}), "notify")
    read.keys(notify, "notify", ("alerts", "runs"))
    notify_alerts = read.names(notify.get("alerts", []), "notify.alerts", notifiers)
    notify_runs = read.names(notify.get("runs", []), "notify.runs", notifiers)

    if "rules" not in top:
        raise read.fail("rules", "missing; the config must list its rules (may be [])")
    if not isinstance(top["rules"], list):
        raise read.fail("rules", f"must be a list of rules, not {_json_type(top['rules'])}")
    rules: list[AlertRule] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(top["rules"]):
        rule = _rule(read, entry, f"rules[{index}]", notifiers)
        if rule.name in seen:
            raise read.fail(
                f"rules[{index}].name",
                f"duplicate rule name {rule.name!r} (also rules[{seen[rule.name]}])",
            )
        seen[rule.name] = index
        rules.append(rule)
    return AlertConfig(
        version=version,
        rules=tuple(rules),
        notifiers=notifiers,
        notify_alerts=notify_alerts,
        notify_runs=notify_runs,
        source=source,
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _notifier(read: _Reader, name: str, entry: Any, path: str) -> NotifierConfig:
    entry = read.object(entry, path)
    if "type" not in entry:
        raise read.fail(f"{path}.type", f"missing; one of {', '.join(NOTIFIER_KINDS)}")
    kind = entry["type"]
    if kind not in NOTIFIER_KINDS:
        raise read.fail(
            f"{path}.type",
            f"unknown notifier type {_shown(kind)}; expected one of {', '.join(NOTIFIER_KINDS)}",
        )
    options = {key: value for key, value in entry.items() if key != "type"}
    for where in _secret_keys(options, path):
        raise read.fail(
            where,
            "no secrets in the alert config: keep them in the Airflow connection its conn_id names",
        )
    if "conn_id" in options:
        read.text(options["conn_id"], f"{path}.conn_id")
    if kind == "smtp":
        to = options.get("to")
        if not isinstance(to, list) or not to:
            raise read.fail(f"{path}.to", "an smtp notifier needs a list of addresses to send to")
        for index, address in enumerate(to):
            if not isinstance(address, str) or "@" not in address:
                raise read.fail(f"{path}.to[{index}]", f"{_shown(address)} is not an address")
    return NotifierConfig(name=name, kind=kind, options=options)


def _secret_keys(options: dict[str, Any], path: str) -> list[str]:
    """The paths of keys (nested ones too, e.g. a webhook's headers) naming a secret."""
    found = []
    for key, value in options.items():
        if any(word in str(key).lower() for word in _SECRET_WORDS):
            found.append(f"{path}.{key}")
        if isinstance(value, dict):
            found += _secret_keys(value, f"{path}.{key}")
    return found


def _rule(
    read: _Reader,
    entry: Any,
    path: str,
    notifiers: dict[str, NotifierConfig],
) -> AlertRule:
    entry = read.object(entry, path)
    if "name" not in entry:
        raise read.fail(f"{path}.name", "missing; every rule needs a name")
    name = read.name(entry["name"], f"{path}.name")
    if "kind" not in entry:
        raise read.fail(f"{path}.kind", f"missing; one of {', '.join(RULE_KINDS)}")
    kind = entry["kind"]
    if kind not in _KIND_KEYS:
        raise read.fail(
            f"{path}.kind", f"unknown kind {_shown(kind)}; expected one of {', '.join(RULE_KINDS)}"
        )
    required, optional = _KIND_KEYS[kind]
    read.keys(entry, path, _COMMON_KEYS + required + optional)
    for key in required:
        if key not in entry:
            raise read.fail(f"{path}.{key}", f"missing; a {kind} rule needs it")

    values: dict[str, Any] = {}
    for key, value in entry.items():
        where = f"{path}.{key}"
        if key in ("suffixes", "consumption_suffixes"):
            values[key] = read.suffixes(value, where)
        elif key in ("threshold", "factor"):
            values[key] = read.number(value, where, above=0)
        elif key == "minimum":
            values[key] = read.number(value, where)
            if values[key] < 0:
                raise read.fail(where, f"must be at least 0, not {_shown(value)}")
        elif key == "limit":
            values[key] = read.number(value, where, above=0)
            if values[key] >= 1:
                raise read.fail(where, f"must be a fraction below 1, not {_shown(value)}")
        elif key in ("window_days", "min_prior_days", "max_days"):
            values[key] = read.whole(value, where, least=1)
        elif key == "grace_days":
            values[key] = read.whole(value, where, least=0)
        elif key == "uom":
            values[key] = read.text(value, where)
        elif key == "description":
            if not isinstance(value, str):
                raise read.fail(where, f"must be a string, not {_json_type(value)}")
            values[key] = value
        elif key == "classes":
            values[key] = _classes(read, value, where)
    if kind == "usage_above_median" and values.get("min_prior_days", 7) > values.get(
        "window_days", 30
    ):
        raise read.fail(f"{path}.min_prior_days", "must not exceed window_days")
    notify = read.names(entry.get("notify", []), f"{path}.notify", notifiers)
    defaults = DAY_BANDS if kind == "missing_days" else RATIO_BANDS
    bands = _bands(read, entry.get("severity", {}), f"{path}.severity", defaults, kind)
    if kind == "export_on_consumption_only" and "suffixes" not in values:
        values["suffixes"] = ("B",)
    return AlertRule(name=name, kind=kind, severity=bands, notify=notify, **values)


def _classes(read: _Reader, value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise read.fail(path, "must be a non-empty list of quality classes")
    for index, item in enumerate(value):
        if item not in SHARE_CLASSES:
            raise read.fail(
                f"{path}[{index}]",
                f"unknown quality class {_shown(item)}; expected one of {', '.join(SHARE_CLASSES)}",
            )
    if len(set(value)) != len(value):
        raise read.fail(path, "lists a class twice")
    return tuple(value)


def _bands(read: _Reader, value: Any, path: str, defaults: Bands, kind: str) -> Bands:
    value = read.object(value, path)
    read.keys(value, path, ("high", "critical"))
    found = {}
    for key in ("high", "critical"):
        if key not in value:
            found[key] = getattr(defaults, key)
        elif kind == "missing_days":
            found[key] = Decimal(read.whole(value[key], f"{path}.{key}", least=1))
        else:
            found[key] = read.number(value[key], f"{path}.{key}")
            if found[key] < 1:
                raise read.fail(
                    f"{path}.{key}", f"must be at least 1 (times the threshold), not {value[key]}"
                )
    if found["critical"] < found["high"]:
        raise read.fail(
            f"{path}.critical", f"must be at least high ({found['high']}), not {found['critical']}"
        )
    return Bands(**found)


def load_config(settings: Settings, variable_text: str | None = None) -> AlertConfig:
    """The config: the Variable's text when it is set (not blank), else the file
    ``settings.alert_config``."""
    if variable_text is not None and variable_text.strip():
        return parse_config(variable_text, VARIABLE_SOURCE)
    path = Path(settings.alert_config)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise AlertConfigError(f"{path}: cannot read the alert config: {reason}") from None
    return parse_config(text, str(path))


__all__ = [
    "DAY_BANDS",
    "NOTIFIER_KINDS",
    "RATIO_BANDS",
    "RULE_KINDS",
    "VARIABLE",
    "AlertConfig",
    "AlertConfigError",
    "AlertRule",
    "Bands",
    "NotifierConfig",
    "load_config",
    "parse_config",
]
