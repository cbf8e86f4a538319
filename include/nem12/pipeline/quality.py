"""Great Expectations validation of a run's per-record frames, with a Data Docs report.

The expectation suites are JSON files in ``great_expectations/expectations/``,
versioned in git and written by ``nem12.pipeline.suites`` from the rule catalogue
and the MDFF facts (``make suites``); each expectation's ``meta.rule`` names the
rule of ``nem12.format.rules.RULES`` it expresses. A run validates all its files
as one pandas batch on an ephemeral GX context (no shared, file-backed GX
config that parallel tasks could collide on) and writes the Data Docs HTML to
a folder the caller chooses. Great Expectations is imported inside functions
only: its import takes seconds.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from nem12.format.rules import RULES, Finding
from nem12.pipeline.settings import CHECKOUT_SUITES_DIR
from nem12.pipeline.suites import EVERY_RULE

if TYPE_CHECKING:
    from great_expectations.core import ExpectationValidationResult
    from great_expectations.data_context import AbstractDataContext

log = logging.getLogger(__name__)

#: The checkout's GX expectation suites, one JSON file per suite; the pipeline
#: passes ``Settings.suites_dir`` (``NEM12_SUITES_DIR``) where an install keeps them.
SUITES_DIR = CHECKOUT_SUITES_DIR

#: The Data Docs site every validation writes to (on the ephemeral context).
DOCS_SITE = "nem12"

#: How a failing record is identified in results and in Data Docs.
INDEX_COLUMNS = ["file", "line"]

#: Distinct unexpected values tabled per expectation on the Data Docs page. GX lists
#: the file/line of at most 10 records per value there; ``failures`` holds them all.
DOCS_VALUES_PER_EXPECTATION = 100


@dataclass
class RecordValidation:
    """What one run's validation found, and where its report is."""

    success: bool
    report_path: Path  # Data Docs index.html; the run's result page is linked from it
    failures: list[dict[str, Any]] = field(default_factory=list)  # {file, line, rule, ...}
    statistics: dict[str, float] = field(default_factory=dict)
    result_pages: list[Path] = field(default_factory=list)  # one validation page per suite

    @property
    def failed_rules(self) -> set[str]:
        return {f["rule"] for f in self.failures}


def load_suite_files(suites_dir: Path = SUITES_DIR) -> list[dict[str, Any]]:
    """The suites as their JSON dicts, in file-name order; refuses an empty folder."""
    paths = sorted(suites_dir.glob("*.json"))
    if not paths:
        raise FileNotFoundError(f"no expectation suite (*.json) in {suites_dir}")
    return [json.loads(path.read_text(encoding="utf-8")) for path in paths]


def records_expectation_rules(suites_dir: Path = SUITES_DIR) -> set[str]:
    """Rule ids the record suites express (from each expectation's ``meta.rule``).

    ``EVERY_RULE`` (``*``: every rule, through the parser's findings) is not listed.
    """
    return {
        expectation["meta"]["rule"]
        for suite in load_suite_files(suites_dir)
        for expectation in suite["expectations"]
        if expectation["meta"]["rule"] != EVERY_RULE
    }


def with_findings(records: pl.DataFrame, findings: list[Finding]) -> pl.DataFrame:
    """Add ``error_rules``: the parser's error findings per record, so the report lists all.

    Findings about a whole file (no line, or a line without a record such as a
    truncated file's end) become a row of their own at line 0.
    """
    errors = [f for f in findings if f.severity == "error"]
    if not errors:
        return records.with_columns(error_rules=pl.lit(None, pl.String))
    per_line = (
        pl.DataFrame(
            [(f.file, f.line or 0, f.rule) for f in errors],
            schema={"file": pl.String, "line": pl.Int64, "rule": pl.String},
            orient="row",
        )
        .group_by("file", "line")
        .agg(error_rules=pl.col("rule").unique().sort().str.join(","))
    )
    placed = records.join(per_line, on=["file", "line"], how="left", maintain_order="left")
    orphans = per_line.join(records.select("file", "line"), on=["file", "line"], how="anti")
    orphans = orphans.with_columns(line=pl.lit(0, pl.Int64), record_type=pl.lit("file"))
    return pl.concat([placed, orphans], how="diagonal_relaxed")


def with_derived_columns(records: pl.DataFrame) -> pl.DataFrame:
    """Add the columns the suites use beyond the parser's record frame.

    ``value_count_mismatch``: both counts are known and differ. GX row
    conditions compare a column with a constant only, so the column-to-column
    test is computed here; the quality_method expectations skip such records
    because their QualityMethod field is not where the spec puts it (the
    value_count expectation reports them instead), as the parser does.
    """
    if "error_rules" not in records.columns:
        records = records.with_columns(error_rules=pl.lit(None, pl.String))
    return records.with_columns(
        pl.col(pl.Categorical, pl.Enum).cast(pl.String),
        value_count_mismatch=(pl.col("value_count") != pl.col("expected_value_count")).fill_null(
            False
        ),
    )


