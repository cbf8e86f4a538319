"""Allocator settings apply where the process is ours (the command, a task), nowhere else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from nem12.pipeline import allocator

DAGS = Path(__file__).parents[2] / "dags"
SHOW = "import os, polars; print(os.environ['_RJEM_MALLOC_CONF'])"
#: Every runtime module imported, as an api-server or a notebook would.
IMPORT_ALL = (
    "import nem12, nem12.cli, nem12.format.parsing, nem12.format.output, "
    "nem12.warehouse.merge, nem12.warehouse.staging, nem12.pipeline.steps, "
    "nem12.pipeline.review_web; "
)
COMMAND = "from nem12.pipeline import allocator; allocator.use_in_command(); " + SHOW
TASK = f"import sys; sys.path.insert(0, {str(DAGS)!r}); import nem12_common; "
TASK += "nem12_common.our_process(); " + SHOW
#: Whether a 4 MiB block comes from mmap (glibc's default) or the kept heap (ours).
MMAPPED = """
import ctypes, json
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
before = libc.mallinfo2().hblks
block = libc.malloc(4 << 20)
print(json.dumps(libc.mallinfo2().hblks > before))
"""


def run(code: str, conf: str | None = None) -> str:
    """The last line ``code`` prints in a fresh process (``_RJEM_MALLOC_CONF`` = ``conf``)."""
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    env = {k: v for k, v in env.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    if conf is not None:
        env["_RJEM_MALLOC_CONF"] = conf
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def started_with(code: str, conf: str | None = None) -> str:
    """The setting Polars started with, without the default it puts in front (jemalloc
    takes the last value of each option)."""
    return run(code, conf).removeprefix(f"{allocator.POLARS_DEFAULT_MALLOC_CONF},")


def test_importing_the_package_changes_nothing_in_the_host_process():
    assert run(IMPORT_ALL + SHOW) == allocator.POLARS_DEFAULT_MALLOC_CONF
    assert json.loads(run(IMPORT_ALL + MMAPPED)) is True  # glibc's own mmap threshold


def test_a_task_hands_freed_pages_back_and_keeps_the_c_heap():
    assert started_with(TASK) == allocator.LIBRARY_MALLOC_CONF
    prepared = "from nem12.pipeline import allocator; allocator.use_in_task(); "
    assert json.loads(run(prepared + MMAPPED)) is False


def test_the_command_keeps_freed_pages_even_under_a_parent_that_set_the_task_one():
    inherited = f"{allocator.POLARS_DEFAULT_MALLOC_CONF},{allocator.LIBRARY_MALLOC_CONF}"
    assert started_with(COMMAND, inherited) == allocator.COMMAND_MALLOC_CONF
    assert started_with(COMMAND) == allocator.COMMAND_MALLOC_CONF


def test_polars_default_inherited_from_a_parent_is_replaced():
    inherited = f"{allocator.POLARS_DEFAULT_MALLOC_CONF},{allocator.COMMAND_MALLOC_CONF}"
    assert started_with(TASK, allocator.POLARS_DEFAULT_MALLOC_CONF) == (
        allocator.LIBRARY_MALLOC_CONF
    )
    assert started_with(TASK, inherited) == allocator.LIBRARY_MALLOC_CONF


def test_a_users_own_setting_is_kept():
    assert started_with(TASK, "narenas:2") == "narenas:2"
    assert started_with(COMMAND, "narenas:2") == "narenas:2"


def test_every_task_body_starts_by_claiming_its_process():
    """Each task calls ``our_process()`` before anything that could import Polars."""
    import ast

    for path in DAGS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef) or not any(
                "task" in ast.unparse(d) for d in node.decorator_list
            ):
                continue
            body = [
                s
                for s in node.body
                if not isinstance(s, ast.Expr) or not isinstance(s.value, ast.Constant)
            ]
            assert ast.unparse(body[0]) == "our_process()", f"{path.name}: {node.name}"
