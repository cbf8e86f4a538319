"""Parse benchmark behind ``make bench``: our CLI against nemreader and aemo-mdff-reader.

Two cases, each in its own section of the report: NEM12 interval data and
NEM13 accumulation reads (a million 250 records, and five million for memory).
Inputs are generated with ``nem12 generate`` into the output directory and
reused while their parameters match. Every measurement runs in its own fresh
subprocess, timed and reaped with ``os.wait4`` for its peak RSS, so each
figure belongs to one tool only. Tools run one after another, never in
parallel. MB means 10**6 bytes throughout.

On Linux a child's ``ru_maxrss`` starts at the high-water mark of the process
that spawned it, so a minimal launcher (``LAUNCHER``) spawns and measures each
tool instead of this process, which has Polars loaded. The floor this leaves,
a bare Python's peak, is reported alongside.

It is a report, not a test: it exits 0 whatever the figures, and 2 only if a
tool (or the generator) fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import polars as pl

BENCH_DIR = Path(__file__).resolve().parent
BIN_DIR = Path(sys.executable).parent
NEM12 = str(BIN_DIR / "nem12")
MB = 1_000_000
GB = 1_000_000_000

TARGET_VS_NEMREADER = 20.0
TARGET_VS_AEMO = 8.0
TARGET_RSS_RATIO = 1.2
TARGET_NEM13_VS_FASTER = 10.0  # NEM13: ours against the faster of the two references
BUSY_LOAD = 0.8  # one-minute load average above which other work skews the timings

# Third-party tools run as ``python -c SNIPPET PATH`` and print their reading count.
NEMREADER_SNIPPET = """\
import sys
from nemreader import NEMFile
m = NEMFile(sys.argv[1], strict=False).nem_data()
print(sum(len(rs) for ch in m.readings.values() for rs in ch.values()))
"""
AEMO_SNIPPET = """\
import sys
import aemo_mdff_reader as a
print(sum(1 for _ in a.parse(sys.argv[1])))
"""
# NEM13: each reference's fastest way to read every 250 record. nemreader has one
# (``nem_data``, as above: a Reading per 250); aemo-mdff-reader streams them with
# ``parse_accumulations`` (its ``parse`` skips 250s; the columnar and DataFrame helpers
# wrap the same iterator and only add work).
NEMREADER_NEM13_SNIPPET = NEMREADER_SNIPPET
AEMO_NEM13_SNIPPET = """\
import sys
import aemo_mdff_reader as a
print(sum(1 for _ in a.parse_accumulations(sys.argv[1])))
"""
# NEM13's floor for a Polars design: Polars' own CSV reader turning the 250s into the
# output's types and writing them to Parquet, with no checks, no 550s and no text kept
# as written. Not a reference (it reads nothing an MDP needs checked), a lower bound.
POLARS_NEM13_FLOOR_SNIPPET = """\
import sys
import polars as pl
fields = [f"f{i}" for i in range(24)]
decimal = pl.Decimal(38, 14)
def timestamp(name):
    return pl.col(name).str.to_datetime("%Y%m%d%H%M%S", strict=False, time_unit="us")
out = sys.argv[1] + ".floor.parquet"
(
    pl.scan_csv(sys.argv[1], has_header=False, schema=dict.fromkeys(fields, pl.String),
                quote_char=None, truncate_ragged_lines=True, missing_columns="insert")
    .filter(pl.col("f0") == "250")
    .with_columns(
        *[pl.col(f).cast(decimal, strict=False).alias(f + "_value") for f in ("f8", "f13", "f18")],
        *[timestamp(f) for f in ("f9", "f14", "f21", "f22")],
        pl.col("f20").str.to_date("%Y%m%d", strict=False),
    )
    .sink_parquet(out, compression="lz4", statistics=False)
)
print(pl.scan_parquet(out).select(pl.len()).collect().item())
"""
# ``python -c LAUNCHER REPORT CMD...``: spawn CMD from a small process, write its figures.
LAUNCHER = """\
import json, os, sys, time
started = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - started
report = {"seconds": seconds, "maxrss_kib": usage.ru_maxrss,
          "exit_code": os.waitstatus_to_exitcode(status)}
