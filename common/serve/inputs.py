"""Prediction's inputs: a table (CSV, Parquet) or a .npy array read batch by batch, in file
order, into the model's inputs by the fitted steps, with the table's other columns to carry
into the predictions. Blanks are filled as in training."""
from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, NamedTuple, TypeVar

import numpy as np

from common.config import PREDICT_BATCH_ROWS
from common.data.columns import (
    NULL_VALUES,
    WordsAsBlanks,
    feature_type_advice,
    numeric_values,
    plain_table,
    require_feature_type,
    text_values,
)
from common.data.dates import DateValues, date_values, refuse_dates
from common.data.tables import (
    NotStreamable,
    decimal_of,
    read_table,
    require_table_file,
    require_unique_names,
    stream_table,
)
from common.errors import UserError
from common.files import NPY_ERRORS, require_file
from common.steps import UNKNOWN_CODE, Categories, Preprocessor

UNSEEN = "new, too rare in training, or past make_data.py's --max-levels"  # why a value has no level


class InputNotes:
    """What prediction did to its input that the user should hear of, once per run, summed over
    batches (report): blank cells filled in numeric columns that had none in training (the
    model has no `_missing` input there to tell it), and columns left out of the predictions
    because they have no text form (a list, a record, bytes)."""

    def __init__(self, pre: Preprocessor):
        self.fill = {s.name: s.median_text for s in pre.numeric if not s.indicator}
        self.counts: dict[str, int] = {}
        self.left_out: dict[str, str] = {}
        self.not_dates: dict[str, int] = {}  # a date column's cells that held no date: read as blanks
        self.dates_found: dict[str, int] = {}  # ...and those that held one
        self.categories = {c.name: c for c in pre.text_categorical}
        self.unknown: dict[str, int] = {}  # a categorical column's cells of no level the model kept
        self.unknown_example: dict[str, str | None] = {}
        self.bare_levels: dict[str, dict[str, str]] = {}  # a column's levels by their text without spaces around
        self.spaced: dict[str, int] = {}  # of `unknown`: cells that are a level but for their spaces
        self.spaced_example: dict[str, tuple[str, str]] = {}
        # a whole-number column's view as codes: its input's place, the batch's numbers, the numbers of no code
        self.code_places = {name: place for name, (place, _) in pre.code_view_places.items()}
        self.numbers: dict[str, np.ndarray] = {}
        self.uncoded: dict[str, int] = {}
        self.uncoded_example: dict[str, float] = {}

    def dates_read(self, name: str, found: DateValues) -> DateValues:
        if found.unparsed:
            self.not_dates[name] = self.not_dates.get(name, 0) + found.unparsed
        self.dates_found[name] = self.dates_found.get(name, 0) + int(np.count_nonzero(~np.isnan(found.instant)))
        return found

    def require_some_dates(self, source: str) -> None:
        """Once every row is read, before anything is written: a date column none of whose cells
        was a date is refused. A cell that is no date reads as a blank, but a whole column of them
        is dates written another way (`02/08/2020`), every row predicted at training's median date."""
        for name, cells in self.not_dates.items():
            if not self.dates_found.get(name):
                raise UserError(f"{source}: column '{name}' holds no date as training read them ({cells} cell(s), "
                                "none year first: 2012-01-31, with a time and zone or without): write its dates so, "
                                "or leave the cells blank")

    def watch(self, numeric: Callable[[str], np.ndarray]) -> Callable[[str], np.ndarray]:
        def counted(name: str) -> np.ndarray:
            values = numeric(name)
            if name in self.code_places:  # held until the batch is coded
                self.numbers[name] = values
            if name in self.fill:
                blanks = int(np.isnan(values).sum())
                if blanks:
                    self.counts[name] = self.counts.get(name, 0) + blanks
            return values
        return counted

    def watch_text(self, texts: Callable[[str], Categories]) -> Callable[[str], Categories]:
        """Counts the cells of each categorical column that take the unknown level: values never
        kept in training (new ones, or too rare there), and blanks where training had none."""
        def counted(name: str) -> Categories:
            column = texts(name)
            lookup = self.categories[name].lookup
            unknown = [i for i, value in enumerate(column.values) if value not in lookup]
            cells = int(np.isin(column.index, unknown).sum()) if unknown else 0
            blanks = int((column.index == -1).sum()) if None not in lookup else 0
            if cells or blanks:
                self.unknown[name] = self.unknown.get(name, 0) + cells + blanks
                self.unknown_example.setdefault(name, column.values[unknown[0]] if unknown else None)
            if unknown:
                self.count_spaced(name, column, unknown)
            return column
        return counted

    def coded(self, X: np.ndarray) -> np.ndarray:
        """The model's inputs of a batch, in which the cells of a view as codes that hold a number
        but take the unknown code are counted: a number training kept no code for."""
        for name, place in self.code_places.items():
            values = self.numbers.pop(name, None)
            if values is None:
                continue
            uncoded = np.flatnonzero((X[:, place] == UNKNOWN_CODE) & ~np.isnan(values))
            if uncoded.size:
                self.uncoded[name] = self.uncoded.get(name, 0) + int(uncoded.size)
                self.uncoded_example.setdefault(name, values[uncoded[0]].item())
        return X

    def carried(self, table: Any, names: list[str]) -> dict[str, Any]:
        """The table's columns `names`, of their own types (each output writes them in its own
        form: common/serve/outputs.py), those with no text form noted and left out."""
        extra = {}
        for name in names:
            if feature_type_advice(table.column(name).type):
                self.left_out[name] = str(table.column(name).type)
            else:
                extra[name] = table.column(name)
        return extra

    def lines(self) -> list[str]:
        """What there is to say, a line each."""
        forms = "year first: 2012-01-31, with a time and zone or without"
        said = []
        for name, blanks in self.counts.items():  # a date column's cells that held no date among them, said once
            among = f", {self.not_dates[name]} of them not dates ({forms})" if name in self.not_dates else ""
            said.append(f"column '{name}' had {blanks} blank cell(s){among}, filled with training's median "
                        f"{self.fill[name]} (training had no blanks in it)")
        for name, kind in self.left_out.items():
            said.append(f"column '{name}' ({kind}) is not a feature and has no text form: left out of the predictions")
        for name, cells in self.not_dates.items():
            if name not in self.counts:
                said.append(f"column '{name}' had {cells} cell(s) that are not dates ({forms}): read as blanks")
        for name, cells in self.unknown.items():
            example = self.unknown_example[name]
            such = "a blank" if example is None else repr(example)
            spaced = ""
            if name in self.spaced:
                value, level = self.spaced_example[name]
                spaced = (f"; {self.spaced[name]} of them are levels but for the spaces around them ({value!r} is "
                          f"{level!r} there)")
            said.append(f"column '{name}' had {cells} cell(s) with values the model has no level for ({such} among "
                        f"them: {UNSEEN}): read as its unknown level{spaced}")
        for name, cells in self.uncoded.items():
            number = self.uncoded_example[name]
            written = str(int(number)) if float(number).is_integer() else repr(number)  # 12345678, not 1.23457e+07
            said.append(f"column '{name}' had {cells} cell(s) with numbers its view as codes has no level for "
                        f"({written} among them: {UNSEEN}): read there as its unknown level, and as numbers as ever")
        return said

    def count_spaced(self, name: str, column: Categories, unknown: list[int]) -> None:
        """Of a batch's values of no level (`unknown`, indices into column.values), the cells of
        those that are a level but for the spaces around it: a CSV written with `, ` between its
        fields gives ` oslo` where training had `oslo`, or the other way round."""
        bare = self.bare_levels.get(name)
        if bare is None:
            bare = {level.strip(): level for level in self.categories[name].lookup if isinstance(level, str)}
            self.bare_levels[name] = bare
        spaced = [i for i in unknown if isinstance(column.values[i], str) and column.values[i].strip() in bare]
        if spaced:
            self.spaced[name] = self.spaced.get(name, 0) + int(np.isin(column.index, spaced).sum())
            value = column.values[spaced[0]]
            self.spaced_example.setdefault(name, (value, bare[value.strip()]))

    def report(self) -> None:
        """Printed, as infer.py says what it noticed (the Python API warns: `warned`)."""
        from rich.markup import escape

        from common.console import console

        for line in self.lines():
            console.print(f"Note: {escape(line)}")

    def warned(self) -> None:
        """Each line as a warning (InputNote) at the caller's line, as the Python API says what
        it noticed."""
        from common.errors import InputNote, warn_at_caller

        for line in self.lines():
            warn_at_caller(line, InputNote)


