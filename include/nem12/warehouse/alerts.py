"""The alerts, the one place that knows the SQL of ``alert``.

Each rule of the alert config (``nem12.pipeline.alert_config``) is one
set-based query over ``day_rollup``. A run takes the days changed since the
alert consumer's cursor (``nem12.warehouse.changes``), never past the rollup's
own cursor (an alert reads the rollup, so it waits for the rollup to hold the
change), and evaluates every rule in the same transaction as it moves the
cursor: the changed days, and the days whose outcome they can alter —

* ``usage_above``, ``estimated_share``: the changed days themselves;
* ``usage_above_median``: the changed day and the ``window_days`` days after it
  (their trailing window holds it);
* ``missing_days``: every stream of each NMI a change touched, from the stream's
  last delivered day before the NMI's earliest changed day up to the NMI's newest
  day (a delivery ends a gap, or moves the NMI's newest day on);
* ``export_on_consumption_only``: the export days of the NMI from the changed day
  to ``window_days`` after it (their trailing window holds it).

An alert is raised once: ``INSERT ... ON CONFLICT DO NOTHING`` on (rule, nmi,
nmi_suffix, interval_date), so a re-run, a re-merge of the same files or a
re-evaluation after a correction adds nothing for a day already alerted. A
correction that removes the reason for an alert leaves the alert as it was
raised (it may have been sent; its figures are those that raised it) and does
not raise it again; one that makes a day cross a threshold raises it then. A
rule added to the config applies to the days changed after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import psycopg

from nem12.format import spec
from nem12.warehouse import changes, rollup
from nem12.warehouse.schema import ROLLUP_CLASS_COLUMNS, SCHEMA

CONSUMER = "alert"

#: Words for the quality classes in an alert's message ("estimated or null").
CLASS_WORDS = {letter: name.replace("_", " ") for letter, name in spec.QUALITY_CLASSES.items()}


class Bands(Protocol):
    high: Decimal
    critical: Decimal


class AlertRule(Protocol):
    """A rule as ``nem12.pipeline.alert_config.AlertRule`` holds it (this layer sits
    below the pipeline's and takes any object with these attributes)."""

    name: str
    kind: str
    severity: Bands
    suffixes: tuple[str, ...]
    threshold: Decimal | None
    uom: str | None
    factor: Decimal | None
    window_days: int
    min_prior_days: int
    minimum: Decimal
    max_days: int
    grace_days: int
    classes: tuple[str, ...]
    limit: Decimal | None
    consumption_suffixes: tuple[str, ...]


_SAME_STREAM = "{a}.nmi = {b}.nmi AND {a}.nmi_suffix = {b}.nmi_suffix"


def _num(expression: str, places: int = 3) -> str:
    """``expression`` as text a person reads: rounded, without trailing zeros."""
    return f"trim_scale(round(({expression})::numeric, {places}))::text"


#: One rule's findings (nmi, nmi_suffix, interval_date, observed, threshold, over,
#: message) as alert rows, each (rule, stream, day) once.
_INSERT = f"""
INSERT INTO {SCHEMA}.alert (rule, nmi, nmi_suffix, interval_date, severity, observed,
                            threshold, message, config_version)
SELECT %(rule)s, f.nmi, f.nmi_suffix, f.interval_date,
       CASE WHEN f.over >= %(critical)s THEN 'critical'
            WHEN f.over >= %(high)s THEN 'high' ELSE 'medium' END,
       f.observed, f.threshold, f.message, %(version)s
FROM ({{findings}}) f
ORDER BY f.interval_date, f.nmi, f.nmi_suffix
ON CONFLICT (rule, nmi, nmi_suffix, interval_date) DO NOTHING
"""

#: The changed days as the rollup holds them, the rule's streams only.
_CHANGED_DAYS = f"""
SELECT r.* FROM changed_day c
JOIN {SCHEMA}.day_rollup r ON {_SAME_STREAM.format(a="r", b="c")}
                          AND r.interval_date = c.interval_date
WHERE r.nmi_suffix LIKE ANY(%(suffixes)s)
"""

_USAGE_ABOVE = f"""
SELECT r.nmi, r.nmi_suffix, r.interval_date, r.total AS observed,
       %(threshold)s::numeric AS threshold, r.total / %(threshold)s::numeric AS over,
       r.nmi_suffix || ' of ' || r.nmi || ' used ' || {_num("r.total")} || ' ' || r.uom
       || ' on ' || r.interval_date::text || ', ' || {_num("r.total / %(threshold)s", 2)}
       || 'x the threshold ' || {_num("%(threshold)s")} || ' ' || r.uom AS message
FROM ({_CHANGED_DAYS}) r
WHERE lower(r.uom) = lower(%(uom)s) AND r.total > %(threshold)s::numeric
"""

#: Runs of consecutive changed days of a stream (``key``: the columns of a run),
#: as ranges [first_day, last_day].
_CHANGED_RUNS = """
SELECT {key}, min(interval_date) AS first_day, max(interval_date) AS last_day
FROM (SELECT {key}, interval_date,
             interval_date - (row_number() OVER (PARTITION BY {key}
                                                  ORDER BY interval_date))::integer AS run
      FROM (SELECT DISTINCT {key}, interval_date FROM changed_day) d) numbered
GROUP BY {key}, run
"""

_USAGE_ABOVE_MEDIAN = f"""
WITH candidate AS (
    SELECT DISTINCT r.nmi, r.nmi_suffix, r.interval_date, r.total, r.uom
    FROM ({_CHANGED_RUNS.format(key="nmi, nmi_suffix")}) c
    JOIN {SCHEMA}.day_rollup r ON {_SAME_STREAM.format(a="r", b="c")}
     AND r.interval_date BETWEEN c.first_day AND c.last_day + %(window)s::integer::integer
    WHERE r.nmi_suffix LIKE ANY(%(suffixes)s)
      AND (%(uom)s::text IS NULL OR lower(r.uom) = lower(%(uom)s::text))
      AND r.total > %(minimum)s::numeric
), judged AS (
    SELECT k.*, p.days,
           (p.sorted[(p.days + 1) / 2] + p.sorted[(p.days + 2) / 2]) / 2 AS median
    FROM candidate k
    CROSS JOIN LATERAL (
        SELECT count(*)::integer AS days, array_agg(b.total ORDER BY b.total) AS sorted
        FROM {SCHEMA}.day_rollup b
        WHERE {_SAME_STREAM.format(a="b", b="k")}
          AND b.interval_date >= k.interval_date - %(window)s::integer
          AND b.interval_date < k.interval_date
    ) p
    WHERE p.days >= %(min_prior)s::integer
)
SELECT nmi, nmi_suffix, interval_date, total AS observed,
       %(factor)s::numeric * median AS threshold,
       total / (%(factor)s::numeric * median) AS over,
       nmi_suffix || ' of ' || nmi || ' used ' || {_num("total")} || ' ' || uom || ' on '
       || interval_date::text || ', ' || {_num("total / median", 2)} || 'x the trailing '
       || %(window)s::text || '-day median ' || {_num("median")} || ' ' || uom
       || ' (alert above ' || {_num("%(factor)s")} || 'x)' AS message
FROM judged
WHERE median > 0 AND total > %(factor)s::numeric * median
"""

_MISSING_DAYS = f"""
WITH touched AS (
    SELECT nmi, min(interval_date) AS first_changed FROM changed_day GROUP BY nmi
), stream AS (
    SELECT t.nmi, s.nmi_suffix, t.first_changed,
           max(s.last_day) OVER (PARTITION BY t.nmi) AS newest,
           (SELECT max(b.interval_date) FROM {SCHEMA}.day_rollup b
            WHERE b.nmi = t.nmi AND b.nmi_suffix = s.nmi_suffix
              AND b.interval_date < t.first_changed) AS before
    FROM touched t
    CROSS JOIN LATERAL (SELECT r.nmi_suffix, max(r.interval_date) AS last_day
                        FROM {SCHEMA}.day_rollup r WHERE r.nmi = t.nmi
                        GROUP BY r.nmi_suffix) s
), day AS (
    SELECT s.nmi, s.nmi_suffix, s.newest, d::date AS interval_date,
           EXISTS (SELECT 1 FROM {SCHEMA}.day_rollup r
                   WHERE {_SAME_STREAM.format(a="r", b="s")}
                     AND r.interval_date = d::date) AS delivered
    FROM stream s,
         generate_series(coalesce(s.before, s.first_changed), s.newest, interval '1 day') d
    WHERE s.nmi_suffix LIKE ANY(%(suffixes)s)
), marked AS (
    SELECT day.*,
           max(CASE WHEN delivered THEN interval_date END)
               OVER (PARTITION BY nmi, nmi_suffix ORDER BY interval_date) AS last_delivered
    FROM day
)
SELECT nmi, nmi_suffix, interval_date, (interval_date - last_delivered)::numeric AS observed,
       0::numeric AS threshold, (interval_date - last_delivered)::numeric AS over,
       nmi_suffix || ' of ' || nmi || ' delivered no data for ' || interval_date::text
       || ', day ' || (interval_date - last_delivered)::text || ' missing since its last day '
       || last_delivered::text || ' (the NMI has days up to ' || newest::text || ')' AS message
FROM marked
WHERE NOT delivered AND last_delivered IS NOT NULL
  AND interval_date - last_delivered <= %(max_days)s::integer
  AND interval_date <= newest - %(grace)s::integer
"""

_ESTIMATED_SHARE = f"""
SELECT nmi, nmi_suffix, interval_date, round(share, 4) AS observed,
       %(limit)s::numeric AS threshold, share / %(limit)s::numeric AS over,
       nmi_suffix || ' of ' || nmi || ' on ' || interval_date::text || ': ' || counted::text
       || ' of ' || intervals::text || ' intervals ' || %(words)s || ' ('
       || {_num("100 * share", 0)} || '%%), above the limit ' || {_num("100 * %(limit)s", 2)}
       || '%%' AS message
FROM (SELECT r.*, {{counted}} AS counted, ({{counted}})::numeric / r.intervals AS share
      FROM ({_CHANGED_DAYS}) r) d
WHERE share > %(limit)s::numeric
"""

_EXPORT_ON_CONSUMPTION_ONLY = f"""
WITH candidate AS (
    SELECT DISTINCT r.nmi, r.nmi_suffix, r.interval_date, r.total, r.uom
    FROM ({_CHANGED_RUNS.format(key="nmi")}) c
    JOIN {SCHEMA}.day_rollup r ON r.nmi = c.nmi
     AND r.interval_date BETWEEN c.first_day AND c.last_day + %(window)s::integer::integer
    WHERE r.nmi_suffix LIKE ANY(%(suffixes)s) AND r.total > %(threshold)s::numeric
      AND (%(uom)s::text IS NULL OR lower(r.uom) = lower(%(uom)s::text))
)
SELECT k.nmi, k.nmi_suffix, k.interval_date, k.total AS observed,
       %(threshold)s::numeric AS threshold, k.total / %(threshold)s::numeric AS over,
       k.nmi_suffix || ' of ' || k.nmi || ' exported ' || {_num("k.total")} || ' ' || k.uom
       || ' on ' || k.interval_date::text || ', an NMI with consumption only in the '
       || %(window)s::text || ' days before (alert above ' || {_num("%(threshold)s")} || ' '
       || k.uom || ')' AS message
FROM candidate k
WHERE EXISTS (SELECT 1 FROM {SCHEMA}.day_rollup b
              WHERE b.nmi = k.nmi AND b.nmi_suffix LIKE ANY(%(consumption)s)
                AND b.interval_date >= k.interval_date - %(window)s::integer
                AND b.interval_date < k.interval_date)
  AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.day_rollup b
                  WHERE b.nmi = k.nmi AND b.nmi_suffix LIKE ANY(%(suffixes)s)
                    AND b.interval_date >= k.interval_date - %(window)s::integer
                    AND b.interval_date < k.interval_date
                    AND b.total > %(threshold)s::numeric)
"""


def _patterns(suffixes: tuple[str, ...]) -> list[str]:
    """LIKE patterns of suffixes or their first letters (none: every stream)."""
    return [f"{suffix}%" for suffix in suffixes] or ["%"]


def findings(rule: AlertRule) -> tuple[str, dict[str, Any]]:
    """The query of ``rule``'s findings over ``changed_day`` and its parameters."""
    params: dict[str, Any] = {"suffixes": _patterns(rule.suffixes)}
    if rule.kind == "usage_above":
        params.update(threshold=rule.threshold, uom=rule.uom)
        return _USAGE_ABOVE, params
    if rule.kind == "usage_above_median":
        params.update(
            window=rule.window_days,
            min_prior=rule.min_prior_days,
            minimum=rule.minimum,
            factor=rule.factor,
            uom=rule.uom,
        )
        return _USAGE_ABOVE_MEDIAN, params
    if rule.kind == "missing_days":
        params.update(max_days=rule.max_days, grace=rule.grace_days)
        return _MISSING_DAYS, params
    if rule.kind == "estimated_share":
        counted = " + ".join(f"r.{ROLLUP_CLASS_COLUMNS[c]}" for c in rule.classes)
        words = " or ".join(CLASS_WORDS[c] for c in rule.classes)
        params.update(limit=rule.limit, words=words)
        return _ESTIMATED_SHARE.format(counted=counted), params
    if rule.kind == "export_on_consumption_only":
        params.update(
            threshold=rule.threshold,
            window=rule.window_days,
            consumption=_patterns(rule.consumption_suffixes),
            uom=rule.uom,
        )
        return _EXPORT_ON_CONSUMPTION_ONLY, params
    raise ValueError(f"unknown alert rule kind: {rule.kind!r}")


def raise_rule(conn: psycopg.Connection, rule: AlertRule, version: str) -> int:
    """Within the caller's transaction, over ``changed_day``: ``rule``'s new alerts."""
    query, params = findings(rule)
    params.update(
        rule=rule.name,
        version=version,
        high=rule.severity.high,
        critical=rule.severity.critical,
    )
    return conn.execute(_INSERT.format(findings=query), params).rowcount


@dataclass
class Raised:
    """What a run did: changes taken in batches, alerts raised per rule, and the
    changes left for a later run because the rollup has not taken them yet."""

    changes: int = 0
    batches: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    waiting: int = 0

    @property
    def raised(self) -> int:
        return sum(self.alerts.values())


def raise_alerts(
    conn: psycopg.Connection,
    rules: Sequence[AlertRule],
    version: str,
    batch_changes: int = changes.BATCH_CHANGES,
) -> Raised:
    """Evaluate ``rules`` (of the config ``version``) for the days changed since the
    last run, up to the rollup's cursor, one transaction per batch of changes."""
    done = Raised(alerts={rule.name: 0 for rule in rules})
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('nem12 alert'))")
            rolled_up = changes.cursor(conn, rollup.CONSUMER)
            taken = changes.take_changes(conn, CONSUMER, batch_changes, through=rolled_up)
            if not taken:
                break
            for rule in rules:
                done.alerts[rule.name] += raise_rule(conn, rule, version)
        done.changes += taken
        done.batches += 1
    with conn.transaction():
        changes.forget_taken(conn)
    done.waiting = changes.pending(conn, CONSUMER)
    return done
