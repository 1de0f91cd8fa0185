"""Data sets on disk: generation as in the recipes, scaling, and the npz + JSON pair.

A data set is `<stem>.npz` (X_train, y_train, X_test, y_test, already scaled) plus
`<stem>.json`: the task, feature names, class labels and scaler statistics. The JSON
is what training and inference need to know, readable without pickle.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import datasets, model_selection
from sklearn.preprocessing import StandardScaler

from common.artifacts import load_npz, read_json, save_npz, write_json
from common.config import MakeDataConfig
from common.errors import UserError

FORMAT_VERSION = 1
RECIPE_SIZES = {  # (n_samples, n_features, n_informative) of each recipe
    "classification": (100_000, 10, 5),
    "regression": (1000, 5, 3),
}
FILE_STEMS = {"classification": "cls_data", "regression": "reg_data"}


@dataclasses.dataclass
class TabularData:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    meta: dict[str, Any]

    @property
    def task(self) -> str:
        return self.meta["task"]


def resolve_make_data_config(cfg: MakeDataConfig) -> MakeDataConfig:
    """Fill the synthetic recipe's sizes; a CSV or shipped data set keeps its own task (None here)."""
    if cfg.csv or cfg.dataset:
        return cfg
    task = cfg.task or "classification"
    n_samples, n_features, n_informative = RECIPE_SIZES[task]
    return dataclasses.replace(
        cfg, task=task,
        n_samples=cfg.n_samples if cfg.n_samples is not None else n_samples,
        n_features=cfg.n_features if cfg.n_features is not None else n_features,
        n_informative=cfg.n_informative if cfg.n_informative is not None else n_informative,
    )


def generate(cfg: MakeDataConfig) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Raw X, y and the generator's description, exactly as the recipe calls sklearn."""
    try:
        if cfg.task == "classification":
            X, y = datasets.make_classification(
                n_samples=cfg.n_samples, n_features=cfg.n_features, n_informative=cfg.n_informative,
                n_redundant=cfg.n_redundant, n_classes=cfg.n_classes,
                n_clusters_per_class=cfg.n_clusters_per_class, flip_y=cfg.flip_y, random_state=cfg.seed,
            )
            return X, y, {"generator": "make_classification"}
        X, y, coef = datasets.make_regression(
            n_samples=cfg.n_samples, n_features=cfg.n_features, n_informative=cfg.n_informative,
            n_targets=1, bias=cfg.bias, noise=cfg.noise, coef=True, random_state=cfg.seed,
        )
        return X, y, {"generator": "make_regression", "coef": np.ravel(coef).tolist()}
    except ValueError as err:  # sklearn's own word on impossible settings
        raise UserError(f"cannot generate the data set: {err}") from None


def split(X: np.ndarray, y: np.ndarray, task: str, test_size: float, seed: int):
    """80/20 by default; stratified for classification so every class keeps its share."""
    if not 0.0 < test_size < 1.0:
        raise UserError(f"--test-size must lie strictly between 0 and 1, got {test_size}")
    stratify = y if task == "classification" else None
    return model_selection.train_test_split(X, y, test_size=test_size, random_state=seed, stratify=stratify)


def fit_scalers(X_train: np.ndarray, y_train: np.ndarray, task: str) -> tuple[StandardScaler, StandardScaler | None]:
    """Fit on the training split only, so no information leaks from the test rows."""
    x_scaler = StandardScaler().fit(X_train)
    y_scaler = StandardScaler().fit(y_train.reshape(-1, 1)) if task == "regression" else None
    return x_scaler, y_scaler


def build_tabular(X_train, X_test, y_train, y_test, task: str, feature_names: list[str],
                  class_labels: list | None, source: dict[str, Any]) -> tuple[TabularData, tuple]:
    """Scale a split and describe it; returns the data set and its fitted scalers."""
    x_scaler, y_scaler = fit_scalers(X_train, y_train, task)
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "task": task,
        "feature_names": feature_names,
        "class_labels": class_labels,
        "x_mean": x_scaler.mean_.tolist(),
        "x_scale": x_scaler.scale_.tolist(),
        "y_mean": None if y_scaler is None else float(y_scaler.mean_[0]),
        "y_scale": None if y_scaler is None else float(y_scaler.scale_[0]),
        "n_train": int(len(X_train)),
        "n_test": int(len(X_test)),
        "source": source,
    }
    if task == "classification":
        y_tr, y_te = y_train.astype(np.int64), y_test.astype(np.int64)
    else:
        y_tr = y_scaler.transform(y_train.reshape(-1, 1)).astype(np.float32)
        y_te = y_scaler.transform(y_test.reshape(-1, 1)).astype(np.float32)
    data = TabularData(
        X_train=x_scaler.transform(X_train).astype(np.float32), y_train=y_tr,
        X_test=x_scaler.transform(X_test).astype(np.float32), y_test=y_te, meta=meta,
    )
    return data, (x_scaler, y_scaler)


def meta_path(npz_path: str | Path) -> Path:
    return Path(npz_path).with_suffix(".json")


def save_dataset(data: TabularData, npz_path: str | Path) -> None:
    save_npz(npz_path, X_train=data.X_train, y_train=data.y_train, X_test=data.X_test, y_test=data.y_test)
    write_json(meta_path(npz_path), data.meta)