with open(sys.argv[1], "w") as out:
    json.dump(report, out)
"""


class ToolFailure(Exception):
    """A generator or tool subprocess did not finish cleanly."""


@dataclass(frozen=True)
class InputSpec:
    """One generated five-minute NEM12 file (two channels, E1 and B1)."""

    name: str
    nmis: int
    days: int
    interval_length: int = 5
    value_pool: int = 256

    @property
    def readings(self) -> int:
        return self.nmis * 2 * self.days * (24 * 60 // self.interval_length)

    def params(self) -> dict[str, int]:
        return {
            "nmis": self.nmis,
            "days": self.days,
            "interval_length": self.interval_length,
            "value_pool": self.value_pool,
        }

    def generate_args(self) -> list[str]:
        return [
            *("--nmis", str(self.nmis), "--days", str(self.days)),
            *("--interval-length", str(self.interval_length)),
            *("--value-pool", str(self.value_pool)),
        ]

    def ensure(self, out_dir: Path) -> Path:
        """The file's path, generating it unless a matching one is already there."""
        return ensure_generated(out_dir / f"{self.name}.csv", self.params(), self.generate_args())


@dataclass(frozen=True)
class Nem13InputSpec:
    """One generated NEM13 file: ``nmis`` NMIs, two registers, ``reads`` reads each."""

    name: str
    nmis: int
    reads: int

    @property
    def readings(self) -> int:
        """The 250 records: what every tool counts."""
        return self.nmis * 2 * self.reads

    def params(self) -> dict[str, int | str]:
        return {"version": "NEM13", "nmis": self.nmis, "reads": self.reads}

    def generate_args(self) -> list[str]:
        return ["--version", "NEM13", "--nmis", str(self.nmis), "--reads", str(self.reads)]

    def ensure(self, out_dir: Path) -> Path:
        return ensure_generated(out_dir / f"{self.name}.csv", self.params(), self.generate_args())


def ensure_generated(path: Path, params: dict, generate_args: list[str]) -> Path:
    """``path``, generated by ``nem12 generate`` unless one of these parameters is there."""
    sidecar = path.with_suffix(".json")
    if path.exists() and sidecar.exists():
        recorded = json.loads(sidecar.read_text())
        if recorded.get("params") == params and recorded.get("bytes") == path.stat().st_size:
            print(f"reusing {path} ({path.stat().st_size / MB:.1f} MB)", file=sys.stderr)
            return path
    sidecar.unlink(missing_ok=True)
    argv = [NEM12, "generate", str(path), *generate_args]
    print(f"generating {path} ...", file=sys.stderr)
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise ToolFailure(f"nem12 generate failed ({done.returncode}): {done.stderr.strip()}")
    size = path.stat().st_size
    sidecar.write_text(json.dumps({"params": params, "bytes": size}, indent=2))
    elapsed = time.perf_counter() - started
    print(f"generated {path} ({size / MB:.1f} MB) in {elapsed:.1f} s", file=sys.stderr)
    return path


MAIN_INPUT = InputSpec("five_minute", nmis=50, days=365)  # 10,512,000 readings, ~70 MB
MEDIUM_INPUT = InputSpec("five_minute_160mb", nmis=115, days=365)
LARGE_INPUT = InputSpec("five_minute_800mb", nmis=575, days=365)
NEM13_INPUT = Nem13InputSpec("nem13_1m_reads", nmis=50_000, reads=10)  # ~148 MB
NEM13_LARGE_INPUT = Nem13InputSpec("nem13_5m_reads", nmis=250_000, reads=10)  # ~740 MB


