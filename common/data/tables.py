"""Users' tables: reading CSV and Parquet files with pyarrow, and their cells as numbers or text.

pyarrow parses CSV into typed columns on several threads (nulls, booleans, quoting, BOM and
CRLF included) and reads Parquet natively, so a million-row file takes a second or two, not a
Python loop per cell. A file is read whole, by its head (which decides types and roles,
common/data/roles.py), or streamed in record batches; blanks and the usual spellings of a
missing value are nulls in either format; a file delimited by semicolons writes decimals with
a comma. Columns then become float64 numbers (NaN for blanks, dates as seconds) or
dictionary-encoded text categories.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError
from common.steps import Categories

NULL_VALUES = ["", "NA", "N/A", "n/a", "na", "NaN", "nan", "NAN", "null", "NULL", "None", "none", "?"]
DELIMITERS = (",", ";", "\t", "|")
PARQUET_SUFFIXES = (".parquet", ".pq")
_THOUSANDS = re.compile(r"^\s*[-+]?\d{1,3}(,\d{3})+(\.\d*)?\s*$")


def detect_delimiter(path: Path) -> str:
    """The candidate that splits the header into the most fields (a comma on a tie)."""
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        header = fh.readline()
    fields = {d: len(next(csv.reader([header], delimiter=d), [])) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: (fields[d], d == ","))


HEAD_BYTES = 8 << 20    # the head of a CSV file that decides types and roles
HEAD_ROWS = 200_000     # the same for Parquet
BATCH_BYTES = 4 << 20   # CSV read a block of this size at a time when streamed
BATCH_ROWS = 65_536     # Parquet row batches when streamed


def read_table(path: str | Path, sep: str | None = None, text_columns: Sequence[str] = (),
               head: bool = False) -> Any:
    """A pyarrow Table of a CSV or Parquet file; every problem is a one-line UserError.

    `text_columns` are read as the text in the file, whatever it looks like, so that a
    categorical value reads the same in every file (`True` stays `True`, `01` stays `01`). A
    file delimited by semicolons is taken to write decimals with a comma (`20,5`), as the
    spreadsheets that write such files do; the table's metadata says which decimal mark it used.
    `head`: only the first HEAD_BYTES of a CSV file
    (HEAD_ROWS rows of Parquet), the whole file when it is smaller."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    path = Path(path)
    if not path.is_file():
        raise UserError(f"table {path} not found: check the path")
    decimal = "."
    try:
        if path.suffix.lower() in PARQUET_SUFFIXES:
            import pyarrow.parquet as pq

            if head:
                batch = next(pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=HEAD_ROWS), None)
                table = pq.read_schema(path).empty_table() if batch is None else pa.Table.from_batches([batch])
            else:
                table = pq.read_table(path)
            table = missing_as_null(table)
        else:
            delimiter = sep or detect_delimiter(path)
            decimal = "," if delimiter == ";" else "."
            options = {"parse_options": pa_csv.ParseOptions(delimiter=delimiter),
                       "convert_options": csv_convert_options(decimal, {name: pa.string() for name in text_columns},
                                                              None)}
            if head:
                reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=HEAD_BYTES), **options)
                first = next(iter(reader), None)
                table = reader.schema.empty_table() if first is None else pa.Table.from_batches([first])
            else:
                table = pa_csv.read_csv(path, **options)
        table = plain_columns(table, text_columns)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as err:
        raise unreadable(path, err) from None
    names = table.column_names
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise UserError(f"{path} has more than one column named {duplicated}: rename them")
    if table.num_rows == 0:
        raise UserError(f"{path} has a header but no data rows: add rows")
    return table.replace_schema_metadata({"decimal": decimal})


def csv_convert_options(decimal: str, types: dict[str, Any], columns: Sequence[str] | None) -> Any:
    import pyarrow.csv as pa_csv

    return pa_csv.ConvertOptions(  # names absent from the file are ignored
        null_values=NULL_VALUES, strings_can_be_null=True, decimal_point=decimal, column_types=types,
        include_columns=list(columns) if columns is not None else None)