def not_numbers(pre: Preprocessor) -> list[str]:
    """The columns an array of numbers cannot hold: categories and dates."""
    return [c.name for c in pre.text_categorical] + [s.name for s in pre.dates]


def open_npy(path: str, pre: Preprocessor) -> np.memmap:
    """A .npy array of the model's inputs, memory-mapped, checked: numbers (no pickle, no complex
    values), one column for each of the model's columns, all numeric."""
    if refused := not_numbers(pre):
        raise UserError(f"{path}: a .npy array cannot hold the model's categorical or date columns "
                        f"{refused}: pass a CSV or Parquet file")
    require_file(path, "input")
    try:
        X = np.load(path, allow_pickle=False, mmap_mode="r")  # the header, checked against the file's size
    except NPY_ERRORS as err:  # EOFError: an empty file
        raise UserError(f"cannot read {path} ({err}): save a numeric array with numpy.save") from None
    names = pre.column_names
    if not isinstance(X, np.memmap) or X.ndim != 2 or X.shape[1] != len(names) or not real_numbers(X.dtype):
        shape = f"shape {X.shape} and type {X.dtype}" if isinstance(X, np.ndarray) else "no single array"
        raise UserError(f"{path} has {shape}, the model takes numbers of shape (rows, {len(names)}): pass the "
                        f"columns {names} in this order")
    return X


