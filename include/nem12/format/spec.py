"""Facts of the MDFF specification that parsing and rules share."""

from __future__ import annotations

import polars as pl

#: NEM time is UTC+10 all year, no daylight saving ("Etc/GMT-10" is the IANA
#: name of UTC+10; Polars normalises "+10:00" to it).
NEM_TIME_ZONE = "Etc/GMT-10"

#: Interval values are NUM(15,V): at most 14 fractional digits, kept exact.
VALUE_DTYPE = pl.Decimal(38, 14)
VALUE_PATTERN = r"^([0-9]{1,24}(\.[0-9]{0,14})?|\.[0-9]{1,14})$"

INTERVAL_LENGTHS = (5, 15, 30)
MINUTES_PER_DAY = 1440

#: QualityFlag and an optional two-digit MethodFlag (A, E52, S14, F14, V, N).
QUALITY_PATTERN = r"^[AEFNSV](\d\d)?$"
FLAGS_NEEDING_METHOD = ("E", "F", "S")
FLAGS_NEEDING_REASON = ("F", "S")

NMI_PATTERN = r"^[A-HJ-NP-Z0-9]{10}$"

RECORD_TYPES = ("100", "200", "300", "400", "500", "900")
#: Records that belong to the 200 (NMI data details) record before them.
BLOCK_RECORD_TYPES = ("300", "400", "500")
#: A 200 record's fields up to IntervalLength, the "200" included; NextScheduledReadDate
#: (the tenth) may be left out.
NMI_DETAILS_MIN_FIELDS = 9
NEM13_RECORD_TYPES = ("250", "550")
#: The record types each version's files hold.
RECORD_TYPES_OF = {
    "NEM12": RECORD_TYPES,
    "NEM13": ("100", "250", "550", "900"),
}
#: Every record type of MDFF, both versions.
ALL_RECORD_TYPES = ("100", "200", "250", "300", "400", "500", "550", "900")
#: Each version's data record, which opens what the rules call a block: a 200
#: data stream in NEM12, a 250 read (with its 550) in NEM13.
BLOCK_RECORD_OF = {"NEM12": "200", "NEM13": "250"}

#: Appendix B units, keyed by their upper-case spelling (files use any case).
UNITS_OF_MEASURE: dict[str, str] = {
    unit.upper(): unit
    for unit in (
        "MWh",
        "kWh",
        "Wh",
        "MVArh",
        "kVArh",
        "VArh",
        "MVAr",
        "kVAr",
        "VAr",
        "MW",
        "kW",
        "W",
        "MVAh",
        "kVAh",
        "VAh",
        "MVA",
        "kVA",
        "VA",
        "kV",
        "V",
        "kA",
        "A",
        "pf",
    )
}

#: Appendix E reason codes, current and retired (history files still carry
#: retired ones); an unknown code is only a warning.
REASON_CODES: frozenset[int] = frozenset(
    {
        0,
        1,
        2,
        3,
        5,
        6,
        7,
        8,
        9,
        10,
        11,
        12,
        13,
        14,
        15,
        17,
        18,
        20,
        21,
        22,
        23,
        24,
        25,
        26,
        27,
        28,
        29,
        31,
        32,
        33,
        34,
        35,
        36,
        37,
        38,
        39,
        40,
        41,
        42,
        43,
        44,
        45,
        47,
        48,
        51,
        52,
        53,
        54,
        55,
        60,
        61,
        62,
        64,
        65,
        67,
        68,
        69,
        71,
        72,
        73,
        74,
        75,
        76,
        77,
        78,
        79,
        80,
        81,
        87,
        89,
        100,
        101,
        102,
        103,
        104,
        105,
        106,
        107,
        108,
        109,
    }
    | {
        4,
        16,
        19,
        30,
        46,
        49,
        50,
        58,
        70,
        82,
        83,
        84,
        85,
        86,
        88,
        90,
        91,
        92,
        93,
        94,
        95,
        96,
        97,
        98,
        99,
    }
)

