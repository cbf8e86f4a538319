"""The nem12 command: exit codes, JSON findings, outputs, no tracebacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nem12.cli import main
from nem12.devtools.generate import GeneratorSpec, generate_bytes
from tests.conftest import AEMO

FINDING_KEYS = {"file", "rule", "severity", "line", "record_type", "nmi", "message"}


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_validate_exit_codes(tmp_path, capsys):
    good = write(tmp_path, "good.csv", generate_bytes(GeneratorSpec()))
    warn = write(tmp_path, "warn.csv", generate_bytes(GeneratorSpec(defects=("nmi_format",))))
    bad = write(tmp_path, "bad.csv", generate_bytes(GeneratorSpec(defects=("end_missing",))))
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(warn)]) == 0
    assert main(["validate", str(good), str(bad)]) == 1
    assert main(["validate", str(tmp_path / "missing.csv")]) == 2
    assert main(["validate"]) == 2
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "cannot read" in err


def test_validate_json_lists_findings_with_the_documented_keys(capsys):
    path = AEMO / "invalid" / "Example_NEM12_15min_200_30min_300.csv"
    assert main(["validate", str(path), "--json"]) == 1
    findings = json.loads(capsys.readouterr().out)
    assert all(set(f) == FINDING_KEYS for f in findings)
    errors = [f for f in findings if f["severity"] == "error"]
    assert errors == [
        {
            "file": str(path),
            "rule": "value_count",
            "severity": "error",
            "line": 3,
            "record_type": "300",
            "nmi": "123",
            "message": "300 record has 48 interval values; IntervalLength 15 needs 96",
        }
    ]


def test_validate_text_output_is_one_line_per_finding(capsys):
    path = AEMO / "invalid" / "Example_NEM12_missing_header.csv"
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"{path}:2: error header_missing: the first record is '200', not a 100 header" in out


def test_parse_writes_accepted_readings_to_parquet_and_csv(tmp_path, capsys):
    source = write(tmp_path, "in.csv", generate_bytes(GeneratorSpec(nmis=2, days=2)))
    assert main(["parse", str(source), "--out", str(tmp_path / "out.parquet")]) == 0
    table = pl.read_parquet(tmp_path / "out.parquet")
    assert table.height == 2 * 2 * 2 * 48
    required = {
        "nmi",
        "nmi_suffix",
        "interval_start",
        "interval_length",
        "value",
        "uom",
        "quality_method",
        "reason_code",
        "update_datetime",
    }
    assert required <= set(table.columns)
    assert main(["parse", str(source), "--out", str(tmp_path / "out.csv")]) == 0
    csv = pl.read_csv(tmp_path / "out.csv", infer_schema=False)
    assert csv.height == table.height
    assert csv.get_column("value").to_list() == [
        format(v.normalize(), "f") for v in table.get_column("value").to_list()
    ]


def test_parse_keeps_good_members_and_reports_the_rejected(tmp_path, capsys):
    findings = tmp_path / "findings.json"
    code = main(
        [
            "parse",
            str(AEMO / "invalid"),
            "--out",
            str(tmp_path / "o.parquet"),
            "--findings",
            str(findings),
        ]
    )
    assert code == 1
    listed = json.loads(findings.read_text())
    assert {f["rule"] for f in listed} >= {"header_missing", "value_count", "file_empty"}
    # only the one partially valid invalid example contributes readings
    assert pl.read_parquet(tmp_path / "o.parquet").height == 96


def test_parse_refuses_an_unknown_output_format(tmp_path, capsys):
    source = write(tmp_path, "in.csv", generate_bytes(GeneratorSpec()))
    assert main(["parse", str(source), "--out", str(tmp_path / "o.xlsx")]) == 2
    assert "must end in .parquet or .csv" in capsys.readouterr().err


def test_generate_writes_files_and_lists_defects(tmp_path, capsys):
    for name in ("g.csv", "g.zip", "g.csv.gz"):
        assert main(["generate", str(tmp_path / name), "--nmis", "1", "--days", "1"]) == 0
        assert main(["validate", str(tmp_path / name)]) == 0
    assert main(["generate", "--list-defects"]) == 0
    assert "value_negative" in capsys.readouterr().out
    assert main(["generate", str(tmp_path / "x.csv"), "--defect", "nonsense"]) == 2


def test_the_installed_console_script_runs():
    script = shutil.which("nem12", path=str(Path(sys.executable).parent))
    assert script is not None
    done = subprocess.run(
        [script, "validate", str(AEMO / "Example_NEM12_ManyNMIs.zip")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "accepted, 57024 readings" in done.stderr


def test_the_console_script_flushes_its_output_and_exit_code_before_leaving(tmp_path):
    """The script leaves without the interpreter's teardown: the Parquet file, the
    last stderr line and the exit code must all have been delivered by then."""
    script = shutil.which("nem12", path=str(Path(sys.executable).parent))
    assert script is not None
    out = tmp_path / "readings.parquet"
    done = subprocess.run(
        [script, "parse", str(AEMO / "Example_NEM12_ManyNMIs.zip"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert done.stderr.splitlines()[-1] == f"wrote 57024 readings to {out}"
    assert pl.read_parquet(out).height == 57024
    missing = subprocess.run(
        [script, "validate", str(tmp_path / "absent.csv"), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert "absent.csv" in missing.stderr


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.one_of(
        st.binary(max_size=2000),
        st.text(alphabet="0123456789,.\r\n AEFNSV-", max_size=3000).map(str.encode),
        st.lists(
            st.sampled_from(
                [
                    b"100,NEM12,202401010000,A,B",
                    b"200,NMI0000001,E1,1,E1,,M,kWh,30,",
                    b"300,20240101," + b"1," * 48 + b"A,,,,",
                    b"400,1,48,A,,",
                    b"900",
                    b"",
                    b"300,2024",
                    b"500,O,,,",
                ]
            ),
            max_size=12,
        ).map(b"\n".join),
    )
)
def test_no_input_produces_a_traceback(tmp_path, capsys, data):
    path = write(tmp_path, "fuzz.csv", data)
    code = main(["validate", str(path), "--json"])
    captured = capsys.readouterr()
    assert code in (0, 1)
    assert "Traceback" not in captured.err
    assert all(set(f) == FINDING_KEYS for f in json.loads(captured.out))


def test_a_bug_of_ours_is_one_line_naming_the_file_and_exit_2(tmp_path, capsys, monkeypatch):
    from nem12.format.parsing.checks import CHECKS

    def broken(_):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setitem(CHECKS, ("blocks", "nmi_format"), broken)
    path = write(tmp_path, "good.csv", generate_bytes(GeneratorSpec()))
    assert main(["validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"nem12: internal error while reading {path}: ZeroDivisionError: division by zero "
        "(a bug in nem12, not in the file; --traceback shows where)"
    ]
    assert captured.out == ""
    assert main(["parse", str(path), "--out", str(tmp_path / "out.parquet"), "--traceback"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and 'raise ZeroDivisionError("division by zero")' in err
    assert err.splitlines()[-1].startswith(f"nem12: internal error while reading {path}: ")
    assert not (tmp_path / "out.parquet").exists()
