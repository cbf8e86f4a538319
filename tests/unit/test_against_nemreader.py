"""Differential test: our readings equal nemreader's on every real example both accept."""

from __future__ import annotations

import logging

import polars as pl
import pytest
from nemreader import NEMFile

from tests.conftest import AEMO, NEM_READER_EXTRA, parse_all

EXAMPLES = [
    *sorted(p for folder in ("nem12", "unzipped", "invalid") for p in (AEMO / folder).iterdir()),
    AEMO / "Example_NEM12_ManyNMIs.zip",
    *sorted(
        p
        for p in (*NEM_READER_EXTRA.iterdir(), *(NEM_READER_EXTRA / "unzipped").iterdir())
        if p.is_file() and p.suffix != ".md" and not p.name.startswith("LICENSE")
    ),
]


def nemreader_readings(path) -> pl.DataFrame | None:
    """nemreader's readings, or None where it refuses the file."""
    logging.getLogger("nemreader").setLevel(logging.ERROR)
    try:
        data = NEMFile(str(path), strict=False).nem_data()
    except Exception:  # nemreader's way of refusing a file is any exception
        return None
    if data.header.version_header != "NEM12":
        return None
    rows = [
        (nmi, suffix, reading.t_start, reading.read_value, reading.quality_method)
        for nmi, channels in data.readings.items()
        for suffix, readings in channels.items()
        for reading in readings
    ]
    return pl.DataFrame(
        rows,
        schema=["nmi", "nmi_suffix", "interval_start", "value", "quality_method"],
        orient="row",
    )


def accepted_by_both(path) -> bool:
    return nemreader_readings(path) is not None and any(
        r.status != "rejected" for r in parse_all(path).results
    )


COMPARED = [p for p in EXAMPLES if accepted_by_both(p)]

#: Files one of the two refuses: the invalid examples we reject (nemreader
#: takes some of them) and the NEM13 files neither reads as interval data.
NOT_COMPARED = {f"invalid/{p.name}" for p in (AEMO / "invalid").iterdir()} - {
    "invalid/Example_NEM12_incomplete_interval.csv"
} | {
    "unzipped/Example_NEM13_consumption_data.csv",
    "unzipped/Example_NEM13_forward_estimate.csv",
    "nem-reader-extra/Example-NEM12.csv",  # a fragment: 400 ranges short, no 900
    "nem-reader-extra/NEM13#DATA_14121801#WBAYM#3044076134.V01",
}


def test_only_the_invalid_and_nem13_examples_are_left_out():
    left_out = {f"{p.parent.name}/{p.name}" for p in EXAMPLES if p not in COMPARED}
    assert left_out == NOT_COMPARED
    assert len(COMPARED) >= 53


@pytest.mark.parametrize("path", COMPARED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_same_readings_as_nemreader(path):
    ours = parse_all(path)
    theirs = nemreader_readings(path)
    assert theirs is not None
    mine = ours.readings.select(
        "nmi",
        "nmi_suffix",
        pl.col("interval_start").dt.replace_time_zone(None),
        pl.col("value").cast(pl.Float64),
        "quality_method",
    )
    if any(r.status == "partial" for r in ours.results):
        streams = mine.select("nmi", "nmi_suffix").unique()
        theirs = theirs.join(streams, on=["nmi", "nmi_suffix"], how="semi")
    key = ["nmi", "nmi_suffix", "interval_start"]
    assert mine.height == mine.unique(subset=key).height
    assert mine.sort(key).equals(theirs.sort(key)), f"{path.name} differs from nemreader"