#: Every QualityMethod the rules accept: a flag alone or with a two-digit method.
QUALITY_METHODS = tuple(
    f"{flag}{method}" for flag in "AEFNSV" for method in ("", *(f"{m:02d}" for m in range(100)))
)
QUALITY_DTYPE = pl.Enum(QUALITY_METHODS)
UOM_DTYPE = pl.Enum(sorted(set(UNITS_OF_MEASURE.values())))

#: Text columns repeat per interval, so readings hold them as categoricals.
READING_TEXT_COLUMNS = (
    "nmi",
    "nmi_suffix",
    "register_id",
    "meter_serial_number",
    "uom",
    "quality_method",
    "reason_code",
    "reason_description",
)

#: Text that may be empty in an accepted record (empty becomes null); the
#: others are never empty once the rules accept a block, so they carry no
#: validity mask (which also makes them cheaper to encode).
OPTIONAL_TEXT_COLUMNS = ("register_id", "meter_serial_number", "reason_code", "reason_description")

#: The 200 record's text fields a reading carries, by field index.
STREAM_TEXT_FIELDS = {"nmi": 1, "register_id": 3, "nmi_suffix": 4, "meter_serial_number": 6}

#: What a reading takes from its 200 record (in output order).
STREAM_COLUMNS = (
    "nmi",
    "nmi_suffix",
    "register_id",
    "meter_serial_number",
    "uom",
    "interval_length",
)

READING_SCHEMA: dict[str, pl.DataType] = {
    "nmi": pl.Categorical(),
    "nmi_suffix": pl.Categorical(),
    "register_id": pl.Categorical(),
    "meter_serial_number": pl.Categorical(),
    "uom": UOM_DTYPE,
    "interval_length": pl.Int16(),
    "interval_start": pl.Datetime("us", NEM_TIME_ZONE),
    "value": VALUE_DTYPE,
    "quality_method": QUALITY_DTYPE,
    "reason_code": pl.Categorical(),
    "reason_description": pl.Categorical(),
    "update_datetime": pl.Datetime("us", NEM_TIME_ZONE),
    "msats_load_datetime": pl.Datetime("us", NEM_TIME_ZONE),
    "line_number": pl.Int64(),
}

#: Each QualityFlag's class, named as the day row's count of intervals in it
#: (``{name}_intervals``); V counts intervals of a V day no 400 range covers.
QUALITY_CLASSES: dict[str, str] = {
    "A": "actual",
    "E": "estimated",
    "F": "final_substituted",
    "N": "null",
    "S": "substituted",
    "V": "variable",
}
QUALITY_COUNT_COLUMNS = tuple(f"{name}_intervals" for name in QUALITY_CLASSES.values())

#: One accepted 300 record as a day row: the values as a PostgreSQL array
#: literal of the exact decimals as written, the day's own quality fields,
#: ``interval_quality`` (a V day whose intervals differ from the day's own:
#: JSON ranges covering every interval, see ``parsing.days``), the sum and the
#: count of intervals per quality class.
DAY_SCHEMA: dict[str, pl.DataType] = {
    **{c: READING_SCHEMA[c] for c in STREAM_COLUMNS},
    "interval_date": pl.Date(),
    "intervals": pl.Int32(),
    "values": pl.String(),
    "quality_method": QUALITY_DTYPE,
    "reason_code": pl.Categorical(),
    "reason_description": pl.Categorical(),
    "interval_quality": pl.String(),
    "update_datetime": pl.Datetime("us", NEM_TIME_ZONE),
    "msats_load_datetime": pl.Datetime("us", NEM_TIME_ZONE),
    "line_number": pl.Int64(),
    "total": VALUE_DTYPE,
    **dict.fromkeys(QUALITY_COUNT_COLUMNS, pl.Int32()),
}


# --- NEM13: accumulation (basic meter) data --------------------------------------

