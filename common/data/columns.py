"""One reading of a table's column, whatever physical type a file or a DataFrame gave it.

The same values reach the model the same way from a CSV file, from Parquet (pandas writes a
`category` column dictionary-encoded, its strings as large_string or string_view, its nullable
integers and floats at every width) and from an in-memory Arrow table:

- `plain_column` maps every physical form onto one: dictionaries decoded, every string type as
  string with the missing spellings (NULL_VALUES, as a CSV read takes them) as nulls, float16 and
  decimals as float64 (decimals through their text, for the value a CSV read would parse), NaN
  as null;
- then a feature column is read as float64 numbers (`numeric_values`: NaN for blanks, dates and
  times as seconds) or as text categories (`text_values`);
- a type that cannot be a feature (a list, a record, bytes) is refused by name
  (`require_feature_type`), and a column copied into the predictions is copied as text where it
  has one (`carried_text`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError
from common.steps import Categories

NULL_VALUES = ["", "NA", "N/A", "n/a", "na", "NaN", "nan", "NAN", "null", "NULL", "None", "none", "?"]
_THOUSANDS = re.compile(r"^\s*[-+]?\d{1,3}(,\d{3})+(\.\d*)?\s*$")


def plain_table(table: Any, text_columns: Sequence[str] = ()) -> Any:
    """Every column in its plain form (plain_column); the `text_columns` as text, but for a type
    with no text form (a list), left for require_feature_type to name."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        column = plain_column(table.column(i))
        if (field.name in text_columns and not pa.types.is_string(column.type)
                and not feature_type_advice(column.type)):
            column = text_column(column)
        if column is not table.column(i):
            table = table.set_column(i, field.name, column)
    return table


def plain_column(column: Any) -> Any:
    """The column in the one form every later step reads (see the module's docstring)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_dictionary(kind):  # decoded by taking its values: a cast has no kernel for some (pandas' intervals)
        column, kind = pa.chunked_array([chunk.dictionary_decode() for chunk in column.chunks], kind.value_type), \
            kind.value_type
    if is_text_type(kind):
        column = column if pa.types.is_string(kind) else pc.cast(column, pa.string())
        missing = pc.is_in(column, value_set=pa.array(NULL_VALUES))
        if pc.any(missing).as_py():
            column = pc.if_else(missing, pa.scalar(None, pa.string()), column)
        return column
    if pa.types.is_decimal(kind):
        return pc.cast(pc.cast(column, pa.string()), pa.float64())
    if pa.types.is_float16(kind):
        column = pc.cast(column, pa.float64())
    if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
        column = pc.if_else(pc.is_nan(column), pa.scalar(None, column.type), column)
    return column


def is_text_type(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind))


def feature_type_advice(kind: Any) -> str | None:
    """None for a type a feature can have (after plain_column); else what to do about it."""
    import pyarrow as pa

    if (pa.types.is_null(kind) or pa.types.is_boolean(kind) or is_number_type(kind) or is_text_type(kind)
            or is_temporal(kind)):
        return None
    if pa.types.is_nested(kind):
        return "give it one value per cell (split it into columns, or join it into one text value)"
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or pa.types.is_fixed_size_binary(kind):
        return "decode its bytes to text (a CSV: save it as UTF-8)"
    return "convert it to numbers or text"


def require_feature_type(column: Any, name: str, path: str | Path) -> None:
    advice = feature_type_advice(column.type)
    if advice:
        raise UserError(f"{path}: column '{name}' holds {column.type} values, which cannot be a feature: {advice}")


def carried_text(column: Any) -> Any | None:
    """A column copied into the predictions, as text (blank for a missing cell); None for a type
    with no text form (a list, a record, bytes)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if feature_type_advice(column.type):
        return None
    text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
    return text.fill_null("")


def _parse_number(text: str, decimal: str = ".", marked: bool = True, grouped: bool = False) -> float | None:
    """A number as a table writes one: `1.5`, `3,750`, `1,5` where the decimal mark is a comma
    (`1.186,70` too where the column's points group thousands: `grouped`), and (`marked`) with a
    currency sign before or after it or a percent sign after it (`$33,704`, `-€5`, `5 €`,
    `65.7%`: the number as written, 65.7)."""
    number = _plain_number(text, decimal, grouped)
    if number is not None or not marked:
        return number
    if money := _CURRENCY.match(text) or _CURRENCY_AFTER.match(text):
        number = _parse_number(money["number"], decimal, marked=False, grouped=grouped)
        return None if number is None or number < 0 else (-number if money["minus"] else number)
    if share := _PERCENT.match(text):
        return _parse_number(share["number"], decimal, marked=False, grouped=grouped)
    return None


