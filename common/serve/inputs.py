"""Prediction's inputs: a table (CSV, Parquet) or a .npy array read batch by batch, in file
order, into the model's inputs by the fitted steps, with the table's other columns to carry
into the predictions. Blanks are filled as in training."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from common.data.columns import carried_text, numeric_values, require_feature_type, text_values
from common.data.tables import decimal_of, read_table, stream_table
from common.errors import UserError
from common.steps import Categories, Preprocessor


class InputNotes:
    """What prediction did to its input that the user should hear of, once per run, summed over
    batches (report): blank cells filled in numeric columns that had none in training (the
    model has no `_missing` input there to tell it), and columns left out of the predictions
    because they have no text form (a list, a record, bytes)."""

    def __init__(self, pre: Preprocessor):
        self.fill = {s.name: s.median for s in pre.numeric if not s.indicator}
        self.counts: dict[str, int] = {}
        self.left_out: dict[str, str] = {}

    def watch(self, numeric: Callable[[str], np.ndarray]) -> Callable[[str], np.ndarray]:
        def counted(name: str) -> np.ndarray:
            values = numeric(name)
            if name in self.fill:
                blanks = int(np.isnan(values).sum())
                if blanks:
                    self.counts[name] = self.counts.get(name, 0) + blanks
            return values
        return counted

    def carried(self, table: Any, names: list[str]) -> dict[str, Any]:
        """The table's columns `names` as text, those with no text form noted and left out."""
        extra = {}
        for name in names:
            text = carried_text(table.column(name))
            if text is None:
                self.left_out[name] = str(table.column(name).type)
            else:
                extra[name] = text
        return extra

    def report(self) -> None:
        from common.console import console

        for name, blanks in self.counts.items():
            console.print(f"Note: column '{name}' had {blanks} blank cell(s), filled with training's median "
                          f"{self.fill[name]:g} (training had no blanks in it)")
        for name, kind in self.left_out.items():
            console.print(f"Note: column '{name}' ({kind}) is not a feature and has no text form: "
                          "left out of the predictions")


def npy_batches(path: str, pre: Preprocessor, batch_rows: int,
                notes: InputNotes) -> Iterator[tuple[np.ndarray, dict[str, list]]]:
    """A numeric array (memory-mapped), its columns the model's numeric table columns in training
    order, as the model's inputs `batch_rows` rows at a time."""
    if pre.categorical:
        raise UserError(f"{path}: a .npy array cannot hold the model's categorical columns "
                        f"{[c.name for c in pre.categorical]}: pass a CSV or Parquet file")
    if not Path(path).is_file():
        raise UserError(f"input {path} not found: check the path")
    try:
        X = np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} ({err}): save a numeric array with numpy.save") from None
    names = pre.column_names
    if X.ndim != 2 or X.shape[1] != len(names) or not np.issubdtype(X.dtype, np.number):
        raise UserError(f"{path} has shape {X.shape} and type {X.dtype}, the model takes numbers of shape "
                        f"(rows, {len(names)}): pass the columns {names} in this order")
    for start in range(0, len(X), batch_rows):
        part = np.asarray(X[start:start + batch_rows], dtype=np.float64)
        if np.isinf(part).any():
            raise UserError(f"{path} holds infinite values (row {start + int(np.argwhere(np.isinf(part))[0, 0]) + 1})"
                            ": clean them first (NaN counts as blank)")
        yield pre.transform(notes.watch(column_getter(part, names)), lambda n: Categories.from_list([]),
                            len(part)), {}


def column_getter(X: np.ndarray, names: list[str]) -> Callable[[str], np.ndarray]:
    return lambda name: X[:, names.index(name)]


def table_inputs(table: Any, pre: Preprocessor, path: str, first_row: int,
                 notes: InputNotes) -> tuple[np.ndarray, dict[str, list]]:
    """The model's inputs for one table (or batch of a table), and its other columns."""
    names = table.column_names
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:  # as make_data.py says it (common/data/tables.read_table)
        raise UserError(f"{path} has more than one column named {duplicated}: rename them")
    missing = [n for n in pre.column_names if n not in table.column_names]
    if missing:
        raise UserError(f"{path} lacks column(s) {missing}: the model needs {pre.column_names}")
    for name in pre.column_names:
        require_feature_type(table.column(name), name, path)
    decimal = decimal_of(table)
    X = pre.transform(notes.watch(lambda n: numeric_values(table.column(n), n, path, decimal, first_row)),
                      lambda n: text_values(table.column(n)), table.num_rows)
    return X, notes.carried(table, [n for n in table.column_names if n not in pre.column_names])


def feature_batches(path: str, pre: Preprocessor, sep: str | None, batch_rows: int, stream: bool = True,
                    notes: InputNotes | None = None) -> Iterator[tuple[np.ndarray, dict[str, list]]]:
    """The model's inputs for each row of a table (.csv, Parquet) or .npy array, batch by batch in
    file order, and the table's other columns (ids and such) to carry into the predictions.
    Blanks are filled as in training. `stream=False` reads a table whole (the way for files that
    stream_table cannot read with fixed types), for row-numbered messages on bad cells. `notes`
    gathers what the user is told afterwards (InputNotes)."""
    notes = notes or InputNotes(pre)
    if path.endswith(".npy"):
        yield from npy_batches(path, pre, batch_rows, notes)
        return
    text = [c.name for c in pre.categorical]
    if not stream:
        yield table_inputs(read_table(path, sep, text_columns=text), pre, path, 0, notes)
        return
    first_row = 0
    for table in stream_table(path, sep, text, [s.name for s in pre.numeric], batch_rows):
        yield table_inputs(table, pre, path, first_row, notes)
        first_row += table.num_rows

