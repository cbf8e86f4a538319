"""The ``nem12`` command: validate, parse and generate MDFF files; the ledger's status.

Exit codes: 0 no errors (warnings allowed), 1 errors found, 2 unusable
arguments or unreadable input (or, for ``status``, a database that cannot be
read), or a bug of ours met while reading a file. Every problem is one line
naming file, line and rule; a bug is one line naming the file, and its
traceback only with ``--traceback``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import polars as pl

from nem12.format import spec
from nem12.format.parsing import Parse, ParseConfig, ParseResult, member_version, parse_member
from nem12.format.reading import iter_members
from nem12.format.rules import RULES, Finding
from nem12.pipeline.settings import Settings, SettingsError

if TYPE_CHECKING:
    from nem12.format.output import ReadingsOutput

EXIT_OK, EXIT_ERRORS, EXIT_UNUSABLE = 0, 1, 2


class UsageError(Exception):
    """Arguments the command cannot work with (exit 2)."""


class InternalError(Exception):
    """A bug of ours met while reading ``file``; the cause is chained (exit 2)."""

    def __init__(self, file: str) -> None:
        super().__init__(file)
        self.file = file


class Progress:
    """A one-line progress bar on a terminal, for inputs worth waiting for."""

    def __init__(self, stream: TextIO, label: str, total: int | None) -> None:
        self.enabled = bool(total) and total >= (16 << 20) and stream.isatty()
        self.stream, self.label, self.total = stream, label, total or 1
        self.started = time.monotonic()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        share = min(done / self.total, 1.0)
        bar = "#" * int(share * 30)
        rate = done / max(time.monotonic() - self.started, 1e-6) / (1 << 20)
        self.stream.write(f"\r{self.label[-40:]:40} [{bar:30}] {share:4.0%} {rate:6.1f} MB/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")


def _input_files(paths: Sequence[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        elif path.exists():
            yield path
        else:
            raise UsageError(f"cannot read {raw}: no such file or directory")


def _config(args: argparse.Namespace) -> ParseConfig:
    severity: dict[str, str] = {}
    for item in args.severity or []:
        rule, _, level = item.partition("=")
        if rule not in RULES or level not in ("error", "warning"):
            raise UsageError(f"--severity takes RULE=error|warning with a known rule, not {item!r}")
        severity[rule] = level
    return ParseConfig(
        limits=Settings.from_env().read_limits(),
        severity=severity,
        reject_file_on_block_error=args.reject_file_on_block_error,
    )


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn a bug of ours met while reading ``path`` into an InternalError naming it."""
    try:
        yield
    except OSError:
        raise
    except (Exception, pl.exceptions.PanicException) as exc:  # Polars panics are BaseExceptions
        raise InternalError(str(path)) from exc


def _parses(path: Path, config: ParseConfig) -> Iterator[Parse]:
    for member in iter_members(path, name=str(path), limits=config.limits):
        yield parse_member(member, config)


def _progress_batches(parse: Parse) -> Iterator:
    """The parse's batches, with a progress bar on a terminal for big inputs."""
    progress = Progress(sys.stderr, parse.member.name, parse.member.size)
    for batch in parse.batches():
        progress.update(parse.bytes_read)
        yield batch
    progress.close()


def _run_parse(parse: Parse) -> ParseResult:
    for _ in _progress_batches(parse):
        pass
    return parse.result


def _summary(report: ParseResult) -> str:
    errors = sum(1 for f in report.findings if f.severity == "error")
    warnings = len(report.findings) - errors
    counted = "NEM13 reads" if report.header.version == "NEM13" else "readings"
    return (
        f"{report.file}: {report.status}, {report.readings} {counted}, "
        f"{report.blocks - report.rejected_blocks}/{report.blocks} blocks kept, "
        f"{errors} errors, {warnings} warnings"
    )


def cmd_validate(args: argparse.Namespace) -> int:
    config = _config(args)
    findings: list[Finding] = []
    for path in _input_files(args.paths):
        with _reading(path):
            for parse in _parses(path, config):
                report = _run_parse(parse)
                findings.extend(report.findings)
                if not args.json:
                    for finding in report.findings:
                        print(finding.as_line())
                    print(_summary(report), file=sys.stderr)
    if args.json:
        json.dump([f.as_dict() for f in findings], sys.stdout, indent=2)
        sys.stdout.write("\n")
    return EXIT_ERRORS if any(f.severity == "error" for f in findings) else EXIT_OK