@dataclass
class Measurement:
    """Wall time and peak RSS of one tool on one file."""

    tool: str
    file: str
    file_mb: float
    expected_readings: int
    readings: int | None
    seconds: float
    peak_rss_mb: float
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.readings == self.expected_readings

    @property
    def readings_per_s(self) -> float:
        return (self.readings or 0) / self.seconds if self.seconds else 0.0


def run_measured(
    argv: list[str], log: Path, env: dict[str, str] | None = None
) -> tuple[float, float, int, str]:
    """Run ``argv`` via the launcher (in ``env``, else ours); return wall seconds, peak RSS
    MB, exit code, stdout."""
    stdout_path, stderr_path = log.with_suffix(".out"), log.with_suffix(".err")
    report_path = log.with_suffix(".rusage.json")
    report_path.unlink(missing_ok=True)
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        launcher = [sys.executable, "-c", LAUNCHER, str(report_path), *argv]
        subprocess.run(launcher, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL, env=env)
    if not report_path.exists():
        raise ToolFailure(f"the launcher did not report on {argv[0]}; see {stderr_path}")
    report = json.loads(report_path.read_text())
    peak_rss_mb = report["maxrss_kib"] * 1024 / MB  # ru_maxrss is in KiB on Linux
    return report["seconds"], peak_rss_mb, report["exit_code"], stdout_path.read_text()


AnyInput = InputSpec | Nem13InputSpec


def measure_ours(spec: AnyInput, path: Path, out_dir: Path) -> Measurement:
    """The whole ``nem12 parse FILE --out FILE.parquet`` command, rows counted afterwards."""
    parquet = path.with_suffix(".parquet")
    parquet.unlink(missing_ok=True)
    argv = [NEM12, "parse", str(path), "--out", str(parquet)]
    print(f"  ours on {path.name} ...", file=sys.stderr)
    seconds, rss, code, _ = run_measured(argv, out_dir / "logs" / f"ours_{spec.name}")
    readings = None
    if code == 0 and parquet.exists():
        readings = pl.scan_parquet(parquet).select(pl.len()).collect().item()
    return Measurement(
        "nem12 (ours)",
        path.name,
        path.stat().st_size / MB,
        spec.readings,
        readings,
        seconds,
        rss,
        code,
    )


def measure_snippet(
    tool: str, snippet: str, spec: AnyInput, path: Path, out_dir: Path
) -> Measurement:
    """A third-party parser run by ``snippet`` in a fresh interpreter."""
    print(f"  {tool} on {path.name} ...", file=sys.stderr)
    log = out_dir / "logs" / f"{tool}_{spec.name}"
    seconds, rss, code, stdout = run_measured([sys.executable, "-c", snippet, str(path)], log)
    lines = stdout.split()
    readings = int(lines[-1]) if code == 0 and lines and lines[-1].isdigit() else None
    return Measurement(
        tool, path.name, path.stat().st_size / MB, spec.readings, readings, seconds, rss, code
    )


@dataclass
class Target:
    """One acceptance target: PASS, FAIL, or SKIP when its run was left out."""

    name: str
    value: str
    status: str


def fastest(samples: list[Measurement]) -> Measurement:
    """A tool's fastest round (the same rule for every tool); a failed round wins."""
    failed = [m for m in samples if not m.ok]
    return failed[0] if failed else min(samples, key=lambda m: m.seconds)


def speed_targets(ours: Measurement, others: list[Measurement]) -> list[Target]:
    targets = []
    wanted = {"nemreader": TARGET_VS_NEMREADER, "aemo-mdff-reader": TARGET_VS_AEMO}
    for tool, minimum in wanted.items():
        other = next((m for m in others if m.tool == tool), None)
        name = f"ours >= {minimum:g}x {tool}"
        if other is None:
            targets.append(Target(name, "not run", "SKIP"))
        elif not (ours.ok and other.ok and other.readings_per_s):
            targets.append(Target(name, "run failed", "FAIL"))
        else:
            ratio = ours.readings_per_s / other.readings_per_s
            targets.append(Target(name, f"{ratio:.1f}x", "PASS" if ratio >= minimum else "FAIL"))
    return targets