def real_numbers(dtype: Any) -> bool:
    """Numbers a model input can be: not complex ones (x + yj: whose x?)."""
    return bool(np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating))


def npy_batches(path: str, pre: Preprocessor, batch_rows: int,
                notes: InputNotes) -> Iterator[tuple[np.ndarray, dict[str, list]]]:
    """A numeric array (memory-mapped), its columns the model's numeric table columns in training
    order, as the model's inputs `batch_rows` rows at a time."""
    X = open_npy(path, pre)
    names = pre.column_names
    plain = pre.plainly_standardised
    for start, rows in array_blocks(path, X, batch_rows):
        # Column-major where each column is scaled in turn: read with a stride of the row's width,
        # a million rows' inputs took ~20% longer. Plainly standardised rows are scaled as one
        # block instead (40% less time than column by column), unless a batch has a blank.
        part = np.asarray(rows, dtype=np.float64, order="C" if plain else "F")
        if np.isinf(part).any():
            raise UserError(f"{path} holds infinite values (row {start + int(np.argwhere(np.isinf(part))[0, 0]) + 1})"
                            ": clean them first (NaN counts as blank)")
        block = pre.standardised_block(part) if plain else None  # scaled in place: the block is read afresh
        if block is not None:
            yield block, {}
            continue
        yield notes.coded(pre.transform(notes.watch(column_getter(part, names)), lambda n: Categories.from_list([]),
                                        len(part))), {}