def load_dataset(npz_path: str | Path) -> TabularData:
    arrays = load_npz(npz_path)
    missing = {"X_train", "y_train", "X_test", "y_test"} - arrays.keys()
    if missing:
        raise UserError(f"data file {npz_path} lacks {sorted(missing)}: regenerate it with make_data.py")
    meta = read_json(meta_path(npz_path), "data set description")
    data = TabularData(meta=meta, **{k: arrays[k] for k in ("X_train", "y_train", "X_test", "y_test")})
    check_dataset(data, npz_path)
    return data


def check_dataset(data: TabularData, path: str | Path) -> None:
    width = len(data.meta["feature_names"])
    for name in ("X_train", "X_test"):
        arr = getattr(data, name)
        if arr.ndim != 2 or arr.shape[1] != width:
            raise UserError(f"{path}: {name} has shape {arr.shape}, expected (rows, {width}): regenerate the data set")
    if len(data.X_train) != len(data.y_train) or len(data.X_test) != len(data.y_test):
        raise UserError(f"{path}: features and targets differ in length: regenerate the data set")
    if len(data.X_train) == 0 or len(data.X_test) == 0:
        raise UserError(f"{path}: the training or test split is empty: use more rows")


def scale_features(X: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Raw feature rows -> the standardised inputs the model was trained on."""
    mean = np.asarray(meta["x_mean"], dtype=np.float64)
    scale = np.asarray(meta["x_scale"], dtype=np.float64)
    return ((np.asarray(X, dtype=np.float64) - mean) / scale).astype(np.float32)


def unscale_target(y_scaled: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Model outputs on the scaled target -> the original y scale."""
    return np.asarray(y_scaled, dtype=np.float64) * meta["y_scale"] + meta["y_mean"]


# ---- tables from users: CSV files and the data sets scikit-learn ships ----

SHIPPED = {  # name -> (loader, task)
    "iris": (datasets.load_iris, "classification"),
    "wine": (datasets.load_wine, "classification"),
    "breast_cancer": (datasets.load_breast_cancer, "classification"),
    "digits": (datasets.load_digits, "classification"),
    "diabetes": (datasets.load_diabetes, "regression"),
}
MAX_CLASSES_FROM_INTEGERS = 20  # an integer target with at most this many values is taken as classes
MISSING = {"", "na", "nan", "null", "none"}


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


def table_from_csv(path: str, target: str | None, task: str | None):
    """(X, y, task, feature names, class labels, dropped text columns) of a CSV file."""
    header, columns = read_csv_columns(path)
    if not target:
        raise UserError(f"--csv needs --target: one of {header}")
    if target not in columns:
        raise UserError(f"{path} has no target column '{target}': choose --target from {header}")
    task = task or infer_task(columns[target])
    features = [n for n in header if n != target and is_numeric_column(columns[n])]
    dropped = [n for n in header if n != target and n not in features]
    if not features:
        raise UserError(f"{path} has no numeric feature columns besides '{target}': add some")
    X = np.stack([numeric_column(n, columns[n], path) for n in features], axis=1)
    raw_y = columns[target]
    for i, v in enumerate(raw_y):
        if v.lower() in MISSING:
            raise UserError(f"{path}: target column '{target}' has a missing value in data row {i + 1}: "
                            "fill or drop that row")
    if task == "regression":
        return X, numeric_column(target, raw_y, path), task, features, None, dropped
    labels = np.asarray(raw_y)
    if all(_is_number(v) for v in raw_y):
        labels = np.asarray([float(v) for v in raw_y])
    y, class_labels = encode_labels(labels)
    return X, y, task, features, class_labels, dropped


def table_from_sklearn(name: str, task: str | None):
    loader, own_task = SHIPPED[name]
    if task and task != own_task:
        raise UserError(f"--dataset {name} is a {own_task} data set: drop --task {task}")
    bunch = loader()
    names = [str(n) for n in getattr(bunch, "feature_names", [f"x{i}" for i in range(bunch.data.shape[1])])]
    if own_task == "regression":
        return bunch.data, bunch.target.astype(np.float64), own_task, names, None, []
    labels = [str(n) for n in getattr(bunch, "target_names", np.unique(bunch.target))]
    return bunch.data, bunch.target.astype(np.int64), own_task, names, labels, []


def check_splittable(y: np.ndarray, task: str, class_labels: list | None, test_size: float) -> None:
    n_test = int(np.ceil(len(y) * test_size))
    if len(y) < 2 or n_test < 1 or len(y) - n_test < 1:
        raise UserError(f"{len(y)} rows cannot be split into training and test rows: add rows")
    if task == "classification":
        counts = np.bincount(y, minlength=len(class_labels))
        rare = [class_labels[k] for k in np.flatnonzero(counts < 2)]
        if rare:
            raise UserError(f"class(es) {rare} have fewer than 2 rows; a stratified split needs 2: "
                            "drop them or add rows")
        if n_test < len(class_labels):
            raise UserError(f"{n_test} test rows cannot hold all {len(class_labels)} classes: raise --test-size")