def memory_targets(medium: Measurement | None, large: Measurement | None) -> list[Target]:
    targets = []
    name = f"RSS {LARGE_INPUT.name} / {MEDIUM_INPUT.name} <= {TARGET_RSS_RATIO}"
    if medium is None or large is None:
        targets.append(Target(name, "not run", "SKIP"))
    elif not (medium.ok and large.ok):
        targets.append(Target(name, "run failed", "FAIL"))
    else:
        ratio = large.peak_rss_mb / medium.peak_rss_mb
        status = "PASS" if ratio <= TARGET_RSS_RATIO else "FAIL"
        targets.append(Target(name, f"{ratio:.2f}", status))
    for run in (medium, large):
        if run is not None:
            under = run.ok and run.peak_rss_mb * MB < GB
            targets.append(
                Target(
                    f"RSS on {run.file} < 1 GB",
                    f"{run.peak_rss_mb:.0f} MB",
                    "PASS" if under else "FAIL",
                )
            )
    return targets


def nem13_target(ours: Measurement, others: list[Measurement], large: Measurement | None) -> Target:
    """ours >= 10x the faster reference on the NEM13 file, and flat memory: RSS on the
    five-times-larger file within TARGET_RSS_RATIO of the main file's, under 1 GB."""
    name = (
        f"NEM13: ours >= {TARGET_NEM13_VS_FASTER:g}x the faster reference, flat memory "
        f"(RSS {NEM13_LARGE_INPUT.name} / {NEM13_INPUT.name} <= {TARGET_RSS_RATIO}, < 1 GB)"
    )
    if not others:
        return Target(name, "references not run", "SKIP")
    if not (ours.ok and all(m.ok and m.readings_per_s for m in others)):
        return Target(name, "run failed", "FAIL")
    faster = max(others, key=lambda m: m.readings_per_s)
    ratio = ours.readings_per_s / faster.readings_per_s
    value = f"{ratio:.1f}x {faster.tool}"
    fast = ratio >= TARGET_NEM13_VS_FASTER
    if large is None:
        return Target(name, f"{value}; memory not measured", "FAIL" if not fast else "SKIP")
    if not large.ok:
        return Target(name, f"{value}; large run failed", "FAIL")
    rss_ratio = large.peak_rss_mb / ours.peak_rss_mb
    flat = rss_ratio <= TARGET_RSS_RATIO and max(large.peak_rss_mb, ours.peak_rss_mb) * MB < GB
    value += f"; RSS {large.peak_rss_mb:.0f} / {ours.peak_rss_mb:.0f} MB = {rss_ratio:.2f}"
    return Target(name, value, "PASS" if fast and flat else "FAIL")