def _published(outputs: dict[str, ReadingsOutput], out: Path) -> dict[str, ReadingsOutput]:
    """Publish ``out`` from the version whose files were kept; when both versions
    were, the NEM13 reads go beside it (``<name>.nem13.<ext>``). Returns what was written."""
    from nem12.format.output import ReadingsOutput

    kept = {version: o for version, o in outputs.items() if o.has_rows}
    for version, output in outputs.items():
        if version not in kept:
            output.abandon()
    if not kept:
        kept = {"NEM12": ReadingsOutput(out)}
    if len(kept) == 2:
        kept["NEM13"].out = out.with_name(f"{out.stem}.nem13{out.suffix}")
    for output in kept.values():
        output.publish()
    return kept


def cmd_parse(args: argparse.Namespace) -> int:
    from nem12.format.output import ReadingsOutput

    config = _config(args)
    files = list(_input_files([args.path]))
    out = Path(args.out)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise UsageError(f"output must end in .parquet or .csv, not {out.name!r}")
    outputs: dict[str, ReadingsOutput] = {}  # by version: readings, reads
    findings: list[Finding] = []
    rows_of = {"NEM12": 0, "NEM13": 0}
    try:
        for path in files:
            with _reading(path):
                for member in iter_members(path, name=str(path), limits=config.limits):
                    version = "NEM13" if member_version(member) == "NEM13" else "NEM12"
                    if version not in outputs:
                        outputs[version] = ReadingsOutput(out, spec.OUTPUT_SCHEMAS[version])
                    output = outputs[version]
                    enums = output.enums_for(member) if version == "NEM12" else {}
                    parse = parse_member(member, replace(config, stream_enums=enums))
                    rows = output.write(_progress_batches(parse), enums)
                    report = parse.result
                    findings.extend(report.findings)
                    if report.status == "rejected":
                        output.discard()
                    else:
                        output.keep()
                        rows_of[version] += rows
                    print(_summary(report), file=sys.stderr)
        outputs = _published(outputs, out)
    except BaseException:
        for output in outputs.values():
            output.abandon()
        raise
    if args.findings:
        Path(args.findings).write_text(json.dumps([f.as_dict() for f in findings], indent=2))
    else:
        for finding in findings:
            print(finding.as_line(), file=sys.stderr)
    for version, output in outputs.items():
        counted = "NEM13 reads" if version == "NEM13" else "readings"
        print(f"wrote {rows_of[version]} {counted} to {output.out}", file=sys.stderr)
    return EXIT_ERRORS if any(f.severity == "error" for f in findings) else EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    from nem12.devtools.generate import DEFECTS, GeneratorSpec, write_file

    if args.version == "NEM13":
        return _generate_nem13(args)
    if args.list_defects:
        for defect in [*sorted(DEFECTS), "file_empty"]:
            print(f"{defect:30} {RULES[defect].severity:8} {RULES[defect].message}")
        return EXIT_OK
    if not args.out:
        raise UsageError("generate needs OUT (a .csv, .gz or .zip path)")
    if args.interval_length not in (5, 15, 30):
        raise UsageError("--interval-length must be 5, 15 or 30")
    try:
        start = date.fromisoformat(args.start_date)
        updated = datetime.fromisoformat(args.update_datetime)
        header = datetime.fromisoformat(args.header_datetime)
    except ValueError as exc:
        raise UsageError(f"bad date: {exc}") from exc
    spec = GeneratorSpec(
        nmis=args.nmis,
        days=args.days,
        interval_length=args.interval_length,
        channels=tuple(c.strip() for c in args.channels.split(",") if c.strip()),
        seed=args.seed,
        start_date=start,
        update_datetime=updated,
        header_datetime=header,
        variable_day_share=args.variable_days,
        value_pool=args.value_pool,
    )
    spec = replace(spec, defects=tuple(args.defect or ()))
    try:
        out = write_file(spec, args.out)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    readings = spec.nmis * len(spec.channels) * spec.days * spec.intervals
    print(f"wrote {out} ({out.stat().st_size} bytes, about {readings} readings)", file=sys.stderr)
    return EXIT_OK


def _generate_nem13(args: argparse.Namespace) -> int:
    """``generate --version NEM13``: --nmis NMIs of --reads reads per register."""
    from nem12.devtools.generate import NEM13_DEFECTS, Nem13Spec, nem13_defect_rule, write_file

    if args.list_defects:
        for defect in NEM13_DEFECTS:
            rule = RULES[nem13_defect_rule(defect)]
            print(f"{defect:30} {rule.severity:8} {rule.message}")
        return EXIT_OK
    if not args.out:
        raise UsageError("generate needs OUT (a .csv, .gz or .zip path)")
    try:
        start = datetime.combine(date.fromisoformat(args.start_date), datetime.min.time())
        header = datetime.fromisoformat(args.header_datetime)
        spec = Nem13Spec(
            nmis=args.nmis,
            reads=args.reads,
            seed=args.seed,
            start=start.replace(hour=10, minute=30),
            header_datetime=header,
            defects=tuple(args.defect or ()),
        )
        out = write_file(spec, args.out)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    reads = spec.read_count
    print(f"wrote {out} ({out.stat().st_size} bytes, about {reads} NEM13 reads)", file=sys.stderr)
    return EXIT_OK


