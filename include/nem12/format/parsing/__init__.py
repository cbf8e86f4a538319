"""Parsing MDFF with Polars: chunks of whole 200 blocks in, long-format readings out.

NEM13 files (``AccumulationParse``) are read the same way in chunks of whole
250 reads, into one row per read (``reads``); ``parse_member`` picks the parser
by the file's header.

A member is read in chunks (see ``reading.iter_chunks``); each chunk becomes
frames of its records' fields (``records``), the checks of each record type
run over them as Polars expressions (``checks``), and the 300 records of
blocks without errors are exploded into one row per interval (``explode``).
``driver`` runs it all and carries a ``state`` from chunk to chunk. Memory
therefore depends on the chunk size, not the file size.

Errors found late (a missing 900, say) reject a file whose earlier readings
were already yielded: consumers stage what ``Parse.batches`` yields and keep
it only when ``Parse.result.status`` is not ``rejected``.
"""

from nem12.format.parsing.config import ParseConfig
from nem12.format.parsing.driver import (
    AccumulationParse,
    Parse,
    member_version,
    parse_member,
    parse_source,
)
from nem12.format.parsing.result import Header, ParseNotFinished, ParseResult, Status

__all__ = [
    "AccumulationParse",
    "Header",
    "Parse",
    "ParseConfig",
    "ParseNotFinished",
    "ParseResult",
    "Status",
    "member_version",
    "parse_member",
    "parse_source",
]
