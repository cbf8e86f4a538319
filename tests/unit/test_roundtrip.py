"""Generator -> parser round trip, against a plain-Python model of the same records."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from nem12.devtools.generate import GeneratorSpec, _records_with_defects, generate_bytes
from nem12.format.parsing import ParseConfig
from nem12.format.reading import ReadLimits
from tests.conftest import parse_all


def model(spec: GeneratorSpec) -> dict[tuple[str, str, datetime], tuple[Decimal, str]]:
    """Readings as the MDFF text says them, computed record by record."""
    out: dict[tuple[str, str, datetime], tuple[Decimal, str]] = {}
    nmi = suffix = None
    length = 0
    last_day: list[tuple[str, str, datetime]] = []
    for record in _records_with_defects(spec):
        kind = record[0]
        if kind == "200":
            nmi, suffix, length = record[1], record[4], int(record[8])
        elif kind == "300":
            day = datetime.strptime(record[1], "%Y%m%d")
            n = 1440 // length
            quality = record[2 + n]
            last_day = []
            for i, value in enumerate(record[2 : 2 + n]):
                key = (nmi, suffix, day + timedelta(minutes=i * length))
                out[key] = (Decimal(value), quality)
                last_day.append(key)
        elif kind == "400":
            for i in range(int(record[1]) - 1, int(record[2])):
                out[last_day[i]] = (out[last_day[i]][0], record[3])
    return out


specs = st.builds(
    GeneratorSpec,
    nmis=st.integers(1, 3),
    days=st.integers(1, 4),
    interval_length=st.sampled_from([5, 15, 30]),
    channels=st.lists(
        st.sampled_from(["E1", "B1", "Q1", "K1"]), min_size=1, max_size=3, unique=True
    ).map(tuple),
    seed=st.integers(0, 10_000),
    start_date=st.dates(date(2000, 1, 1), date(2030, 12, 31)),
    variable_day_share=st.sampled_from([0.0, 0.3, 1.0]),
)


@settings(max_examples=60, deadline=None)
@given(spec=specs, chunk=st.sampled_from([512, 4096, 4 << 20]))
def test_parsed_readings_equal_the_model(spec, chunk):
    config = ParseConfig(limits=ReadLimits(chunk_bytes=chunk))
    parsed = parse_all(generate_bytes(spec), config=config)
    assert parsed.result.status == "accepted"
    assert parsed.result.findings == []
    got = {
        (r["nmi"], r["nmi_suffix"], r["interval_start"].replace(tzinfo=None)): (
            r["value"],
            r["quality_method"],
        )
        for r in parsed.readings.iter_rows(named=True)
    }
    assert len(got) == parsed.readings.height
    assert got == model(spec)