def nem13_markdown(
    main_runs: list[Measurement],
    large: Measurement | None,
    target: Target,
    rounds: list[list[Measurement]],
    floor: Measurement | None,
) -> str:
    ours = main_runs[0]
    lines = [
        f"## Parse benchmark, NEM13: {ours.file} ({ours.file_mb:.1f} MB, "
        f"{ours.expected_readings:,} reads)",
        "",
        "Every tool reads every 250 record: ours `nem12 parse FILE --out FILE.parquet` "
        "(checked, all fields, Parquet written), nemreader `NEMFile(path).nem_data()`, "
        "aemo-mdff-reader `parse_accumulations(path)`.",
        "",
        "| tool | file | reads | seconds | reads/s | peak RSS MB | ours is |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += run_rows(ours, [*main_runs, *([large] if large else [])])
    lines.append("")
    if large is not None:
        lines.append(
            f"Memory flatness: RSS {large.peak_rss_mb:.0f} MB ({large.file_mb:.0f} MB file) / "
            f"{ours.peak_rss_mb:.0f} MB ({ours.file_mb:.0f} MB file) = "
            f"{large.peak_rss_mb / ours.peak_rss_mb:.2f}"
        )
    else:
        lines.append(f"Memory flatness: not measured (needs {NEM13_LARGE_INPUT.name})")
    lines.append(
        f"Each tool ran {len(rounds)} rounds, interleaved; the table shows its fastest "
        f"(seconds per round: {round_samples(main_runs, rounds)})"
    )
    references = [m for m in main_runs[1:] if m.ok and m.seconds]
    if floor is not None and floor.ok and references:
        allowed = min(m.seconds for m in references) / TARGET_NEM13_VS_FASTER
        lines += [
            "",
            f"Floor of a Polars design (fastest of {len(rounds)}, after the rounds): Polars' own "
            f"CSV reader turning the 250s into the output's types and writing Parquet, "
            f"no checks, no 550s, no text kept as written: {floor.seconds:.2f} s, "
            f"{floor.peak_rss_mb:.0f} MB; {TARGET_NEM13_VS_FASTER:g}x the faster reference "
            f"allows {allowed:.2f} s.",
        ]
    lines += ["", "| target | value | result |", "|---|---:|---|"]
    lines.append(f"| {target.name} | {target.value} | {target.status} |")
    return "\n".join(lines) + "\n"


def interleaved_rounds(
    count: int, tools: list[Callable[[], Measurement]]
) -> tuple[list[Measurement], list[list[Measurement]]]:
    """``count`` rounds of every tool, one after another; each tool's fastest round."""
    rounds = [[measure() for measure in tools] for _ in range(count)]
    return [fastest([r[i] for r in rounds]) for i in range(len(tools))], rounds


def run_nem13(
    args: argparse.Namespace, out_dir: Path
) -> tuple[str, dict[str, object], list[Measurement]]:
    """The NEM13 case: its report section, its figures, and all its runs."""
    path = NEM13_INPUT.ensure(out_dir)
    large_path = None if args.quick or args.skip_large else NEM13_LARGE_INPUT.ensure(out_dir)
    print(f"measuring on {path} ({args.rounds} interleaved rounds) ...", file=sys.stderr)
    tools: list[Callable[[], Measurement]] = [
        lambda: measure_ours(NEM13_INPUT, path, out_dir),
        lambda: measure_snippet("aemo-mdff-reader", AEMO_NEM13_SNIPPET, NEM13_INPUT, path, out_dir),
    ]
    if not args.quick:
        tools.append(
            lambda: measure_snippet(
                "nemreader", NEMREADER_NEM13_SNIPPET, NEM13_INPUT, path, out_dir
            )
        )
    main_runs, rounds = interleaved_rounds(args.rounds, tools)
    large = None if large_path is None else measure_ours(NEM13_LARGE_INPUT, large_path, out_dir)
    floor = fastest(
        [
            measure_snippet("polars floor", POLARS_NEM13_FLOOR_SNIPPET, NEM13_INPUT, path, out_dir)
            for _ in range(args.rounds)
        ]
    )
    target = nem13_target(main_runs[0], main_runs[1:], large)
    figures = {
        "runs": [
            {**asdict(r), "ok": r.ok, "readings_per_s": r.readings_per_s}
            for r in [*main_runs, *([large] if large else [])]
        ],
        "rounds": [[{**asdict(r), "ok": r.ok} for r in one] for one in rounds],
        "targets": [asdict(target)],
        "polars_floor": {**asdict(floor), "ok": floor.ok},
    }
    runs = [*main_runs, *([large] if large else []), floor]
    return nem13_markdown(main_runs, large, target, rounds, floor), figures, runs


def rss_floor_mb(out_dir: Path) -> float:
    """Peak RSS of a bare Python through the launcher: no figure can be lower."""
    return run_measured([sys.executable, "-c", "pass"], out_dir / "logs" / "floor")[1]


def run_rows(ours: Measurement, runs: list[Measurement]) -> list[str]:
    """One table row per run: readings, seconds, rate, peak RSS, how much faster ours is."""
    rows = []
    for run in runs:
        if run is ours or run.tool == ours.tool or not run.readings_per_s:
            ratio = "-"
        elif ours.readings_per_s >= run.readings_per_s:
            ratio = f"{ours.readings_per_s / run.readings_per_s:.1f}x faster"
        else:
            ratio = f"{run.readings_per_s / ours.readings_per_s:.1f}x slower"
        if run.readings is None:
            readings = f"FAILED (exit {run.exit_code})"
        elif run.readings != run.expected_readings:
            readings = f"{run.readings:,} (expected {run.expected_readings:,})"
        else:
            readings = f"{run.readings:,}"
        rows.append(
            f"| {run.tool} | {run.file} ({run.file_mb:.0f} MB) | {readings} | {run.seconds:.2f} "
            f"| {run.readings_per_s:,.0f} | {run.peak_rss_mb:.0f} | {ratio} |"
        )
    return rows


def round_samples(main_runs: list[Measurement], rounds: list[list[Measurement]]) -> str:
    return "; ".join(
        f"{run.tool} " + " / ".join(f"{r[i].seconds:.2f}" for r in rounds)
        for i, run in enumerate(main_runs)
    )


def markdown(
    main_runs: list[Measurement],
    flat_runs: list[Measurement],
    targets: list[Target],
    floor_mb: float,
    load_before: float,
    rounds: list[list[Measurement]],
) -> str:
    ours = main_runs[0]
    lines = [
        f"## Parse benchmark: {ours.file} ({ours.file_mb:.1f} MB, "
        f"{ours.expected_readings:,} readings)",
        "",
        "| tool | file | readings | seconds | readings/s | peak RSS MB | ours is |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    lines += run_rows(ours, [*main_runs, *flat_runs])
    medium = next((r for r in flat_runs if r.file.startswith(MEDIUM_INPUT.name)), None)
    large = next((r for r in flat_runs if r.file.startswith(LARGE_INPUT.name)), None)
    lines.append("")
    if medium and large:
        lines.append(
            f"Memory flatness: RSS {large.peak_rss_mb:.0f} MB ({large.file_mb:.0f} MB file) / "
            f"{medium.peak_rss_mb:.0f} MB ({medium.file_mb:.0f} MB file) = "
            f"{large.peak_rss_mb / medium.peak_rss_mb:.2f}; under 1 GB: "
            f"{'yes' if medium.peak_rss_mb * MB < GB else 'no'} / "
            f"{'yes' if large.peak_rss_mb * MB < GB else 'no'}"
        )
    else:
        lines.append("Memory flatness: not measured (needs both large files)")
    samples = round_samples(main_runs, rounds)
    lines.append(
        f"Each tool ran {len(rounds)} rounds, interleaved; the table shows its fastest "
        f"(seconds per round: {samples})"
    )
    lines.append(f"RSS floor (a bare Python through the launcher): {floor_mb:.0f} MB")
    if load_before >= BUSY_LOAD:
        lines.append(f"Warning: load average {load_before:.1f} at start; timings are noisy")
    lines += ["", "| target | value | result |", "|---|---:|---|"]
    lines += [f"| {t.name} | {t.value} | {t.status} |" for t in targets]
    return "\n".join(lines) + "\n"


def environment() -> dict[str, object]:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": {
            d: version(d) for d in ("nem12-pipeline", "polars", "nemreader", "aemo-mdff-reader")
        },
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"skip nemreader, {LARGE_INPUT.name} and {NEM13_LARGE_INPUT.name} (smoke run)",
    )
    parser.add_argument(
        "--skip-large",
        action="store_true",
        help="skip the memory-flatness files (160 MB and 800 MB; NEM13 five million reads)",
    )
    parser.add_argument(
        "--cases",
        choices=("all", "nem12", "nem13"),
        default="all",
        help="which benchmark cases to run (default all: NEM12, then NEM13)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds on the main file; each tool's fastest counts (default 3)",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=BENCH_DIR / "out",
        help="inputs, outputs, logs and the report (default: bench/out)",
    )
    return parser


