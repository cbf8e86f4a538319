"""AEMO MDFF meter data: the format, the warehouse, the pipeline's steps and the command.

Layers, each importing only those below it (``tests/unit/test_layers.py``):
``format`` (MDFF facts, rules, reading, parsing), ``warehouse`` (PostgreSQL),
``pipeline`` (one function per task, S3, quality, settings), then ``cli``;
``devtools`` (demo, local services, generator) sits apart, used by people and
tests only. Importing any of them changes nothing in the host process.
"""

from typing import NoReturn


def command() -> NoReturn:
    """The ``nem12`` console script: the command's allocator settings, then the CLI."""
    from nem12.pipeline import allocator

    allocator.use_in_command()
    from nem12.cli import run

    run()
