"""``make airflow`` and ``make cluster`` stop cleanly: nothing of theirs is left running.

Each is started as ``make`` starts it (``python -m nem12.devtools.demo --serve ...``) in a
process group of its own; the signal goes to that group, as Ctrl-C or a
service manager's SIGTERM would send it. Every process it started, the
PostgreSQL server (which detaches) and Redis included, must be gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from nem12.devtools.services import free_port


def processes_of(root: psutil.Process, workdir: str) -> dict[int, str]:
    """The process, its descendants, and any process naming the work folder."""
    found = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            found[p.pid] = " ".join(p.cmdline())
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            pass  # a helper that already ended
    return {**found, **naming(workdir)}


def alive(pids: dict[int, str]) -> dict[int, str]:
    left = {}
    for pid, cmdline in pids.items():
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                left[pid] = cmdline
        except psutil.NoSuchProcess:
            pass
    return left


@pytest.mark.parametrize(
    ("serve", "sig"),
    [("local", signal.SIGINT), ("celery", signal.SIGTERM)],
    ids=["make airflow, Ctrl-C", "make cluster, SIGTERM"],
)
def test_a_stop_leaves_no_process_behind(tmp_path, serve, sig):
    workdir = str(tmp_path / "work")
    started = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nem12.devtools.demo",
            "--serve",
            serve,
            "--workdir",
            workdir,
            "--port",
            str(free_port()),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = started.stdout.readline()
        lines.append(line)
        if "Ctrl-C stops everything" in line or started.poll() is not None:
            break
    assert "Ctrl-C stops everything" in lines[-1], "".join(lines)
    assert "login admin / " in "".join(lines)
    running = processes_of(psutil.Process(started.pid), workdir)
    names = " ".join(running.values())
    for component in ("api_server", "scheduler", "dag-processor", "triggerer", "postgres"):
        assert component in names, names
    if serve == "celery":
        assert "redis-server" in names and names.count("celery worker") >= 2
    os.killpg(started.pid, sig)
    assert started.wait(120) == 0
    deadline = time.monotonic() + 30
    while alive(running) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive(running) == {}
    assert alive(naming(workdir)) == {}


def naming(workdir: str) -> dict[int, str]:
    """Every process whose command line names the work folder."""
    found = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if workdir in cmdline:
            found[p.pid] = cmdline
    return found
