"""AEMO MDFF (NEM12) reading, parsing and structure rules, without Airflow."""

from typing import NoReturn

from nem12 import allocator


def command() -> NoReturn:
    """The ``nem12`` console script: the command's allocator setting, then the CLI."""
    allocator.use_malloc_conf(allocator.COMMAND_MALLOC_CONF)
    from nem12.cli import run

    run()


allocator.use_malloc_conf(allocator.LIBRARY_MALLOC_CONF)
allocator.keep_freed_c_heap()