def _dsn(args: argparse.Namespace) -> str:
    """The PostgreSQL a database command reads: --dsn, NEM12_DSN, else the Airflow
    connection."""
    from nem12.pipeline.connections import postgres_dsn_from_env

    try:
        dsn = args.dsn or Settings.from_env().dsn or postgres_dsn_from_env()
    except ValueError as exc:  # an AIRFLOW_CONN_NEM12_POSTGRES that is neither URI nor JSON
        raise UsageError(str(exc)) from exc
    if not dsn:
        raise UsageError(
            f"{args.command} needs --dsn or NEM12_DSN (a PostgreSQL connection string)"
        )
    return dsn


def _read_meter_table(dsn: str, read: Callable[[Any], list]) -> list:
    """``read(conn)`` on the meter database; one line if it cannot be read."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            return read(conn)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0]
        raise UsageError(f"cannot read the meter table: {first}") from exc


def _print_rows(rows: list, columns: tuple[str, ...], as_json: bool) -> None:
    """Rows (each with ``as_json``) as a JSON list, or as a tab-separated table."""
    shown = [row.as_json() for row in rows]
    if as_json:
        json.dump(shown, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    print("\t".join(columns))
    for row in shown:
        print("\t".join("" if row[c] is None else str(row[c]) for c in columns))


def cmd_status(args: argparse.Namespace) -> int:
    """Print what the file ledger says: files by status, oldest unprocessed, last merge."""
    from nem12.warehouse.status import LedgerUnavailable, fetch_status, format_status

    try:
        status = fetch_status(_dsn(args))
    except LedgerUnavailable as exc:
        raise UsageError(str(exc)) from exc
    if args.json:
        json.dump(status.as_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_status(status))
    return EXIT_OK


def cmd_usage(args: argparse.Namespace) -> int:
    """Print energy per NMI and suffix over a period, grouped as asked."""
    from nem12.warehouse.usage import UsageQuery, usage

    try:
        query = UsageQuery(
            tuple(args.nmi),
            args.date_from,
            args.date_to,
            args.group_by,
            tuple(args.suffix or ()),
            tuple(args.quality or ()),
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    rows = _read_meter_table(_dsn(args), lambda conn: usage(conn, query))
    columns = ("nmi", "nmi_suffix", "uom", "period", "quality_class", "energy", "intervals",
               "estimated_intervals", "substituted_intervals")  # fmt: skip
    _print_rows(rows, columns, args.json)
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    """Print the versions of an NMI's days (or with --reads its NEM13 reads), or the
    ones held as of a moment."""
    from nem12.warehouse.history import day_versions, read_versions

    if args.date_to <= args.date_from:
        raise UsageError(f"the period is empty: {args.date_from} to {args.date_to}")
    suffixes = tuple(args.suffix or ())
    query = read_versions if args.reads else day_versions
    versions = _read_meter_table(
        _dsn(args),
        lambda conn: query(conn, args.nmi, args.date_from, args.date_to, args.as_of, suffixes),
    )
    if args.reads:
        columns = ("nmi_suffix", "register_id", "previous_register_read_datetime",
                   "current_register_read_datetime", "current_register_read_text",
                   "current_quality_method", "quantity", "uom", "file_id", "merged_at",
                   "replaced_at", "replaced_by")  # fmt: skip
    else:
        columns = ("nmi_suffix", "interval_date", "file_id", "merged_at", "replaced_at",
                   "replaced_by", "quality_method", "total")  # fmt: skip
    _print_rows(versions, columns, args.json)
    return EXIT_OK


def _database_arguments(sub: argparse.ArgumentParser, what: str) -> None:
    sub.add_argument(
        "--dsn",
        default=None,
        help="PostgreSQL connection string [NEM12_DSN, else AIRFLOW_CONN_NEM12_POSTGRES]",
    )
    sub.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def _period_arguments(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--from", dest="date_from", type=date.fromisoformat, required=True,
        help="first NEM day, YYYY-MM-DD",
    )  # fmt: skip
    sub.add_argument(
        "--to", dest="date_to", type=date.fromisoformat, required=True,
        help="the day after the last, YYYY-MM-DD",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nem12", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def strictness(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--severity",
            action="append",
            metavar="RULE=LEVEL",
            help="override a rule's severity, e.g. nmi_format=error (repeatable)",
        )
        sub.add_argument(
            "--reject-file-on-block-error",
            action="store_true",
            help="a block-scope error rejects the whole file",
        )

    def debugging(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--traceback", action="store_true", help="on a bug of nem12, print where it happened"
        )

    validate = commands.add_parser("validate", help="check files against the structure rules")
    validate.add_argument("paths", nargs="+", metavar="PATH")
    validate.add_argument("--json", action="store_true", help="print findings as a JSON list")
    strictness(validate)
    debugging(validate)
    validate.set_defaults(run=cmd_validate)

    parse = commands.add_parser("parse", help="write accepted readings, one row per interval")
    parse.add_argument("path", metavar="PATH")
    parse.add_argument("--out", required=True, help="OUT.parquet or OUT.csv")
    parse.add_argument("--findings", help="write findings as JSON here instead of stderr")
    strictness(parse)
    debugging(parse)
    parse.set_defaults(run=cmd_parse)

    generate = commands.add_parser("generate", help="write a synthetic NEM12 or NEM13 file")
    generate.add_argument("out", nargs="?", metavar="OUT")
    generate.add_argument(
        "--version",
        choices=("NEM12", "NEM13"),
        default="NEM12",
        help="NEM13: accumulation reads, --nmis x 2 registers x --reads (of the other "
        "options only --seed, --start-date, --header-datetime and --defect apply)",
    )
    generate.add_argument(
        "--reads", type=int, default=3, help="NEM13: reads per register (default 3)"
    )
    generate.add_argument("--nmis", type=int, default=2)
    generate.add_argument("--days", type=int, default=2)
    generate.add_argument("--interval-length", type=int, default=30)
    generate.add_argument("--channels", default="E1,B1")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--start-date", default="2024-01-01")
    generate.add_argument("--update-datetime", default="2024-02-01T09:15:00")
    generate.add_argument("--header-datetime", default="2024-02-01T09:30")
    generate.add_argument(
        "--variable-days",
        type=float,
        default=0.1,
        help="share of days with QualityMethod V and 400 events",
    )
    generate.add_argument(
        "--value-pool",
        type=int,
        default=0,
        help="draw days from N value templates (fast for huge files)",
    )
    generate.add_argument(
        "--defect",
        action="append",
        metavar="RULE",
        help="add a defect that triggers RULE (repeatable)",
    )
    generate.add_argument("--list-defects", action="store_true")
    generate.set_defaults(run=cmd_generate)

    status = commands.add_parser(
        "status", help="files by status, oldest unprocessed file and last merge"
    )
    _database_arguments(status, "the status")
    status.set_defaults(run=cmd_status)

    usage = commands.add_parser(
        "usage", help="energy per NMI and suffix over a period, exact, with interval counts"
    )
    usage.add_argument("--nmi", action="append", required=True, help="an NMI (repeatable)")
    _period_arguments(usage)
    usage.add_argument("--group-by", default="day", choices=("interval", "day", "month", "quality"))
    usage.add_argument("--suffix", action="append", help="an NMI suffix (repeatable; all if none)")
    usage.add_argument(
        "--quality", action="append", help="a quality flag to count: A, E, F, N, S or V"
    )
    _database_arguments(usage, "the figures")
    usage.set_defaults(run=cmd_usage)

    history = commands.add_parser(
        "history", help="the versions of an NMI's days, or what was held as of a moment"
    )
    history.add_argument("--nmi", required=True)
    _period_arguments(history)
    history.add_argument(
        "--as-of", type=datetime.fromisoformat, default=None,
        help="a moment (ISO, with its offset): the version held then; all versions if not given",
    )  # fmt: skip
    history.add_argument("--suffix", action="append", help="an NMI suffix (repeatable)")
    history.add_argument(
        "--reads", action="store_true",
        help="the NEM13 reads whose period meets the days, instead of the NEM12 days",
    )  # fmt: skip
    _database_arguments(history, "the versions")
    history.set_defaults(run=cmd_history)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_UNUSABLE if exc.code not in (0, None) else EXIT_OK
    try:
        return int(args.run(args))
    except (UsageError, SettingsError) as exc:
        print(f"nem12: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except InternalError as exc:
        cause = exc.__cause__
        if getattr(args, "traceback", False) and cause is not None:
            traceback.print_exception(cause, file=sys.stderr)
        detail = " ".join(str(cause).split())[:300]  # Polars' messages span lines
        print(
            f"nem12: internal error while reading {exc.file}: {type(cause).__name__}: {detail} "
            "(a bug in nem12, not in the file; --traceback shows where)",
            file=sys.stderr,
        )
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_UNUSABLE
    except OSError as exc:
        print(f"nem12: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNUSABLE


def run() -> NoReturn:
    """The console script: ``main``, then exit without tearing the interpreter down.

    Every output is written, renamed and closed by then; the teardown (Polars'
    threads and memory) would add ~0.1 s to each command and do nothing.
    """
    code = main()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
