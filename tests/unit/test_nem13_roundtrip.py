"""NEM13 generator -> parser round trip, against a plain-Python model of the same records."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from nem12.devtools.generate import Nem13Spec, generate_bytes, nem13_records
from nem12.format.parsing import ParseConfig
from nem12.format.reading import ReadLimits
from nem12.format.spec import READ_B2B_FIELDS, READ_FIELDS, READ_SCHEMA
from tests.conftest import parse_all

DATETIMES = (
    "previous_register_read_datetime",
    "current_register_read_datetime",
    "update_datetime",
    "msats_load_datetime",
)
DECIMALS = ("previous_register_read", "current_register_read", "quantity")


def model(spec: Nem13Spec) -> dict[int, dict[str, object]]:
    """Each read by its line, every READ_SCHEMA column as the MDFF text says it."""
    out: dict[int, dict[str, object]] = {}
    last = None
    for line, record in enumerate(nem13_records(spec), start=1):
        if record[0] == "250":
            row: dict[str, object] = {
                name: record[index] or None for name, index in READ_FIELDS.items()
            }
            for name in DECIMALS:
                row[name] = Decimal(record[READ_FIELDS[name]])
            for name in ("previous_register_read", "current_register_read"):
                row[f"{name}_text"] = record[READ_FIELDS[name]]
            for name in DATETIMES:
                text = record[READ_FIELDS[name]]
                row[name] = datetime.strptime(text, "%Y%m%d%H%M%S") if text else None
            nsrd = record[READ_FIELDS["next_scheduled_read_date"]]
            row["next_scheduled_read_date"] = (
                datetime.strptime(nsrd, "%Y%m%d").date() if nsrd else None
            )
            row.update(dict.fromkeys(READ_B2B_FIELDS))
            row["line_number"] = line
            out[line] = row
            last = row
        elif record[0] == "550":
            assert last is not None and last["previous_trans_code"] is None
            last.update({name: record[i] or None for name, i in READ_B2B_FIELDS.items()})
    return out


def parsed_reads(data: bytes, config: ParseConfig) -> dict[int, dict[str, object]]:
    parsed = parse_all(data, config=config)
    assert parsed.result.findings == []
    assert parsed.result.status == "accepted"
    assert parsed.reads.columns == list(READ_SCHEMA)
    got = {}
    for row in parsed.reads.iter_rows(named=True):
        for name in DATETIMES:
            if row[name] is not None:
                row[name] = row[name].replace(tzinfo=None)
        got[row["line_number"]] = row
    assert len(got) == parsed.reads.height == parsed.result.readings
    return got


specs = st.builds(
    Nem13Spec,
    nmis=st.integers(1, 3),
    reads=st.integers(1, 5),
    registers=st.lists(
        st.sampled_from(["11", "41", "12", "42", "21"]), min_size=1, max_size=3, unique=True
    ).map(tuple),
    seed=st.integers(0, 10_000),
    start=st.datetimes(datetime(2000, 1, 1), datetime(2030, 12, 31)),
    read_days=st.integers(1, 120),
    digits=st.integers(4, 15),
    decimals=st.integers(0, 14),
    rollover_share=st.sampled_from([0.0, 0.5, 1.0]),
    substituted_share=st.sampled_from([0.0, 0.3, 1.0]),
    estimate_share=st.sampled_from([0.0, 1.0]),
    b2b_share=st.sampled_from([0.0, 0.5, 1.0]),
)


@settings(max_examples=80, deadline=None)
@given(spec=specs, chunk=st.sampled_from([512, 4096, 4 << 20]))
def test_parsed_reads_equal_the_model(spec, chunk):
    config = ParseConfig(limits=ReadLimits(chunk_bytes=chunk))
    assert parsed_reads(generate_bytes(spec), config) == model(spec)


def test_the_model_reads_what_the_parser_should():
    """One read checked by hand, so the model is not merely the parser's mirror."""
    spec = Nem13Spec(nmis=1, reads=1, registers=("11",), seed=1, b2b_share=1.0)
    (record, b2b) = [r for r in nem13_records(spec) if r[0] in ("250", "550")]
    (row,) = model(spec).values()
    assert row["previous_register_read_text"] == record[8]
    assert row["quantity"] == Decimal(record[18])
    assert row["current_register_read_datetime"] == datetime.strptime(record[14], "%Y%m%d%H%M%S")
    assert row["previous_trans_code"] == b2b[1] and row["line_number"] == 2
    assert isinstance(row["next_scheduled_read_date"], date | None)