def unreadable(path: Path, err: BaseException) -> UserError:
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return UserError(f"cannot read {path} ({first}): save it as UTF-8 CSV with a header row "
                     "(--sep sets the delimiter) or as Parquet")


class NotStreamable(Exception):
    """A file that cannot be read batch by batch with fixed column types (a number with a
    thousands separator, a cell that is no number): the caller reads it whole instead."""


def stream_table(path: str | Path, sep: str | None, text_columns: Sequence[str], number_columns: Sequence[str],
                 batch_rows: int) -> Iterator[Any]:
    """A CSV or Parquet file as pyarrow tables, in file order (Parquet: `batch_rows` rows at a time;
    CSV: a block of BATCH_BYTES, as larger blocks cost pyarrow's parallel reader several times
    their size), read with the types the model needs (its text columns as text, its number
    columns as numbers, any other column as text): memory bounded by a batch, whatever the
    file's size."""
    import pyarrow as pa

    path = Path(path)
    if not path.is_file():
        raise UserError(f"table {path} not found: check the path")
    types = {name: pa.float64() for name in number_columns}
    try:
        yield from table_batches(path, sep, text_columns, types, None, batch_rows, other_as_text=True)
    except (pa.ArrowException, OSError, UnicodeDecodeError, StopIteration) as err:
        raise NotStreamable(str(err)) from None


def table_batches(path: Path, sep: str | None, text_columns: Sequence[str], types: dict[str, Any],
                  columns: Sequence[str] | None, batch_rows: int | None = None,
                  other_as_text: bool = False) -> Iterator[Any]:
    """The file as pyarrow tables of a record batch each, in file order: `text_columns` as text,
    CSV columns of `types` with those types (any other column as text with `other_as_text`, else
    as pyarrow guesses from the first block), only `columns` (all by default). pyarrow's errors
    pass through."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    if path.suffix.lower() in PARQUET_SUFFIXES:
        names = list(columns) if columns is not None else None
        # pre_buffer=False: pyarrow's default reads a whole row group's columns ahead (+350 MB at
        # 1M-row groups of 11 columns); without it memory follows the batch, and reading is no slower.
        reader = pq.ParquetFile(path, pre_buffer=False)
        for batch in reader.iter_batches(batch_size=batch_rows or BATCH_ROWS, columns=names):
            table = plain_columns(missing_as_null(pa.Table.from_batches([batch])), text_columns)
            yield table.replace_schema_metadata({"decimal": "."})
        return
    delimiter = sep or detect_delimiter(path)
    decimal = "," if delimiter == ";" else "."
    text = {name: pa.string() for name in text_columns}
    if other_as_text:
        text.update({name: pa.string() for name in csv_header(path, delimiter)})
    reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=BATCH_BYTES),
                             parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                             convert_options=csv_convert_options(decimal, {**text, **types}, columns))
    for batch in reader:
        yield pa.Table.from_batches([batch]).replace_schema_metadata({"decimal": decimal})


def csv_header(path: Path, sep: str | None) -> list[str]:
    """The names in a CSV file's header row."""
    delimiter = sep or detect_delimiter(path)
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        return next(csv.reader([fh.readline()], delimiter=delimiter), [])


