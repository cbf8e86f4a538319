"""The alert config: the default file loads, the Variable wins, and every mistake
stops with one line naming the source, the JSON path and what is wrong."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from nem12.pipeline.alert_config import (
    DAY_BANDS,
    RATIO_BANDS,
    RULE_KINDS,
    AlertConfigError,
    Bands,
    NotifierConfig,
    load_config,
    parse_config,
)
from nem12.pipeline.settings import CHECKOUT_ALERT_CONFIG, Settings

BASE: dict[str, Any] = {
    "version": "2026-12-01.1",
    "notifiers": {
        "ops-mail": {"type": "smtp", "conn_id": "smtp_default", "to": ["ops@example.com"]},
        "ops-hook": {"type": "webhook", "conn_id": "nem12_webhook", "endpoint": "/alerts"},
    },
    "notify": {"alerts": ["ops-hook"], "runs": ["ops-hook"]},
    "rules": [
        {
            "name": "usage_above_50kwh",
            "kind": "usage_above",
            "suffixes": ["E"],
            "threshold": "50",
            "uom": "kWh",
            "severity": {"high": 1.5, "critical": 2},
            "notify": ["ops-mail"],
        },
        {"name": "spike", "kind": "usage_above_median", "factor": 3},
        {"name": "missing", "kind": "missing_days"},
        {"name": "estimated", "kind": "estimated_share", "limit": "0.5"},
        {"name": "export", "kind": "export_on_consumption_only", "threshold": 0.1},
    ],
}


def parsed(data: Any, source: str = "alerts.json"):
    return parse_config(data if isinstance(data, str) else json.dumps(data), source)


def changed(path: str, value: Any = "<delete>") -> dict[str, Any]:
    """BASE with the field at ``path`` (dots; [n] for list items) set or deleted."""
    data = copy.deepcopy(BASE)
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value == "<delete>":
        del node[key]
    else:
        node[key] = value
    return data


def test_the_default_file_loads_with_every_rule_kind_and_no_secret():
    config = load_config(Settings())
    assert Settings().alert_config == CHECKOUT_ALERT_CONFIG
    assert CHECKOUT_ALERT_CONFIG.relative_to(Path(__file__).parents[2]).as_posix() == (
        "include/config/alerts.json"
    )
    assert config.version
    assert {rule.kind for rule in config.rules} == set(RULE_KINDS)
    assert config.source == str(CHECKOUT_ALERT_CONFIG)
    assert set(config.notifiers) == {"ops-mail", "ops-hook"}
    for notifier in config.notifiers.values():
        assert set(notifier.options) <= {"conn_id", "to", "endpoint"}
    # examples only: nothing is sent until a deployment routes to its own notifiers
    assert config.notify_alerts == config.notify_runs == ()
    assert all(rule.notify == () for rule in config.rules)


def test_the_example_parses_exactly():
    config = parsed(BASE)
    assert config.version == "2026-12-01.1"
    assert config.notifiers["ops-mail"] == NotifierConfig(
        "ops-mail", "smtp", {"conn_id": "smtp_default", "to": ["ops@example.com"]}
    )
    assert config.notify_alerts == ("ops-hook",) and config.notify_runs == ("ops-hook",)
    usage, spike, missing, estimated, export = config.rules
    assert usage.threshold == Decimal("50") and usage.uom == "kWh"
    assert usage.suffixes == ("E",) and usage.notify == ("ops-mail",)
    assert usage.severity == Bands(Decimal("1.5"), Decimal("2"))
    assert (spike.factor, spike.window_days, spike.min_prior_days) == (Decimal(3), 30, 7)
    assert spike.severity == RATIO_BANDS and spike.notify == () and spike.suffixes == ()
    assert (missing.max_days, missing.grace_days, missing.severity) == (31, 0, DAY_BANDS)
    assert (estimated.limit, estimated.classes) == (Decimal("0.5"), ("E", "N"))
    assert export.threshold == Decimal("0.1")  # a JSON number, kept exact
    assert (export.suffixes, export.consumption_suffixes) == (("B",), ("E",))
    assert config.rule("spike") is spike


def test_severity_by_how_far_over():
    assert [RATIO_BANDS.severity(Decimal(x)) for x in ("1.01", "1.5", "1.99", "2")] == [
        "medium",
        "high",
        "high",
        "critical",
    ]
    assert [DAY_BANDS.severity(Decimal(x)) for x in (1, 2, 3, 6, 7)] == [
        "medium",
        "medium",
        "high",
        "high",
        "critical",
    ]


def test_the_variable_wins_over_the_file_and_names_itself(tmp_path):
    file = tmp_path / "alerts.json"
    file.write_text(json.dumps(BASE))
    settings = Settings(alert_config=file)
    assert load_config(settings).source == str(file)
    assert load_config(settings, "  ").source == str(file)  # blank: not set
    variable = json.dumps({**BASE, "version": "from-variable"})
    assert load_config(settings, variable).version == "from-variable"
    with pytest.raises(AlertConfigError) as error:
        load_config(settings, json.dumps(changed("version")))
    assert str(error.value) == (
        "Variable nem12_alert_config: version: missing; the config must say its version"
    )


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(AlertConfigError) as error:
        load_config(Settings(alert_config=tmp_path / "none.json"))
    assert str(error.value) == (
        f"{tmp_path / 'none.json'}: cannot read the alert config: No such file or directory"
    )


def test_the_setting_comes_from_the_environment(tmp_path):
    assert Settings.from_env({"NEM12_ALERT_CONFIG": str(tmp_path)}).alert_config == tmp_path


S = "alerts.json"
ERRORS = [
    (
        "{",
        None,
        f"{S}: line 1 column 2: not JSON: Expecting property name enclosed in double quotes",
    ),
    ('{"version": NaN}', None, f"{S}: not JSON: NaN is not a number"),
    ("[]", None, f"{S}: $: must be an object, not a list"),
    ("version", "<delete>", f"{S}: version: missing; the config must say its version"),
    ("version", "", f"{S}: version: must be a non-empty string, not ''"),
    ("version", 3, f"{S}: version: must be a non-empty string, not 3"),
    (
        "colour",
        "red",
        f"{S}: colour: unknown key; expected one of version, description, notifiers, notify, rules",
    ),
    ("rules", "<delete>", f"{S}: rules: missing; the config must list its rules (may be [])"),
    ("rules", {}, f"{S}: rules: must be a list of rules, not an object"),
    ("rules[0]", "x", f"{S}: rules[0]: must be an object, not a string"),
    ("rules[0].name", "<delete>", f"{S}: rules[0].name: missing; every rule needs a name"),
    (
        "rules[0].name",
        "a rule",
        f"{S}: rules[0].name: 'a rule' is not a name (letters, digits, '_', '.', '-', no spaces)",
    ),
    (
        "rules[1].name",
        "usage_above_50kwh",
        f"{S}: rules[1].name: duplicate rule name 'usage_above_50kwh' (also rules[0])",
    ),
    (
        "rules[0].kind",
        "<delete>",
        f"{S}: rules[0].kind: missing; one of usage_above, usage_above_median, missing_days, "
        "estimated_share, export_on_consumption_only",
    ),
    (
        "rules[0].kind",
        "usage",
        f"{S}: rules[0].kind: unknown kind 'usage'; expected one of usage_above, "
        "usage_above_median, missing_days, estimated_share, export_on_consumption_only",
    ),
    (
        "rules[0].factor",
        2,
        f"{S}: rules[0].factor: unknown key; expected one of name, kind, suffixes, severity, "
        "notify, description, threshold, uom",
    ),
    (
        "rules[0].threshold",
        "<delete>",
        f"{S}: rules[0].threshold: missing; a usage_above rule needs it",
    ),
    (
        "rules[0].threshold",
        "fifty",
        f"{S}: rules[0].threshold: must be a decimal number, not 'fifty'",
    ),
    (
        "rules[0].threshold",
        "Infinity",
        f"{S}: rules[0].threshold: must be a decimal number, not 'Infinity'",
    ),
    (
        "rules[0].threshold",
        True,
        f"{S}: rules[0].threshold: must be a decimal number, not a boolean",
    ),
    ("rules[0].threshold", "-5", f"{S}: rules[0].threshold: must be above 0, not '-5'"),
    ("rules[0].uom", "", f"{S}: rules[0].uom: must be a non-empty string, not ''"),
    ("rules[0].suffixes", "E", f"{S}: rules[0].suffixes: must be a list of suffixes, not a string"),
    (
        "rules[0].suffixes",
        ["e1"],
        f"{S}: rules[0].suffixes[0]: 'e1' is not a suffix or its first letter (E, B1...)",
    ),
    (
        "rules[0].notify",
        ["pager"],
        f"{S}: rules[0].notify[0]: unknown notifier 'pager'; notifiers: ops-mail, ops-hook",
    ),
    (
        "rules[0].notify",
        ["ops-mail", "ops-mail"],
        f"{S}: rules[0].notify[1]: notifier 'ops-mail' is listed twice",
    ),
    (
        "rules[0].notify",
        "ops-mail",
        f"{S}: rules[0].notify: must be a list of notifier names, not a string",
    ),
    ("rules[0].severity", [], f"{S}: rules[0].severity: must be an object, not a list"),
    (
        "rules[0].severity.medium",
        1,
        f"{S}: rules[0].severity.medium: unknown key; expected one of high, critical",
    ),
    (
        "rules[0].severity.high",
        "0.5",
        f"{S}: rules[0].severity.high: must be at least 1 (times the threshold), not 0.5",
    ),
    (
        "rules[0].severity.critical",
        1.2,
        f"{S}: rules[0].severity.critical: must be at least high (1.5), not 1.2",
    ),
    ("rules[0].description", 7, f"{S}: rules[0].description: must be a string, not a number"),
    (
        "rules[1].factor",
        "<delete>",
        f"{S}: rules[1].factor: missing; a usage_above_median rule needs it",
    ),
    ("rules[1].window_days", 7.5, f"{S}: rules[1].window_days: must be a whole number, not 7.5"),
    ("rules[1].window_days", 0, f"{S}: rules[1].window_days: must be at least 1, not 0"),
    ("rules[1].min_prior_days", 31, f"{S}: rules[1].min_prior_days: must not exceed window_days"),
    ("rules[1].minimum", -1, f"{S}: rules[1].minimum: must be at least 0, not -1"),
    (
        "rules[2].max_days",
        "a week",
        f"{S}: rules[2].max_days: must be a whole number, not 'a week'",
    ),
    ("rules[2].grace_days", -1, f"{S}: rules[2].grace_days: must be at least 0, not -1"),
    (
        "rules[2].severity",
        {"high": 1.5},
        f"{S}: rules[2].severity.high: must be a whole number, not 1.5",
    ),
    ("rules[3].limit", 1, f"{S}: rules[3].limit: must be a fraction below 1, not 1"),
    ("rules[3].limit", 0, f"{S}: rules[3].limit: must be above 0, not 0"),
    (
        "rules[3].classes",
        ["E", "X"],
        f"{S}: rules[3].classes[1]: unknown quality class 'X'; expected one of A, E, F, N, S",
    ),
    ("rules[3].classes", [], f"{S}: rules[3].classes: must be a non-empty list of quality classes"),
    ("rules[3].classes", ["E", "E"], f"{S}: rules[3].classes: lists a class twice"),
    (
        "rules[4].consumption_suffixes",
        [1],
        f"{S}: rules[4].consumption_suffixes[0]: 1 is not a suffix or its first letter (E, B1...)",
    ),
    ("notifiers", [], f"{S}: notifiers: must be an object, not a list"),
    (
        "notifiers.ops mail",
        {"type": "smtp", "to": ["a@b"]},
        f"{S}: notifiers.ops mail: 'ops mail' is not a name "
        "(letters, digits, '_', '.', '-', no spaces)",
    ),
    (
        "notifiers.ops-mail.type",
        "<delete>",
        f"{S}: notifiers.ops-mail.type: missing; one of smtp, webhook",
    ),
    (
        "notifiers.ops-mail.type",
        "slack",
        f"{S}: notifiers.ops-mail.type: unknown notifier type 'slack'; "
        "expected one of smtp, webhook",
    ),
    (
        "notifiers.ops-mail.to",
        "<delete>",
        f"{S}: notifiers.ops-mail.to: an smtp notifier needs a list of addresses to send to",
    ),
    ("notifiers.ops-mail.to", ["ops"], f"{S}: notifiers.ops-mail.to[0]: 'ops' is not an address"),
    (
        "notifiers.ops-mail.conn_id",
        "",
        f"{S}: notifiers.ops-mail.conn_id: must be a non-empty string, not ''",
    ),
    (
        "notifiers.ops-mail.password",
        "hunter2",
        f"{S}: notifiers.ops-mail.password: no secrets in the alert config: keep them in the "
        "Airflow connection its conn_id names",
    ),
    (
        "notifiers.ops-hook.headers",
        {"Authorization": "Bearer x"},
        f"{S}: notifiers.ops-hook.headers.Authorization: no secrets in the alert config: keep "
        "them in the Airflow connection its conn_id names",
    ),
    ("notify.sends", [], f"{S}: notify.sends: unknown key; expected one of alerts, runs"),
    (
        "notify.runs",
        ["ops-pager"],
        f"{S}: notify.runs[0]: unknown notifier 'ops-pager'; notifiers: ops-mail, ops-hook",
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), ERRORS, ids=[e[2][13:60] for e in ERRORS])
def test_every_mistake_is_one_line_naming_the_source_and_the_field(path, value, message):
    data = path if value is None else changed(path, value)
    with pytest.raises(AlertConfigError) as error:
        parsed(data, S)
    assert str(error.value) == message
    assert "\n" not in message