def array_blocks(path: str, X: np.memmap, batch_rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """`X`'s rows, `batch_rows` at a time, read from the file rather than through the map: a file
    cut short meanwhile (another program rewriting it) would end the process by SIGBUS, with no
    word, where a read comes back short and is named. A Fortran-ordered array is read a column's
    part at a time."""
    total, width, size = len(X), X.shape[1], X.dtype.itemsize
    by_columns = not X.flags.c_contiguous

    def cut_short(row: int) -> UserError:
        return UserError(f"{path} was cut short while it was read (at row {row + 1} of {total}): read it once it "
                         "is written whole")

    with open(path, "rb") as fh:
        for start in range(0, total, batch_rows):
            rows = min(batch_rows, total - start)
            if by_columns:
                block = np.empty((rows, width), dtype=X.dtype, order="F")
                for column in range(width):
                    fh.seek(X.offset + (column * total + start) * size)
                    values = np.fromfile(fh, dtype=X.dtype, count=rows)
                    if values.size < rows:
                        raise cut_short(start + values.size)
                    block[:, column] = values
                yield start, block
                continue
            fh.seek(X.offset + start * width * size)
            values = np.fromfile(fh, dtype=X.dtype, count=rows * width)
            if values.size < rows * width:
                raise cut_short(start + values.size // width)
            yield start, values.reshape(rows, width)


def column_getter(X: np.ndarray, names: list[str]) -> Callable[[str], np.ndarray]:
    return lambda name: X[:, names.index(name)]


def table_inputs(table: Any, pre: Preprocessor, path: str, first_row: int,
                 notes: InputNotes) -> tuple[np.ndarray, dict[str, list]]:
    """The model's inputs for one table (or batch of a table), and its other columns."""
    require_unique_names(table.column_names, path)
    require_columns(table.column_names, pre, path)
    for name in pre.column_names:
        require_feature_type(table.column(name), name, path)
    require_numbers_where_trained(table, pre, path)
    decimal = decimal_of(table)
    dates = {s.name: notes.dates_read(s.name, date_values(table.column(s.name))) for s in pre.dates}

    words = {s.name: WordsAsBlanks(s.blank_words) for s in pre.numeric if s.blank_words}
    clocks = {s.name for s in pre.numeric if s.time_of_day}
    grouped = {s.name for s in pre.numeric if s.thousands == "."}

    def numbers(name: str) -> np.ndarray:
        return dates[name].instant if name in dates else numeric_values(
            table.column(name), name, path, decimal, first_row, words.get(name), time_of_day=name in clocks,
            grouped=name in grouped)

    X = notes.coded(pre.transform(notes.watch(numbers), notes.watch_text(lambda n: text_values(table.column(n))),
                                  table.num_rows, lambda n: dates[n].wall))
    return X, notes.carried(table, [n for n in table.column_names if n not in pre.column_names])


def require_numbers_where_trained(table: Any, pre: Preprocessor, path: str) -> None:
    """No dates in a column trained on numbers or times of day (refuse_dates); where it trained
    on dates read as seconds (`instants`), they are what it takes."""
    dates = {s.name for s in pre.dates}
    for step in pre.numeric:
        if step.name not in dates and not step.instants:
            refuse_dates(table.column(step.name).type, step.name, path,
                         "times of day" if step.time_of_day else "durations" if step.durations else "numbers")


def require_columns(names: Any, pre: Preprocessor, source: str, model: str = "the model") -> None:
    missing = [n for n in pre.column_names if n not in names]
    if missing:
        near = {n: given for n in missing for given in names if str(given).strip().lower() == n.strip().lower()}
        hint = f" (it has {list(near.values())}: names differ in spaces or case)" if near else ""
        raise UserError(f"{source} lacks column(s) {missing}{hint}: {model} needs {pre.column_names}")


READINGS = ("typed", "text", "whole")  # how feature_batches reads a table, each the fallback of the one before

FileState = tuple[int, int] | None  # a file's size and modification time (file_state)
T = TypeVar("T")


def read_by_readings(path: str, attempt: Callable[[str, FileState], T]) -> T:
    """`attempt(reading, the file's state before)` for each of READINGS in turn, the next where
    the stream cannot be read (NotStreamable), once the file is found unchanged meanwhile: a file
    cut short while streamed reads as not streamable."""
    before = file_state(path)
    for reading in READINGS[:-1]:
        try:
            return attempt(reading, before)
        except NotStreamable:
            check_unchanged(path, before)
    return attempt(READINGS[-1], before)


def file_state(path: str) -> FileState:
    """A file's size and modification time; None where it is gone (its open handles read on)."""
    import os

    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_size, found.st_mtime_ns


def check_unchanged(path: str, before: FileState) -> None:
    """Refuse predictions of a file that was written to while it was read: they would be of
    some of its rows, or of two versions of them."""
    now = file_state(path)
    if now is not None and now != before:
        raise UserError(f"{path} changed while it was read (another program writing it?): predict it again once "
                        "it is written whole")



def feature_batches(path: str, pre: Preprocessor, sep: str | None, batch_rows: int, reading: str = "typed",
                    notes: InputNotes | None = None, target: str | None = None) -> Iterator[Batch]:
    """The model's inputs for each row of a table (.csv, Parquet) or .npy array, batch by batch in
    file order, the table's other columns (ids and such) to carry into the predictions, and the
    `target` column where the table has one. Blanks are filled as in training. `reading`: "typed"
    streams the number columns as numbers; "text" streams them as text, read here, so that a cell
    that is no number (or `3,750`) is read, or named by its row, in memory bounded by a batch;
    "whole" reads the table whole, for files no stream reads (a row of too many cells), with
    pyarrow's own message. `notes` gathers what the user is told afterwards."""
    notes = notes or InputNotes(pre)
    if path.endswith(".npy"):
        for X, extra in npy_batches(path, pre, batch_rows, notes):
            yield Batch(X, extra, None)
        return
    first_row = 0
    for table in table_pieces(path, pre, sep, batch_rows, reading):
        yield Batch(*table_inputs(table, pre, path, first_row, notes), target_of(table, target), first_row,
                    decimal_of(table))
        first_row += table.num_rows


def table_pieces(path: str, pre: Preprocessor, sep: str | None, batch_rows: int, reading: str) -> Iterator[Any]:
    """A table file's rows as pyarrow tables in file order, read as `reading` says (READINGS:
    streamed with the model's number columns as numbers, or as text; or whole); a stream that
    cannot be read raises NotStreamable, for the next reading to take over."""
    text = [c.name for c in pre.text_categorical]
    if reading == "whole":
        yield read_table(path, sep, text_columns=text)
        return
    yield from stream_table(path, sep, text, streamed_numbers(pre) if reading == "typed" else [], batch_rows)


def streamed_numbers(pre: Preprocessor) -> list[str]:
    """The columns pyarrow reads as numbers when a file is streamed: the plain numeric ones. A date,
    a time of day, or a column whose training file held words among its numbers or grouped them by
    points, comes as text and is read here."""
    return [s.name for s in pre.numeric if not (s.is_date or s.blank_words or s.time_of_day or s.thousands)]


class Batch(NamedTuple):
    X: np.ndarray                   # the model's inputs
    extra: dict[str, Any]           # the other columns, as text, to carry into the predictions
    target: Any                     # the target column where the rows have one, else None
    first_row: int = 0              # of the table
    decimal: str = "."              # the table's decimal mark (a semicolon-separated file: a comma)


def target_of(table: Any, target: str | None) -> Any:
    return table.column(target) if target is not None and target in table.column_names else None


ROWS_NAME = "the table given"  # how a message names rows given in memory (there is no file)


def file_rows(rows: Any, pre: Preprocessor) -> Any:
    """Rows given as a file's path (text or a path object): a CSV or Parquet file read whole as
    infer.py reads it (table_pieces, each of READINGS the fallback of the one before), or a .npy
    array of the model's inputs; None for rows given in memory."""
    import os

    import pyarrow as pa

    if not isinstance(rows, (str, os.PathLike)):
        return None
    path = os.fspath(rows)
    require_table_file(path, "rows", arrays=True)
    if path.endswith(".npy"):
        return np.asarray(open_npy(path, pre))
    def read(reading: str, before: FileState) -> Any:
        pieces = list(table_pieces(path, pre, None, PREDICT_BATCH_ROWS, reading))
        if not sum(piece.num_rows for piece in pieces):
            raise UserError(f"{path} has no data rows: nothing to predict")
        return pa.concat_tables(pieces)

    return read_by_readings(path, read)


def arrow_rows(rows: Any, pre: Preprocessor) -> Any:
    """Rows given in memory as a pyarrow Table in the plain form a file's rows take
    (common/data/columns.py): a pyarrow Table or RecordBatch, a pandas DataFrame, a dict of
    columns (or of one row's values), a list of row dicts, or a 2-d NumPy array of the model's
    columns in training order (every one numeric)."""

    rows = row_of_series(rows)
    if no_rows(rows):
        raise UserError("no rows given: nothing to predict")
    table = array_table(rows, pre) if isinstance(rows, np.ndarray) else arrow_table(rows)
    if table is None:
        raise UserError(f"rows of type {type(rows).__name__} cannot be predicted: give a pyarrow Table, a pandas "
                        "DataFrame, a dict of columns, a list of row dicts, or a NumPy array")
    return plain_table(table, [c.name for c in pre.text_categorical])


def arrow_table(rows: Any) -> Any:
    """A pyarrow Table of a Table, a RecordBatch, a pandas DataFrame, a dict of columns (or of one
    row's values) or a list of row dicts, as pyarrow reads them; None for any other type. A
    column pyarrow cannot read (values of several types, a number too large) is one line."""
    import pyarrow as pa

    try:
        if isinstance(rows, pa.Table):
            return rows
        if isinstance(rows, pa.RecordBatch):
            return pa.Table.from_batches([rows])
        if is_dataframe(rows):
            rows = index_as_columns(rows)
            require_unique_names(list(rows.columns), "the rows")
            return pa.Table.from_pandas(rows, preserve_index=False)
        if isinstance(rows, (list, tuple)) and all(isinstance(r, dict) for r in rows):
            if not rows:
                return pa.table({})
            rows = columns_of_rows(rows)
        if isinstance(rows, dict):
            one_row = not any(_is_column(v) for v in rows.values())
            counts = {str(k): len(v) if _is_column(v) else 1 for k, v in rows.items()}
            if not one_row and len(set(counts.values())) > 1:
                raise UserError(f"the columns hold different numbers of values ({counts}): give every column one "
                                "value per row")
            single = [str(k) for k, v in rows.items() if not _is_column(v)]
            if not one_row and single:  # one value beside lists of one: a row whose cell is a list, or columns?
                listed = next(str(k) for k, v in rows.items() if _is_column(v))
                raise UserError(f"the rows mix single values (column '{single[0]}') and lists of them (column "
                                f"'{listed}'): give a dict of columns, a list for each, or one row's values, a "
                                "single value for each")
            # from_pandas: a float NaN is a blank, as pandas writes one in a column of text
            # (`df.to_dict("list")`), which pyarrow refused in a column of text otherwise.
            return pa.table({str(k): column_of_values(str(k), [v] if one_row else v) for k, v in rows.items()})
    except (pa.ArrowException, ValueError, TypeError, OverflowError) as err:
        raise UserError(f"cannot read the rows as a table ({str(err).splitlines()[0]}): give each column values "
                        "of one type") from None
    return None


def column_of_values(name: str, values: Any) -> Any:
    """One column of Python values as pyarrow reads it (from_pandas: a float NaN is a blank, as
    pandas writes one in a column of text, `df.to_dict("list")`). Whole numbers past int64 (an
    account number of 2**63 and more, a uint64 column's) are read as the floats the model reads
    them as, where pyarrow stops at them; any other error names the column."""
    import pyarrow as pa

    listed = arrow_values(values)
    try:
        return pa.array(listed, from_pandas=True)
    except OverflowError:
        if isinstance(listed, (list, tuple)) and all(type(v) is int or v is None for v in listed):
            return pa.array([None if v is None else float(v) for v in listed], pa.float64())
        raise UserError(f"column '{name}' holds whole numbers too large for 64 bits among other values: give it "
                        "as numbers of one type") from None
    except (pa.ArrowException, ValueError, TypeError) as err:
        raise UserError(f"cannot read column '{name}' of the rows ({str(err).splitlines()[0]}): give it values "
                        "of one type") from None


# NumPy date units pyarrow cannot take from a list of scalars (np.datetime64("2022-04-03") has days).
COARSE_DATE_UNITS = ("Y", "M", "W", "D", "h", "m")


def arrow_values(values: Any) -> Any:
    """One column's values given as a list (a tuple, an array of objects) with NumPy dates of a
    unit coarser than seconds in seconds, which pyarrow reads: it refuses the scalars themselves
    with a message about int(), and Python's dates and datetimes (`.item()`) in one list would
    lose the datetimes' times. Anything else unchanged."""
    listed = values.tolist() if isinstance(values, np.ndarray) and values.dtype == object else values
    if not isinstance(listed, (list, tuple)) or not any(isinstance(v, np.datetime64) for v in listed):
        return values
    return [v.astype("datetime64[s]") if isinstance(v, np.datetime64)
            and np.datetime_data(v.dtype)[0] in COARSE_DATE_UNITS else v for v in listed]


def _is_column(value: Any) -> bool:
    """A dict's value that holds a column (a list, an array, a Series), not one row's value (a
    number, a text, a date, a Decimal...)."""
    if isinstance(value, (list, tuple, range, np.ndarray)):
        return True
    return type(value).__module__.split(".")[0] in ("pandas", "pyarrow") and hasattr(value, "__len__")


def no_rows(rows: Any) -> bool:
    """An empty list or table, or a dict of empty columns: nothing to predict."""
    if isinstance(rows, dict):
        return bool(rows) and all(_is_column(v) and len(v) == 0 for v in rows.values())
    return hasattr(rows, "__len__") and len(rows) == 0


def is_dataframe(rows: Any) -> bool:
    return type(rows).__module__.split(".")[0] == "pandas" and hasattr(rows, "columns")


def read_columns(rows: Any, names: Collection[str]) -> Any:
    """A DataFrame, a dict (of columns or of one row's values) or a list of row dicts (Series
    too) with the columns named `names` alone, and any that differs from one of them only in
    spaces or case (so that require_columns can say so): a column the model never reads is no
    reason to refuse the rows, as infer.py ignores it (a map column pandas cannot hand to Arrow,
    a list in one row's dict, which would read it as columns). Anything else as given."""
    loose = {str(name).strip().lower() for name in names}

    def kept(name: Any) -> bool:
        return str(name).strip().lower() in loose

    rows = row_of_series(rows)
    if is_dataframe(rows):
        rows = index_as_columns(rows)
        mask = [kept(name) for name in rows.columns]
        return rows if all(mask) else rows.loc[:, mask]
    if isinstance(rows, dict):
        return {key: value for key, value in rows.items() if kept(key)}
    if isinstance(rows, list) and all(isinstance(row, dict) for row in rows):
        return [{key: value for key, value in row.items() if kept(key)} for row in rows]
    return rows


def index_as_columns(frame: Any) -> Any:
    """A DataFrame with its named index levels as columns (set_index("date") holds a column of
    the table), unless a column has that name, and an unnamed index of dates (a time series') as
    the column pandas writes it to Parquet as, __index_level_0__; any other unnamed index is row
    labels, left out."""
    named = [name for name in frame.index.names if name is not None and name not in frame.columns]
    if frame.index.nlevels == 1 and frame.index.name is None and frame.index.dtype.kind == "M" \
            and PANDAS_DATES not in frame.columns:
        return frame.rename_axis(PANDAS_DATES).reset_index()
    return frame.reset_index(level=named) if named else frame


PANDAS_DATES = "__index_level_0__"  # pandas' name for an unnamed index it writes to Parquet


def row_of_series(rows: Any) -> Any:
    """A pandas Series (a DataFrame's row, `df.iloc[0]`) as the dict of one row's values it is, and
    a list of them (`[row for _, row in df.iterrows()]`) as a list of such dicts; anything else as
    given."""
    if _is_series(rows):
        return {str(k): v for k, v in rows.to_dict().items()}
    if isinstance(rows, list) and rows and all(_is_series(r) for r in rows):
        return [row_of_series(r) for r in rows]
    return rows


def _is_series(value: Any) -> bool:
    return type(value).__module__.split(".")[0] == "pandas" and hasattr(value, "index") \
        and hasattr(value, "to_dict") and not hasattr(value, "columns")


def array_table(X: np.ndarray, pre: Preprocessor) -> Any:
    """A 2-d array of the model's columns, in training order: only where every one is numeric."""
    import pyarrow as pa

    if refused := not_numbers(pre):
        raise UserError(f"a NumPy array cannot hold the model's categorical or date columns "
                        f"{refused}: give a DataFrame, an Arrow table or a dict of columns")
    names = pre.column_names
    if X.ndim == 1 and len(X) == len(names):
        X = X.reshape(1, -1)
    if X.ndim != 2 or X.shape[1] != len(names) or not real_numbers(X.dtype):
        raise UserError(f"an array of shape {X.shape} and type {X.dtype} cannot be the model's rows: it takes numbers "
                        f"of shape (rows, {len(names)}), the columns {names} in this order")
    if np.isinf(X).any():
        raise UserError("the array holds infinite values: clean them first (NaN counts as blank)")
    return pa.table({name: X[:, i].astype(np.float64) for i, name in enumerate(names)})


FAST_ROWS = 256  # rows given as Python values up to this many skip Arrow (see python_inputs)


def python_inputs(rows: Any, pre: Preprocessor, notes: InputNotes) -> np.ndarray | None:
    """The model's inputs for a few rows given as Python values (a dict of one row's values or of
    columns, a list of row dicts), read by the rules the Arrow path applies (numbers as float64,
    NaN and None blank; text with the missing spellings blank, true/false as pyarrow writes them,
    numbers as text without a whole number's `.0`), without its fixed cost per column: a request
    of one row is mostly that cost. None where a value falls outside those rules (a string in a
    numeric column, a date, an infinity, a column mixing kinds): the Arrow path then reads the
    rows, and says what is wrong where something is."""
    columns = python_columns(row_of_series(rows))
    if columns is None or pre.dates:  # dates take the Arrow path, which reads every form of them
        return None
    require_columns(columns, pre, ROWS_NAME)
    numeric, text = {}, {}
    for step in pre.numeric:
        numbers = python_numbers(columns[step.name], step.blank_words)
        if numbers is None:
            return None
        numeric[step.name] = numbers
    for cat in pre.text_categorical:
        texts = python_texts(columns[cat.name])
        if texts is None:
            return None
        text[cat.name] = Categories.from_list(texts)
    return notes.coded(pre.transform(notes.watch(numeric.__getitem__), notes.watch_text(text.__getitem__),
                                     len(next(iter(columns.values()), []))))


def python_columns(rows: Any) -> dict[str, list] | None:
    """A dict of one row's values or of columns, or a short list of row dicts, as lists of values
    by column name (a key a row lacks is a blank); None for any other form."""
    if isinstance(rows, dict) and rows:
        if all(_is_scalar(v) for v in rows.values()):
            return {str(k): [v] for k, v in rows.items()}
        if all(isinstance(v, list) for v in rows.values()):
            lengths = {len(v) for v in rows.values()}
            return {str(k): v for k, v in rows.items()} if len(lengths) == 1 and 0 < min(lengths) <= FAST_ROWS \
                else None
        return None
    if isinstance(rows, list) and 0 < len(rows) <= FAST_ROWS and all(isinstance(r, dict) for r in rows):
        return {str(k): v for k, v in columns_of_rows(rows).items()}
    return None


def columns_of_rows(rows: Sequence[dict]) -> dict[Any, list]:
    """Row dicts as columns: every key any row has (as pandas reads records, where pyarrow's
    from_pylist takes the first row's alone), a key a row lacks a blank in its row. A few rows
    and many are read alike."""
    return {k: [r.get(k) for r in rows] for k in dict.fromkeys(k for r in rows for k in r)}


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float, np.generic))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def python_numbers(values: list, blank_words: Sequence[str] = ()) -> np.ndarray | None:
    """float64, NaN for None and NaN (and for a word training read as a blank); None unless every
    value is a number, a blank or such a word, none infinite and every integer within int64 (what
    pyarrow's cast takes)."""
    words = {*NULL_VALUES, *blank_words}
    if not all(_is_number(v) or v is None or (isinstance(v, str) and v in words) for v in values):
        return None
    values = [None if isinstance(v, str) else v for v in values]
    if any(isinstance(v, (int, np.integer)) and not -2 ** 63 <= v < 2 ** 63 for v in values):  # pyarrow's int64
        return None
    out = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return None if np.isinf(out).any() else out


def python_texts(values: list) -> list[str | None] | None:
    """Text as the Arrow path reads it: a column of text (the missing spellings blank), of
    true/false (`true`, `false`) or of numbers (whole ones without `.0`); None for a mix."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, str) for v in present):
        return [None if v is None or v in NULL_VALUES else str(v) for v in values]
    if all(isinstance(v, (bool, np.bool_)) for v in present):
        return [None if v is None else ("true" if v else "false") for v in values]
    if all(_is_number(v) for v in present):
        if all(isinstance(v, (int, np.integer)) for v in present):
            if any(not -2 ** 63 <= v < 2 ** 63 for v in present):  # pyarrow's int64: it refuses the rows
                return None
            return [None if v is None else str(int(v)) for v in values]
        return [None if v is None or v != v else (str(int(v)) if float(v).is_integer() else repr(float(v)))
                for v in values]
    return None