def plain_columns(table: Any, text_columns: Sequence[str]) -> Any:
    """Dictionary-encoded columns (a pandas `category` saved to Parquet) decoded, and the
    `text_columns` as text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for i, field in enumerate(table.schema):
        column = table.column(i)
        if pa.types.is_dictionary(field.type):
            column = pc.cast(column, field.type.value_type)
        if field.name in text_columns and not pa.types.is_string(column.type):
            column = text_column(column)
        if column is not table.column(i):
            table = table.set_column(i, field.name, column)
    return table


def missing_as_null(table: Any) -> Any:
    """Text cells that a CSV read takes for missing (blank, NA, null, ...) as nulls in a Parquet
    table too, so that a table reads the same from either format."""
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = pa.array(NULL_VALUES)
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            column = table.column(i)
            blank = pc.is_in(column, value_set=missing.cast(field.type))
            table = table.set_column(i, field.name, pc.if_else(blank, pa.scalar(None, field.type), column))
    return table


def decimal_of(table: Any) -> str:
    return (table.schema.metadata or {}).get(b"decimal", b".").decode()


# ---- column values as numpy ----

def _parse_number(text: str, decimal: str = ".") -> float | None:
    if decimal == ",":
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        pass
    if decimal == "." and _THOUSANDS.match(text):
        return float(text.replace(",", ""))
    return None


def text_is_numeric(values: Sequence[str | None], decimal: str = ".") -> bool:
    """Mostly numbers: a numeric column with odd cells (then errors), not a text column."""
    present = [v for v in values if v is not None]
    return bool(present) and sum(_parse_number(v, decimal) is not None for v in present) * 2 > len(present)


def column_looks_numeric(column: Any, decimal: str = ".") -> bool:
    """A text column whose first 10,000 cells are mostly numbers (a sample is enough to decide)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return text_is_numeric(pc.cast(column.slice(0, 10_000), pa.string()).to_pylist(), decimal)


SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def temporal_seconds(column: Any) -> np.ndarray:
    """Dates, times, timestamps and durations as float seconds (NaN for blanks)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_date32(kind):
        raw, scale = pc.cast(column, pa.int32()), 86400.0
    elif pa.types.is_date64(kind):
        raw, scale = pc.cast(column, pa.int64()), 1e-3
    elif pa.types.is_time32(kind):
        raw, scale = pc.cast(column, pa.int32()), SECONDS[kind.unit]
    else:  # timestamp, time64, duration: integers in the type's own unit
        raw, scale = pc.cast(column, pa.int64()), SECONDS[kind.unit]
    values = raw.to_numpy(zero_copy_only=False).astype(np.float64) * scale
    values[pc.is_null(column).to_numpy(zero_copy_only=False)] = np.nan
    return values


def is_number_type(kind: Any) -> bool:
    """Integers, floats or decimals: what pyarrow reads a column of plain numbers as."""
    import pyarrow as pa

    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind))


def is_temporal(kind: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_temporal(kind) or pa.types.is_duration(kind))


def numeric_values(column: Any, name: str, path: str | Path, decimal: str = ".", first_row: int = 0) -> np.ndarray:
    """float64 values with NaN for blanks; a cell that is not a number, or an infinity, is an
    error naming the column and the first such data row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_boolean(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind) \
            or pa.types.is_decimal(kind) or pa.types.is_null(kind):
        # safe=False: an integer above 2**53 (an account number, say) rounds rather than fails.
        values = pc.cast(column, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    elif is_temporal(kind):
        values = temporal_seconds(column)
    else:
        values = _text_to_numbers(pc.cast(column, pa.string()).to_pylist(), name, path, decimal, first_row)
    values = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(np.isinf(values))
    if bad.size:
        raise UserError(f"{path}: column '{name}' has an infinite value in data row {first_row + bad[0] + 1}: "
                        "fix or drop that row")
    return values


def _text_to_numbers(texts: list[str | None], name: str, path: str | Path, decimal: str,
                     first_row: int = 0) -> np.ndarray:
    out = np.full(len(texts), np.nan)
    for i, text in enumerate(texts):
        if text is None or text.strip() in NULL_VALUES:
            continue
        number = _parse_number(text.strip(), decimal)
        if number is None:
            raise UserError(f"{path}: column '{name}' has a non-numeric value {text!r} in data row "
                            f"{first_row + i + 1}: fix that cell, or leave it blank for a missing value")
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