def run_nem12(
    args: argparse.Namespace, out_dir: Path, floor_mb: float, load_before: float
) -> tuple[str, dict[str, object], list[Measurement]]:
    """The NEM12 case: its report section, its figures, and all its runs."""
    flat_specs = [] if args.skip_large else [MEDIUM_INPUT] + ([] if args.quick else [LARGE_INPUT])
    paths = {spec: spec.ensure(out_dir) for spec in [MAIN_INPUT, *flat_specs]}

    main_path = paths[MAIN_INPUT]
    print(f"measuring on {main_path} ({args.rounds} interleaved rounds) ...", file=sys.stderr)
    tools: list[Callable[[], Measurement]] = [
        lambda: measure_ours(MAIN_INPUT, main_path, out_dir),
        lambda: measure_snippet("aemo-mdff-reader", AEMO_SNIPPET, MAIN_INPUT, main_path, out_dir),
    ]
    if not args.quick:
        tools.append(
            lambda: measure_snippet("nemreader", NEMREADER_SNIPPET, MAIN_INPUT, main_path, out_dir)
        )
    main_runs, rounds = interleaved_rounds(args.rounds, tools)
    flat_runs = [measure_ours(spec, paths[spec], out_dir) for spec in flat_specs]

    by_file = {spec.name: m for spec, m in zip(flat_specs, flat_runs, strict=True)}
    targets = speed_targets(main_runs[0], main_runs[1:])
    targets += memory_targets(by_file.get(MEDIUM_INPUT.name), by_file.get(LARGE_INPUT.name))
    figures = {
        "runs": [
            {**asdict(r), "ok": r.ok, "readings_per_s": r.readings_per_s}
            for r in [*main_runs, *flat_runs]
        ],
        "rounds": [[{**asdict(r), "ok": r.ok} for r in one] for one in rounds],
        "targets": [asdict(t) for t in targets],
    }
    report = markdown(main_runs, flat_runs, targets, floor_mb, load_before, rounds)
    return report, figures, [*main_runs, *flat_runs]


