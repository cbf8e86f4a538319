"""Which jemalloc setting Polars starts with: the library's, the command's, or the user's."""

from __future__ import annotations

import os
import subprocess
import sys

from nem12 import allocator

SHOW = "import os, nem12, polars; print(os.environ['_RJEM_MALLOC_CONF'])"
COMMAND = (
    "import os, nem12; nem12.allocator.use_malloc_conf(nem12.allocator.COMMAND_MALLOC_CONF); "
    "import polars; print(os.environ['_RJEM_MALLOC_CONF'])"
)


def started_with(code: str, conf: str | None) -> str:
    """The setting Polars started with in a fresh process, without the default it
    puts in front (jemalloc takes the last value of each option)."""
    env = {k: v for k, v in os.environ.items() if k != "_RJEM_MALLOC_CONF"}
    if conf is not None:
        env["_RJEM_MALLOC_CONF"] = conf
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().removeprefix(f"{allocator.POLARS_DEFAULT_MALLOC_CONF},")


def test_as_a_library_freed_pages_are_handed_back():
    assert started_with(SHOW, None) == allocator.LIBRARY_MALLOC_CONF


def test_polars_default_inherited_from_a_parent_is_replaced():
    inherited = f"{allocator.POLARS_DEFAULT_MALLOC_CONF},{allocator.COMMAND_MALLOC_CONF}"
    assert started_with(SHOW, allocator.POLARS_DEFAULT_MALLOC_CONF) == (
        allocator.LIBRARY_MALLOC_CONF
    )
    assert started_with(SHOW, inherited) == allocator.LIBRARY_MALLOC_CONF


def test_the_command_keeps_freed_pages_even_under_a_parent_that_set_the_library_one():
    inherited = f"{allocator.POLARS_DEFAULT_MALLOC_CONF},{allocator.LIBRARY_MALLOC_CONF}"
    assert started_with(COMMAND, inherited) == allocator.COMMAND_MALLOC_CONF


def test_a_users_own_setting_is_kept():
    assert started_with(SHOW, "narenas:2") == "narenas:2"
    assert started_with(COMMAND, "narenas:2") == "narenas:2"