def validate_records(
    records: pl.DataFrame,
    run_name: str,
    docs_dir: Path,
    suites_dir: Path = SUITES_DIR,
) -> RecordValidation:
    """Validate a run's per-record frame (all its files) once and build Data Docs.

    ``records`` is the concatenation of the runs' ``ParseResult.records``;
    ``docs_dir`` receives the Data Docs site (index.html, one page per suite and
    run). Give each concurrent run its own ``docs_dir``, or serialise the runs
    writing to a shared one: the site index is rewritten by every run.
    """
    from great_expectations.checkpoint import UpdateDataDocsAction

    import great_expectations as gx

    docs_dir = Path(docs_dir).resolve()
    suites = load_suite_files(suites_dir)
    context = _ephemeral_context(docs_dir)
    batch = context.data_sources.add_pandas("nem12").add_dataframe_asset("records")
    whole = batch.add_batch_definition_whole_dataframe("run")
    definitions = []
    for spec in suites:
        suite = gx.ExpectationSuite(**spec)
        if len(suite.expectations) != len(spec["expectations"]):
            # GX logs and drops an invalid expectation instead of raising.
            raise ValueError(f"suite {spec['name']!r} holds expectations GX cannot load")
        suite = context.suites.add(suite)
        definitions.append(
            context.validation_definitions.add(
                gx.ValidationDefinition(name=suite.name, data=whole, suite=suite)
            )
        )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="nem12_records",
            validation_definitions=definitions,
            actions=[UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE])],
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": INDEX_COLUMNS,
                "partial_unexpected_count": DOCS_VALUES_PER_EXPECTATION,
                "return_unexpected_index_query": False,
            },
        )
    )
    frame = with_derived_columns(records).to_pandas(use_pyarrow_extension_array=True)
    started = datetime.now(UTC)
    result = checkpoint.run(
        batch_parameters={"dataframe": frame},
        run_id=gx.RunIdentifier(run_name=run_name, run_time=started),
    )
    results = [r for vr in result.run_results.values() for r in vr.results]
    broken = [
        f"{r.expectation_config.type}: {message}"
        for r in results
        if (message := _exception_message(r.exception_info))
    ]
    if broken:
        raise RuntimeError(f"expectations could not be evaluated: {'; '.join(broken)}")
    failures = sorted(
        (f for r in results if not r.success for f in _failures(r)),
        key=lambda f: (f["file"] or "", f["line"] or 0, f["rule"], f["expectation"]),
    )
    statistics = _statistics([vr.statistics for vr in result.run_results.values()])
    statistics["records"] = records.height
    statistics["failed_records"] = len({(f["file"], f["line"]) for f in failures})
    pages = [
        docs_dir / "validations" / Path(*key.to_tuple()).with_suffix(".html")
        for key in result.run_results
    ]
    log.info(
        "validated %d records of %d files: %d of %d expectations met, %d failing records",
        records.height,
        records.get_column("file").n_unique() if records.height else 0,
        statistics["successful_expectations"],
        statistics["evaluated_expectations"],
        statistics["failed_records"],
    )
    return RecordValidation(
        success=bool(result.success),
        report_path=docs_dir / "index.html",
        failures=failures,
        statistics=statistics,
        result_pages=pages,
    )


def _ephemeral_context(docs_dir: Path) -> AbstractDataContext:
    """An in-memory context whose only Data Docs site is ``docs_dir``; no analytics."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    import great_expectations as gx

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        data_docs_sites={
            DOCS_SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _exception_message(info: dict[str, Any] | None) -> str | None:
    """The error an expectation raised, if any.

    GX 1.x reports it either flat ({raised_exception, exception_message}) or, for
    metric errors such as a missing column, keyed by metric configuration.
    """
    if not info:
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message")) if info["raised_exception"] else None
    for nested in info.values():
        if isinstance(nested, dict) and nested.get("raised_exception"):
            return str(nested.get("exception_message"))
    return None


def _failures(result: ExpectationValidationResult) -> list[dict[str, Any]]:
    """One failure per failing record of an unmet expectation."""
    config = result.expectation_config
    rule = (config.meta or {}).get("rule", "unknown")
    if rule == EVERY_RULE:  # the parser's findings: the failing value is the rule list itself
        return [
            {
                "file": row.get("file"),
                "line": int(row["line"]) if row.get("line") is not None else None,
                "rule": rule_id,
                "expectation": f"{config.type}(error_rules)",
                "message": RULES[rule_id].message if rule_id in RULES else rule_id,
            }
            for row in (result.result or {}).get("unexpected_index_list") or []
            for rule_id in str(row.get("error_rules") or "").split(",")
            if rule_id
        ]
    columns = [config.kwargs[k] for k in ("column", "column_A", "column_B") if k in config.kwargs]
    expectation = f"{config.type}({', '.join(columns)})"
    message = RULES[rule].message if rule in RULES else config.description or config.type
    rows = (result.result or {}).get("unexpected_index_list")
    if not rows:
        return [
            {
                "file": None,
                "line": None,
                "rule": rule,
                "expectation": expectation,
                "message": message,
            }
        ]
    return [
        {
            "file": row.get("file"),
            "line": int(row["line"]) if row.get("line") is not None else None,
            "rule": rule,
            "expectation": expectation,
            "message": f"{message} ({', '.join(f'{c}={_shown(row.get(c))}' for c in columns)})",
        }
        for row in rows
    ]


def _shown(value: Any) -> str:
    """A pandas/Arrow cell as text for a message: null, 'text' or the number/date."""
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return "null"
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return "null"
        if value.is_integer():
            value = int(value)
    return repr(value) if isinstance(value, str) else str(value)


def _statistics(per_suite: list[dict[str, Any]]) -> dict[str, float]:
    """Expectation counts summed over the suites of a run."""
    evaluated = sum(int(s.get("evaluated_expectations", 0)) for s in per_suite)
    successful = sum(int(s.get("successful_expectations", 0)) for s in per_suite)
    return {
        "evaluated_expectations": evaluated,
        "successful_expectations": successful,
        "unsuccessful_expectations": evaluated - successful,
        "success_percent": 100.0 * successful / evaluated if evaluated else 100.0,
    }