def run(args: argparse.Namespace) -> int:
    load_before = os.getloadavg()[0]  # before our own generation adds to it
    out_dir: Path = args.out_dir
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    floor_mb = rss_floor_mb(out_dir)
    sections: list[str] = []
    figures: dict[str, object] = {
        "environment": environment(),
        "mode": {
            "quick": args.quick,
            "skip_large": args.skip_large,
            "rounds": args.rounds,
            "cases": args.cases,
        },
        "rss_floor_mb": floor_mb,
        "load_average_before": load_before,
    }
    runs: list[Measurement] = []
    if args.cases in ("all", "nem12"):
        section, nem12_figures, nem12_runs = run_nem12(args, out_dir, floor_mb, load_before)
        sections.append(section)
        figures.update(nem12_figures)
        runs += nem12_runs
    if args.cases in ("all", "nem13"):
        section, figures["nem13"], nem13_runs = run_nem13(args, out_dir)
        if args.cases == "nem13":
            section += f"\nRSS floor (a bare Python through the launcher): {floor_mb:.0f} MB\n"
            if load_before >= BUSY_LOAD:
                section += f"Warning: load average {load_before:.1f} at start; timings are noisy\n"
        sections.append(section)
        runs += nem13_runs

    report = "\n".join(sections)
    print(report)
    (out_dir / "parse_bench.md").write_text(report)
    (out_dir / "parse_bench.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out_dir / 'parse_bench.md'} and {out_dir / 'parse_bench.json'}", file=sys.stderr)

    failed = [r for r in runs if r.exit_code != 0 or r.readings is None]
    for r in failed:
        print(
            f"{r.tool} failed on {r.file} (exit {r.exit_code}); see {out_dir / 'logs'}",
            file=sys.stderr,
        )
    return 2 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except ToolFailure as exc:
        print(f"parse_bench: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
