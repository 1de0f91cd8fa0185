"""Users' tables: reading a CSV file into numeric features and a target (numpy only).

Shared by make_data.py (a table -> a data set) and infer.py (raw rows -> predictions), so a
column is parsed the same way at training and at prediction time.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import UserError

MAX_CLASSES_FROM_INTEGERS = 20  # an integer target with at most this many values is taken as classes
MISSING = {"", "na", "nan", "null", "none"}


@dataclasses.dataclass
class RawTable:
    """Features and target before the split and the scaling, and where they came from."""

    X: np.ndarray
    y: np.ndarray
    task: str
    feature_names: list[str]
    class_labels: list[Any] | None
    source: dict[str, Any]
    stem: str  # the data set's file name, without suffix


def read_csv_columns(path: str | Path) -> tuple[list[str], dict[str, list[str]]]:
    """Header and columns of a CSV file, as text; every shape problem is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"CSV file {path} not found: check the path")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [row for row in csv.reader(fh) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"cannot read {path} as CSV ({err}): save it as UTF-8 CSV with a header") from None
    if not rows:
        raise UserError(f"{path} is empty: give a CSV with a header row and data rows")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if not body:
        raise UserError(f"{path} has a header but no data rows: add rows")
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise UserError(f"{path}: data row {i + 1} has {len(row)} fields, the header {len(header)}: fix that row")
    return header, {name: [row[i].strip() for row in body] for i, name in enumerate(header)}


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def is_numeric_column(values: list[str]) -> bool:
    """Mostly numbers: a feature (whose odd values are then errors), not a text column to drop."""
    present = [v for v in values if v.lower() not in MISSING]
    return bool(present) and sum(map(_is_number, present)) * 2 > len(present)


def numeric_column(name: str, values: list[str], path: str | Path) -> np.ndarray:
    """float64 values; a non-number, a gap, NaN or infinity is an error naming the first bad row."""
    for i, v in enumerate(values):
        if v.lower() in MISSING:
            raise UserError(f"{path}: column '{name}' has a missing value in data row {i + 1}: fill or drop that row")
        if not _is_number(v):
            raise UserError(f"{path}: column '{name}' has a non-numeric value {v!r} in data row {i + 1}: "
                            "fix or drop that row")
    column = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(column))
    if bad.size:
        raise UserError(f"{path}: column '{name}' has a NaN or infinite value in data row {bad[0] + 1}: "
                        "fill or drop that row")
    return column


def infer_task(values: list[str]) -> str:
    """Text labels, or a few integer values -> classification; other numbers -> regression."""
    if not all(_is_number(v) for v in values if v.lower() not in MISSING):
        return "classification"
    numbers = np.asarray([float(v) for v in values if v.lower() not in MISSING])
    few = len(np.unique(numbers)) <= MAX_CLASSES_FROM_INTEGERS
    return "classification" if few and np.all(numbers == np.round(numbers)) else "regression"


def encode_labels(values: np.ndarray) -> tuple[np.ndarray, list]:
    """Labels -> 0..K-1, and the original labels in that order (ints stay ints in the JSON)."""
    labels, y = np.unique(values, return_inverse=True)
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    return y.astype(np.int64), labels.tolist()


def table_from_csv(path: str, target: str | None, task: str | None) -> RawTable:
    """A CSV file's numeric columns as features; text columns (ids, names) are dropped and listed."""
    header, columns = read_csv_columns(path)
    if not target:
        raise UserError(f"--csv needs --target: one of {header}")
    if target not in columns:
        raise UserError(f"{path} has no target column '{target}': choose --target from {header}")
    raw_y = columns[target]
    for i, v in enumerate(raw_y):  # before parsing, so text labels get this message too
        if v.lower() in MISSING:
            raise UserError(f"{path}: target column '{target}' has a missing value in data row {i + 1}: "
                            "fill or drop that row")
    task = task or infer_task(raw_y)
    features = [n for n in header if n != target and is_numeric_column(columns[n])]
    dropped = [n for n in header if n != target and n not in features]
    if not features:
        raise UserError(f"{path} has no numeric feature columns besides '{target}': add some")
    X = np.stack([numeric_column(n, columns[n], path) for n in features], axis=1)
    source = {"csv": str(Path(path).resolve()), "target": target, "dropped_columns": dropped}
    if task == "regression":
        return RawTable(X, numeric_column(target, raw_y, path), task, features, None, source, Path(path).stem)
    labels = np.asarray([float(v) for v in raw_y]) if all(_is_number(v) for v in raw_y) else np.asarray(raw_y)
    y, class_labels = encode_labels(labels)
    return RawTable(X, y, task, features, class_labels, source, Path(path).stem)