#: A read's QualityMethod: V (variable) and N (null) are interval-data flags only.
READ_QUALITY_PATTERN = r"^[AEFS](\d\d)?$"
#: DirectionIndicator: I import to the grid, E export from the grid (the 250's meaning).
DIRECTION_INDICATORS = {"I": "import", "E": "export"}
#: Appendix A transaction codes, the 550's Previous/CurrentTransCode.
TRANS_CODES = ("A", "C", "D", "E", "G", "N", "O", "R", "S")
#: A register read as on the dial (digits, optional fraction; no sign).
REGISTER_READ_PATTERN = r"^[0-9]{1,15}(\.[0-9]{0,14})?$"
#: A quantity as written: a sign is a finding (``quantity_negative``), not unreadable.
QUANTITY_PATTERN = r"^-?([0-9]{1,24}(\.[0-9]{0,14})?|\.[0-9]{1,14})$"
#: Units of energy (accumulated): quantity = current - previous read (times a
#: multiplier); for the others (demand) the quantity is the current read.
ENERGY_UNITS = tuple(unit for unit in UNITS_OF_MEASURE.values() if unit.endswith("h"))

#: The 250 record's fields by index (MDFF names in snake case), as in the file.
READ_FIELDS = {
    "nmi": 1,
    "nmi_configuration": 2,
    "register_id": 3,
    "nmi_suffix": 4,
    "mdm_data_stream_identifier": 5,
    "meter_serial_number": 6,
    "direction_indicator": 7,
    "previous_register_read": 8,
    "previous_register_read_datetime": 9,
    "previous_quality_method": 10,
    "previous_reason_code": 11,
    "previous_reason_description": 12,
    "current_register_read": 13,
    "current_register_read_datetime": 14,
    "current_quality_method": 15,
    "current_reason_code": 16,
    "current_reason_description": 17,
    "quantity": 18,
    "uom": 19,
    "next_scheduled_read_date": 20,
    "update_datetime": 21,
    "msats_load_datetime": 22,
}
#: A 250 needs its fields up to UOM; the three after it may be left off the line.
READ_MIN_FIELDS = READ_FIELDS["uom"] + 1
READ_MAX_FIELDS = len(READ_FIELDS) + 1
#: The 550 record's fields by index.
READ_B2B_FIELDS = {
    "previous_trans_code": 1,
    "previous_ret_service_order": 2,
    "current_trans_code": 3,
    "current_ret_service_order": 4,
}
READ_B2B_MAX_FIELDS = len(READ_B2B_FIELDS) + 1

_TIME = pl.Datetime("us", NEM_TIME_ZONE)
#: One accepted 250 record (and the 550 after it) as ``nem12 parse`` writes it and
#: the warehouse stages it: reads exact and as written (leading zeros are dial digits).
READ_SCHEMA: dict[str, pl.DataType] = {
    "nmi": pl.String(),
    "nmi_configuration": pl.String(),
    "register_id": pl.String(),
    "nmi_suffix": pl.String(),
    "mdm_data_stream_identifier": pl.String(),
    "meter_serial_number": pl.String(),
    "direction_indicator": pl.String(),
    "previous_register_read": VALUE_DTYPE,
    "previous_register_read_text": pl.String(),
    "previous_register_read_datetime": _TIME,
    "previous_quality_method": pl.String(),
    "previous_reason_code": pl.String(),
    "previous_reason_description": pl.String(),
    "current_register_read": VALUE_DTYPE,
    "current_register_read_text": pl.String(),
    "current_register_read_datetime": _TIME,
    "current_quality_method": pl.String(),
    "current_reason_code": pl.String(),
    "current_reason_description": pl.String(),
    "quantity": VALUE_DTYPE,
    "uom": pl.String(),
    "next_scheduled_read_date": pl.Date(),
    "update_datetime": _TIME,
    "msats_load_datetime": _TIME,
    **dict.fromkeys(READ_B2B_FIELDS, pl.String()),
    "line_number": pl.Int64(),
}
#: The READ_SCHEMA columns that are exact decimals (written as text to CSV).
READ_DECIMAL_COLUMNS = ("previous_register_read", "current_register_read", "quantity")

#: What ``nem12 parse`` writes for each version: readings, or reads.
OUTPUT_SCHEMAS = {"NEM12": READING_SCHEMA, "NEM13": READ_SCHEMA}
