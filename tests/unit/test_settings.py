"""Every ``NEM12_*`` setting is read in one place, parsed strictly, and named when wrong."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nem12.format.reading import ReadLimits
from nem12.pipeline.settings import TASK_CHUNK_BYTES, Settings, SettingsError, variables

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize("spelling", ["true", "True", "TRUE", "1", "yes", "Yes", "on", " true "])
def test_booleans_accept_the_usual_spellings_of_true(spelling):
    settings = Settings.from_env({"NEM12_REJECT_FILE_ON_BLOCK_ERROR": spelling})
    assert settings.reject_file_on_block_error is True
    assert settings.parse_config().reject_file_on_block_error is True


@pytest.mark.parametrize("spelling", ["false", "False", "0", "no", "off", ""])
def test_booleans_accept_the_usual_spellings_of_false(spelling):
    settings = Settings.from_env({"NEM12_REJECT_FILE_ON_BLOCK_ERROR": spelling})
    assert settings.reject_file_on_block_error is False


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "NEM12_REJECT_FILE_ON_BLOCK_ERROR",
            "sure",
            "NEM12_REJECT_FILE_ON_BLOCK_ERROR must be true or false (or yes/no, 1/0), not 'sure'",
        ),
        ("NEM12_GROUP_FILES", "ten", "NEM12_GROUP_FILES must be a whole number, not 'ten'"),
        ("NEM12_GROUP_FILES", "0", "NEM12_GROUP_FILES must be at least 1, not '0'"),
        ("NEM12_MAX_RATIO", "lots", "NEM12_MAX_RATIO must be a number, not 'lots'"),
        ("NEM12_CHUNK_BYTES", "-1", "NEM12_CHUNK_BYTES must be at least 1, not '-1'"),
        ("NEM12_BUCKET", " ", "NEM12_BUCKET must not be empty"),
        ("NEM12_SENSE_POKE_SECONDS", "5m",
         "NEM12_SENSE_POKE_SECONDS must be a whole number, not '5m'"),
    ],
)  # fmt: skip
def test_an_invalid_value_stops_with_one_line_naming_the_variable(variable, value, message):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({variable: value})
    assert str(raised.value) == message


def test_every_variable_reaches_its_setting():
    env = {
        "NEM12_BUCKET": "meters",
        "NEM12_LANDING_PREFIX": "in/",
        "NEM12_GROUP_BYTES": "1000",
        "NEM12_MAX_RATIO": "20.5",
        "NEM12_MAX_DEPTH": "0",
        "NEM12_CHUNK_BYTES": "65536",
        "NEM12_SUITES_DIR": "/opt/suites",
        "NEM12_LOAD_SLOTS": "3",
    }
    settings = Settings.from_env(env)
    assert (settings.bucket, settings.landing_prefix, settings.group_bytes) == (
        "meters",
        "in/",
        1000,
    )
    assert settings.suites_dir == Path("/opt/suites") and settings.load_slots == 3
    assert settings.read_limits() == ReadLimits(max_ratio=20.5, max_depth=0, chunk_bytes=65536)
    assert settings.parse_config().limits.chunk_bytes == 65536


def test_tasks_parse_in_smaller_chunks_than_the_command_unless_told():
    assert Settings.from_env({}).parse_config().limits.chunk_bytes == TASK_CHUNK_BYTES
    assert Settings.from_env({}).read_limits() == ReadLimits()


def test_every_variable_is_named_once():
    assert len(variables()) == len(set(variables()))
    assert all(re.fullmatch(r"NEM12_[A-Z_]+", v) for v in variables())


def test_no_other_module_reads_a_nem12_variable():
    reading = re.compile(r"(environ|getenv|env)(\.get)?[\[(]\s*[\"']NEM12_")
    sources = [
        *(ROOT / "include").rglob("*.py"),
        *(ROOT / "dags").glob("*.py"),
        *(ROOT / "plugins").glob("*.py"),
    ]
    readers = [p.name for p in sources if reading.search(p.read_text())]
    assert readers == []
    assert "NEM12_" in (ROOT / "include/nem12/pipeline/settings.py").read_text()


def test_the_command_names_a_bad_setting_in_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "from nem12.cli import run; run()", "validate", str(tmp_path)],
        capture_output=True,
        text=True,
        env={"NEM12_MAX_LINE_BYTES": "huge", "PATH": "/usr/bin"},
    )
    assert done.returncode == 2
    assert done.stderr == "nem12: NEM12_MAX_LINE_BYTES must be a whole number, not 'huge'\n"
