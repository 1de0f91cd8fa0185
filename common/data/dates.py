"""Dates and times in a column, read the same from every form a file or a DataFrame gives them.

A date column feeds the model its instant (seconds since 1970, UTC: the trend, through the same
quantile scaling as any number) and, from its wall clock (the date and time as written, in its
own zone), where it falls in each cycle: the day of the year, of the month, of the week and,
where the column holds times, of the day (common/steps.py, `date_cycle_inputs`).

Read as dates:
- Arrow `date32`, `date64` and `timestamp` columns (a DataFrame's datetime64, a Parquet date);
  a timestamp with a zone keeps that zone's wall clock (a CSV's dates are read as text, whatever
  pyarrow would have typed them: the clock as written);
- text in ISO order, year first: `2012-01-31` or `2012/01/31`, optionally a time after a space
  or a `T` (`14:05`, `14:05:09`, `14:05:09.250`), optionally a zone (`Z`, `+01:00`, `-0500`).
  A time without a zone is taken as UTC. Day-first and month-first forms (`31/01/2012`,
  `01/31/2012`) are not read: they are ambiguous. A zone comes only after a time, within a day
  of UTC.
A cell that is not such a date is a blank, counted (`unparsed`), never an error here; prediction
refuses a column of which no cell is a date (common/serve/inputs.some_dates).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from common.data.columns import is_text_type, temporal_seconds
from common.errors import UserError
from common.steps import DAY_SECONDS

DATE_TEXT = (r"^\s*(?P<date>\d{4}[-/]\d{2}[-/]\d{2})"  # a zone only after a time, as Python reads it
             r"(?:[T ](?P<clock>\d{2}:\d{2}(?::\d{2})?)(?:\.(?P<fraction>\d{1,9}))?"
             r"\s*(?P<zone>Z|[+-]\d{2}:?\d{2})?)?\s*$")
LOOKS_LIKE_DATES = 0.95  # a text column is dates where at least this share of its cells are
CYCLE_WORDS = {"year_day": "time, day of year", "month_day": "day of month", "week_day": "day of week",
               "day_time": "time of day"}  # how a role's line names a date's inputs


@dataclasses.dataclass
class DateValues:
    instant: np.ndarray   # seconds since 1970-01-01 UTC, float64, NaN for a blank
    wall: np.ndarray      # the wall clock as written, as seconds since 1970 in its own zone
    unparsed: int = 0     # cells that held text but no date: read as blanks


def is_date_type(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_date(kind) or pa.types.is_timestamp(kind))


def refuse_dates(kind: Any, name: str, source: str, trained: str = "numbers") -> None:
    """A date or a timestamp (Arrow type `kind`) in column `name` of a model trained on `trained`
    (numbers, times of day or durations) would read as seconds since 1970, far past anything it
    saw; a time of day or a duration where it trained on something else, as seconds of another
    kind: refused, as a word in such a column is."""
    import pyarrow as pa

    held = "dates" if is_date_type(kind) else "times of day" if pa.types.is_time(kind) and trained != "times of day" \
        else "durations" if pa.types.is_duration(kind) and trained != "durations" else None
    if held:
        raise UserError(f"{source}: column '{name}' holds {held} ({kind}), where the model was trained on {trained}: "
                        "give the column as it was in training")


def date_values(column: Any) -> DateValues:
    """A column of dates (see the module's docstring) as instants and wall clocks."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = single(column)
    if is_date_type(column.type):
        zone = getattr(column.type, "tz", None)
        wall = pc.local_timestamp(column) if zone else column
        return DateValues(temporal_seconds(column), temporal_seconds(wall))
    if pa.types.is_null(column.type):
        blank = np.full(len(column), np.nan)
        return DateValues(blank, blank.copy())
    return text_dates(pc.cast(column, pa.string()) if not is_text_type(column.type) else column)


def text_dates(column: Any) -> DateValues:
    import pyarrow as pa
    import pyarrow.compute as pc

    found = pc.extract_regex(column, DATE_TEXT)  # a group that did not take part is "", a row that did not match null
    clock = or_default(found.field("clock"), "00:00")
    clock = pc.if_else(pc.equal(pc.utf8_length(clock), 5), pc.binary_join_element_wise(clock, ":00", ""), clock)
    day = pc.replace_substring(found.field("date"), "/", "-")
    wall = pc.strptime(pc.binary_join_element_wise(day, clock, " "), format="%Y-%m-%d %H:%M:%S", unit="s",
                       error_is_null=True)
    # strptime rolls 2012-02-30 over to March; such a day is no date: it must read back as written
    wall = pc.if_else(pc.equal(pc.strftime(wall, format="%Y-%m-%d"), day), wall, pa.scalar(None, wall.type))
    seconds = temporal_seconds(wall) + fraction_seconds(found.field("fraction"))
    offset = zone_seconds(found.field("zone"))
    seconds[np.abs(offset) >= DAY_SECONDS] = np.nan  # no zone is a day or more away (Python's rule)
    text = pc.is_valid(column).to_numpy(zero_copy_only=False)
    unparsed = int(np.count_nonzero(text & np.isnan(seconds)))
    return DateValues(seconds - offset, seconds, unparsed)


def or_default(texts: Any, default: str) -> Any:
    """`default` where a regex group is blank or did not take part."""
    import pyarrow.compute as pc

    filled = pc.fill_null(texts, default)
    return pc.if_else(pc.equal(filled, ""), default, filled)


def fraction_seconds(fraction: Any) -> np.ndarray:
    """`.250` -> 0.25: the digits after a time's seconds, 0 where there are none."""
    import pyarrow as pa
    import pyarrow.compute as pc

    digits = or_default(fraction, "")
    nanos = pc.cast(pc.if_else(pc.equal(digits, ""), "0", pc.utf8_rpad(digits, 9, "0")), pa.int64())
    return nanos.to_numpy(zero_copy_only=False) / 1e9


def zone_seconds(zone: Any) -> np.ndarray:
    """`Z` -> 0, `+01:00` and `+0100` -> 3600, `-05:00` -> -18000; 0 where there is no zone."""
    import pyarrow as pa
    import pyarrow.compute as pc

    digits = pc.replace_substring(or_default(zone, "+00:00"), ":", "")
    digits = pc.if_else(pc.equal(digits, "Z"), "+0000", digits)
    hours = pc.cast(pc.utf8_slice_codeunits(digits, 1, 3), pa.int64()).to_numpy(zero_copy_only=False)
    minutes = pc.cast(pc.utf8_slice_codeunits(digits, 3, 5), pa.int64()).to_numpy(zero_copy_only=False)
    sign = np.where(pc.starts_with(digits, "-").to_numpy(zero_copy_only=False), -1.0, 1.0)
    return sign * (hours * 3600.0 + minutes * 60.0)


def looks_like_dates(column: Any) -> bool:
    """Text whose cells are dates (LOOKS_LIKE_DATES of those not blank, in the head read)."""
    import pyarrow.compute as pc

    if not is_text_type(column.type):
        return False
    sample = single(column.slice(0, 10_000))
    present = len(sample) - sample.null_count
    if not present:
        return False
    parsed = int(pc.sum(pc.is_valid(pc.extract_regex(sample, DATE_TEXT))).as_py() or 0)
    return parsed >= LOOKS_LIKE_DATES * present and date_values(sample).unparsed <= (1 - LOOKS_LIKE_DATES) * present


DAY_OR_MONTH_FIRST = r"^\s*\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}(?:[T ]\S.*)?\s*$"  # 31/01/2012, 01-31-12 10:00


def date_hint(column: Any) -> str:
    """Why a text column that holds dates was not read as such, for its role's line: "" where
    half or more of its cells (in the head read) are not dates. Dates day or month first are
    ambiguous; dates year first mixed with other text fall short of LOOKS_LIKE_DATES."""
    import pyarrow.compute as pc

    if not is_text_type(column.type):
        return ""
    sample = single(column.slice(0, 10_000))
    present = len(sample) - sample.null_count
    if not present:
        return ""
    ambiguous = int(pc.sum(pc.match_substring_regex(sample, DAY_OR_MONTH_FIRST)).as_py() or 0)
    if ambiguous >= present / 2:
        return "dates day or month first, which are ambiguous: write them year first, 2012-01-31, to use them as dates"
    matched = int(pc.sum(pc.is_valid(pc.extract_regex(sample, DATE_TEXT))).as_py() or 0)
    year_first = present - date_values(sample).unparsed if matched >= present / 2 else 0
    if year_first >= present / 2:
        return (f"{year_first / present:.0%} of its cells are dates year first, the rest other text: write those "
                "the same way, or blank, to use them as dates")
    return ""


def date_cycles(wall_chunks: Any) -> tuple[str, ...]:
    """The cycles a date column feeds the model: the year's, the month's and the week's, and the
    day's where any training value has a time of day."""
    has_time = any(bool(np.any(np.nan_to_num(chunk) % DAY_SECONDS)) for chunk in wall_chunks)
    return ("year_day", "month_day", "week_day") + (("day_time",) if has_time else ())


def has_clock(column: Any) -> bool:
    """Text dates some of which carry a time of day."""
    import pyarrow.compute as pc

    found = pc.extract_regex(single(column.slice(0, 10_000)), DATE_TEXT)
    return bool(pc.any(pc.greater(pc.utf8_length(pc.fill_null(found.field("clock"), "")), 0)).as_py())


def single(column: Any) -> Any:
    """One array of a chunked column: pyarrow's regex extraction gives a chunked struct otherwise."""
    import pyarrow as pa

    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
