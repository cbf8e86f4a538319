"""``nem12.day_readings``: a day row written out as its readings, on a real PostgreSQL."""

from __future__ import annotations

import json
from decimal import Decimal

CALL = (
    "SELECT interval_number, start_minute, value, quality_method, reason_code "
    "FROM nem12.day_readings(%s::numeric[], 360::smallint, %s, %s, NULL, %s::jsonb)"
)
VALUES = ["1.50", "2", None, "4.000"]


def ranges(*spans: tuple[int, int, str, str | None]) -> str:
    return json.dumps(
        [
            {
                "first_interval": first,
                "last_interval": last,
                "quality_method": quality,
                "reason_code": reason,
                "reason_description": None,
            }
            for first, last, quality, reason in spans
        ]
    )


def test_a_day_without_ranges_takes_its_own_quality_and_skips_missing_values(conn):
    assert conn.execute(CALL, (VALUES, "E52", None, None)).fetchall() == [
        (1, 0, Decimal("1.5"), "E52", None),
        (2, 360, Decimal("2"), "E52", None),
        (4, 1080, Decimal("4"), "E52", None),
    ]


def test_each_range_of_a_v_day_gives_its_intervals_their_quality(conn):
    spans = ranges((1, 1, "A", None), (2, 4, "S14", "76"))
    assert sorted(conn.execute(CALL, (VALUES, "V", None, spans)).fetchall()) == [
        (1, 0, Decimal("1.5"), "A", None),
        (2, 360, Decimal("2"), "S14", "76"),
        (4, 1080, Decimal("4"), "S14", "76"),
    ]


def test_ranges_that_leave_an_interval_out_still_give_every_reading_once(conn):
    spans = ranges((2, 3, "S14", "76"))  # never written by the parser: the 400 rules refuse it
    assert sorted(conn.execute(CALL, (VALUES, "V", "99", spans)).fetchall()) == [
        (1, 0, Decimal("1.5"), "V", "99"),
        (2, 360, Decimal("2"), "S14", "76"),
        (4, 1080, Decimal("4"), "V", "99"),
    ]
