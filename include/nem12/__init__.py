"""AEMO MDFF (NEM12) reading, parsing and structure rules, without Airflow."""

import os

# Polars allocates through jemalloc. Handing freed pages back to the OS after
# every chunk costs a page fault per page on the next one (~15% of parse
# time), and several arenas let the parse and encode threads fragment memory
# so that peak RSS creeps up with file size. Keeping freed pages in a single
# arena holds RSS flat because chunks bound the peak. Must be set before
# Polars loads; a value the user set wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:-1,muzzy_decay_ms:-1,narenas:1")
