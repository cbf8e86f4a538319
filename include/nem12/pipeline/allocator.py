"""Allocator settings for Polars (jemalloc) and glibc, made before Polars loads.

Applied only where the process is ours: the ``nem12`` command (``use_in_command``)
and the pipeline's tasks (``use_in_task``, the first call of every task body).
Importing the package changes nothing in the host process (an api-server, a
notebook).
"""

import ctypes
import os

# Polars allocates through jemalloc, configured by _RJEM_MALLOC_CONF when Polars
# loads (so these take effect only if set before that). Both settings keep one
# arena: several let the parse and encode threads fragment memory, so that peak
# RSS crept up with file size. They differ in what happens to freed pages:
# - as a library (Airflow tasks, notebooks) a background thread hands them back
#   within ~0.5 s, so a step that follows a parse (Great Expectations, a COPY)
#   does not run on top of the parse's peak: 716 MB instead of 1,051 MB when a
#   200 MB file's 713k records are validated after parsing it;
# - the ``nem12`` command parses once per process and keeps them: handing them
#   back costs a page fault per page on the next chunk (~6% of parse time).
#   Transparent huge pages (where the kernel offers them on request) mean fewer
#   page faults: ~5% less parse time, measured side by side.
# Polars puts its own default in front of the setting it finds (later options
# win) and child processes inherit the result, so what follows that default is
# replaced if it is empty or ours; any other value (the user's) is kept.
POLARS_DEFAULT_MALLOC_CONF = "dirty_decay_ms:500,muzzy_decay_ms:1000"
LIBRARY_MALLOC_CONF = "dirty_decay_ms:500,muzzy_decay_ms:0,narenas:1,background_thread:true"
COMMAND_MALLOC_CONF = "dirty_decay_ms:-1,muzzy_decay_ms:-1,narenas:1,thp:always"


def use_malloc_conf(conf: str) -> None:
    """Start Polars with ``conf`` unless the user set their own (only before Polars loads)."""
    current = os.environ.get("_RJEM_MALLOC_CONF", "")
    while current.startswith(POLARS_DEFAULT_MALLOC_CONF):  # Polars prepends it on import
        current = current.removeprefix(POLARS_DEFAULT_MALLOC_CONF).removeprefix(",")
    if current in ("", LIBRARY_MALLOC_CONF, COMMAND_MALLOC_CONF):
        os.environ["_RJEM_MALLOC_CONF"] = conf


def keep_freed_c_heap() -> None:
    """Let glibc's malloc reuse freed buffers instead of returning them to the OS.

    Each chunk's bytes and text are Python objects of several MB from glibc's
    malloc, which by default unmaps such blocks or trims them off its heap when
    freed, so every chunk pays the kernel to zero fresh pages again (a third of
    the parse's page faults).
    A user's own ``MALLOC_*`` or ``GLIBC_TUNABLES`` settings are kept.
    """
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "") or any(
        name.startswith("MALLOC_") for name in os.environ
    ):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest; chunks are a few MB
    # Hand back only a large free top: a higher threshold let RSS creep with file size.
    mallopt(m_trim_threshold, 128 << 20)


def use_in_task() -> None:
    """A pipeline task's process: freed pages handed back, the C heap kept."""
    use_malloc_conf(LIBRARY_MALLOC_CONF)
    keep_freed_c_heap()


def use_in_command() -> None:
    """The ``nem12`` command's process: freed pages and the C heap kept."""
    use_malloc_conf(COMMAND_MALLOC_CONF)
    keep_freed_c_heap()