def _plain_number(text: str, decimal: str, grouped: bool) -> float | None:
    if grouped and decimal == "," and "." in text:  # a point groups thousands, and only so
        return float(text.replace(".", "").replace(",", ".")) if _POINT_GROUPED.match(text) else None
    plain = text.replace(",", ".") if decimal == "," else text
    try:
        return float(plain)
    except ValueError:
        pass
    if decimal == "." and _THOUSANDS.match(text):
        return float(text.replace(",", ""))
    return None


_CURRENCY = re.compile(r"^\s*(?P<minus>-?)\s*[$€£¥]\s*(?P<number>[\d.,]*\d[\d.,]*)\s*$")  # digits: not $nan
_CURRENCY_AFTER = re.compile(r"^\s*(?P<minus>-?)\s*(?P<number>[\d.,]*\d[\d.,]*)\s*[$€£¥]\s*$")
_PERCENT = re.compile(r"^\s*(?P<number>[-+]?[\d.,]*\d[\d.,]*)\s*%\s*$")
# A number grouped by points where a comma is the decimal mark: 1.186,70, 12.000 or 1.000.000
# (never 0.125: a group does not begin with 0).
_POINT_GROUPED = re.compile(r"^\s*[-+]?[1-9]\d{0,2}(\.\d{3})+(,\d+)?\s*$")


def is_point_grouped(text: str) -> bool:
    """`1.186,70`, `12.000`: a number whose points group thousands where a comma marks decimals."""
    return bool(_POINT_GROUPED.match(text))


def pointed_numbers(values: Sequence[str | None]) -> list[str]:
    """The cells holding a point, as numbers written (a currency or percent sign taken off)."""
    return [m["number"] if (m := _CURRENCY.match(v) or _CURRENCY_AFTER.match(v) or _PERCENT.match(v)) else v
            for v in values if v is not None and "." in v]


def points_group_thousands(values: Sequence[str | None]) -> bool:
    """Whether the points of a column of a decimal-comma file may group thousands: every cell
    holding a point holds it so (`1.186,70`, `12.000`). A comma being the file's decimal mark, a
    point there is a thousands mark, unless a cell says otherwise (`2.5`, `0.125`): then the
    column reads its points as decimal marks, as before. The file decides as a whole
    (common/data/ingest.grouped_columns); once, on its training file."""
    marked = pointed_numbers(values)
    return bool(marked) and all(_POINT_GROUPED.match(v) for v in marked)


def writes_point_decimals(values: Sequence[str | None]) -> bool:
    """A column whose cells show a point as a decimal mark (`2.5`, `0.125`): a file with such a
    column writes its points as decimals, in every column."""
    return any(not _POINT_GROUPED.match(v) and _parse_number(v) is not None for v in pointed_numbers(values))


def text_is_numeric(values: Sequence[str | None], decimal: str = ".", grouped: bool = False) -> bool:
    """Mostly numbers: a numeric column with odd cells (then errors), not a text column."""
    present = [v for v in values if v is not None]
    return bool(present) and \
        sum(_parse_number(v, decimal, grouped=grouped) is not None for v in present) * 2 > len(present)


def written_unlike_most(values: Sequence[Any], decimal: str) -> str | None:
    """A value written unlike most of `values`, where most are numbers read one way (in a
    decimal-comma file: points grouping thousands, or not); None where they are not mostly
    numbers, or all are."""
    texts = [v for v in values[:10_000] if isinstance(v, str)]
    for grouped in ((False, True) if decimal == "," else (False,)):
        if text_is_numeric(texts, decimal, grouped):
            return next((v for v in texts if _parse_number(v.strip(), decimal, grouped=grouped) is None), None)
    return None


def column_texts(column: Any) -> list[str | None]:
    """A column's first 10,000 cells as text: a sample is enough to decide what it holds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(column.slice(0, 10_000), pa.string()).to_pylist()


def column_looks_numeric(column: Any, decimal: str = ".") -> bool:
    """A text column whose first cells are mostly numbers, their points grouping thousands where
    they may in a decimal-comma file (a feature's step or the target's records it)."""
    texts = column_texts(column)
    return text_is_numeric(texts, decimal, decimal == "," and points_group_thousands(texts))


# Units per second, to divide by: a division is rounded once, so a time of whole seconds is the
# same float from every unit (multiplying nanoseconds by 1e-9 is not).
PER_SECOND = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def temporal_seconds(column: Any) -> np.ndarray:
    """Dates, times, timestamps and durations as float seconds (NaN for blanks)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_date32(kind):
        return _seconds(column, pc.multiply(pc.cast(pc.cast(column, pa.int32()), pa.int64()), 86400), 1.0)
    if pa.types.is_date64(kind):
        return _seconds(column, pc.cast(column, pa.int64()), 1e3)
    if pa.types.is_time32(kind):
        return _seconds(column, pc.cast(column, pa.int32()), PER_SECOND[kind.unit])
    # timestamp, time64, duration: integers in the type's own unit
    return _seconds(column, pc.cast(column, pa.int64()), PER_SECOND[kind.unit])


_CLOCK = re.compile(r"\s*([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(?:\.(\d{1,9}))?)?\s*")


def clock_seconds(texts: list[str | None], name: str, path: str | Path, first_row: int = 0) -> np.ndarray:
    """Times of day written as text (`14:05`, `14:05:09`, `14:05:09.250`, as a CSV holds what an
    Arrow time was) as seconds since midnight, NaN for blanks: the number `temporal_seconds` gives
    the Arrow time to the bit (the whole count of the written digits' unit, divided once). Any
    other cell is an error naming the column and the row."""
    out = np.full(len(texts), np.nan)
    for i, text in enumerate(texts):
        if text is None or text.strip() in NULL_VALUES:
            continue
        found = _CLOCK.fullmatch(text)
        if found is None:
            raise UserError(f"{path}: column '{name}' has {text!r} in data row {first_row + i + 1}, which is no time "
                            "of day: write it as 14:05 or 14:05:09, or leave it blank for a missing value")
        hours, minutes, seconds, fraction = found.groups()
        whole = (int(hours) * 60 + int(minutes)) * 60 + int(seconds or 0)
        digits = fraction or ""
        out[i] = (whole * 10 ** len(digits) + int(digits or 0)) / 10 ** len(digits)
    return out


def _seconds(column: Any, units: Any, per_second: float) -> np.ndarray:
    import pyarrow.compute as pc

    values = units.to_numpy(zero_copy_only=False).astype(np.float64) / per_second
    values[pc.is_null(column).to_numpy(zero_copy_only=False)] = np.nan
    return values


def is_number_type(kind: Any) -> bool:
    """Integers, floats or decimals: what pyarrow reads a column of plain numbers as."""
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind))


def is_temporal(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_temporal(kind) or pa.types.is_duration(kind))


class WordsAsBlanks:
    """The words a numeric column written as text holds besides numbers (a weather table's `T` for
    a trace of rain, a `-`), read as blanks; words without a digit only. make_data.py learns them
    (`learn`): every such word of the training file becomes a blank, counted, and is kept with the
    column's step; prediction then reads those words as blanks, and any other word in that column
    is still an error."""

    MOST = 50  # distinct words past which a column is not numbers with a few words but text

    def __init__(self, known: Sequence[str] = (), learn: bool = False):
        self.known, self.learn = set(known), learn
        self.cells: dict[str, int] = {}   # the words read as blanks, with their cells

    def read(self, text: str) -> bool:
        """Whether `text` (no number) is read as a blank. A word with a digit in it (`3,5` in a file
        of decimal points, `12kg`) is a number written wrong, never learned: it stays an error."""
        learnable = self.learn and len(self.known) < self.MOST and not any(c.isdigit() for c in text)
        if text in self.known or learnable:
            self.known.add(text)
            self.cells[text] = self.cells.get(text, 0) + 1
            return True
        return False


FLOAT32_LIMIT = float(np.finfo(np.float32).max)  # what the model's float32 holds (3.4e38)


NOT_A_NUMBER_FIX = "fix that cell, or leave it blank for a missing value"


def numeric_values(column: Any, name: str, path: str | Path, decimal: str = ".", first_row: int = 0,
                   words: WordsAsBlanks | None = None, limit: float = math.inf, time_of_day: bool = False,
                   grouped: bool = False, fix: str = NOT_A_NUMBER_FIX) -> np.ndarray:
    """float64 values with NaN for blanks; a cell that is not a number (unless `words` takes it as
    a blank), an infinity, or a number beyond ±`limit` is an error naming the column and the
    first such data row (a cell that is no number says `fix`). A `time_of_day` column's text is
    read as times (`clock_seconds`); `grouped`: in a decimal-comma file, the column's points
    group thousands."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind) \
            or pa.types.is_decimal(kind) or pa.types.is_null(kind):
        # safe=False: an integer above 2**53 (an account number, say) rounds rather than fails.
        values = pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    elif is_temporal(kind):
        values = temporal_seconds(column)
    elif time_of_day:
        values = clock_seconds(pc.cast(column, pa.string()).to_pylist(), name, path, first_row)
    else:
        text = pc.cast(column, pa.string())
        values = _plain_numbers(text) if decimal == "." else _comma_numbers(text, grouped)
        if values is None:
            values = _text_to_numbers(text.to_pylist(), name, path, decimal, first_row, words, grouped, fix)
    values = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(np.isinf(values) if math.isinf(limit) else np.abs(values) > limit)
    if bad.size and np.isinf(values[bad[0]]):
        raise UserError(f"{path}: column '{name}' has an infinite value in data row {first_row + bad[0] + 1}: "
                        "fix or drop that row")
    if bad.size:
        raise UserError(f"{path}: column '{name}' has {values[bad[0]]:g} in data row {first_row + bad[0] + 1}, beyond "
                        f"the {limit:.1e} the model's 32-bit floats hold: rescale the column (another unit) or fix "
                        "that row")
    return values


def _plain_numbers(text: Any) -> np.ndarray | None:
    """A text column's numbers read by pyarrow's parser at C speed, where every cell is a plain
    number or a blank; None where any cell is not (a word, `3,750`, ` 5`): the loop below reads
    those, and names the first bad cell. pyarrow takes no spelling that Python's float() refuses,
    and both round correctly, so the values are the loop's to the bit."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pc.any(pc.match_substring(text, "(")).as_py():  # `nan(123)`: pyarrow's NaN, no number to float()
        return None
    try:
        return pc.cast(text, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return None


def _comma_numbers(text: Any, grouped: bool) -> np.ndarray | None:
    """A decimal-comma file's text column as numbers at C speed, read as the loop below reads
    them: a point groups thousands where `grouped` (every pointed cell then written so: `1.186,70`),
    else marks decimals; None where any cell is no such number (the loop reads or names it)."""
    import pyarrow.compute as pc

    if grouped and pc.any(pointed := pc.match_substring(text, ".")).as_py():
        if pc.any(pc.and_(pointed, pc.invert(pc.match_substring_regex(text, _POINT_GROUPED.pattern)))).as_py():
            return None
        text = pc.replace_substring(text, ".", "")
    return _plain_numbers(pc.replace_substring(text, ",", "."))


def _text_to_numbers(texts: list[str | None], name: str, path: str | Path, decimal: str, first_row: int = 0,
                     words: WordsAsBlanks | None = None, grouped: bool = False,
                     fix: str = NOT_A_NUMBER_FIX) -> np.ndarray:
    out = np.full(len(texts), np.nan)
    for i, text in enumerate(texts):
        if text is None or text.strip() in NULL_VALUES:
            continue
        number = _parse_number(text.strip(), decimal, grouped=grouped)
        if number is None:
            if words is not None and words.read(text.strip()):
                continue
            if decimal == "," and _POINT_GROUPED.match(text.strip()):  # a valid number, in another column's way
                raise UserError(f"{path}: column '{name}' has {text!r} in data row {first_row + i + 1}, its points "
                                "grouping thousands, where the column's other cells (or the file's) use points as "
                                "decimal marks: write the column's numbers one way")
            if decimal == "," and _parse_number(text.strip(), ".") is not None:
                raise UserError(f"{path}: column '{name}' has {text!r} in data row {first_row + i + 1}, a point as "
                                "its decimal mark, where a semicolon-separated file's numbers are read with a comma "
                                "(20,5): write it so")
            raise UserError(f"{path}: column '{name}' has a non-numeric value {text!r} in data row "
                            f"{first_row + i + 1}: {fix}")
        out[i] = number
    return out


def text_column(column: Any) -> Any:
    """Any column as text: a float column's whole numbers without their `.0` (3.0 and 3 are
    one level); everything else as pyarrow writes it."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_floating(column.type):
        values = [None if v is None or v != v else (str(int(v)) if float(v).is_integer() else repr(v))
                  for v in column.to_pylist()]
        return pa.chunked_array([pa.array(values, type=pa.string())])
    return pc.cast(column, pa.string())


def text_values(column: Any) -> Categories:
    """A column as text categories, dictionary-encoded by pyarrow (blanks apart): how
    categorical values are compared at training and at prediction time."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(text_column(column)).combine_chunks()
    index = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    return Categories(index, encoded.dictionary.to_pylist())
