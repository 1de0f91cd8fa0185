"""Data sets on disk: the npz + JSON pair that make_data.py writes and train.py and infer.py read.

A data set is `<stem>.npz` (X_train, y_train, X_test, y_test, already scaled) plus
`<stem>.json`: the task, feature names, class labels and scaler statistics. The JSON
is what training and inference need to know, readable without pickle. Reading a data set
needs numpy only (no scikit-learn).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from common.artifacts import load_npz, read_json, save_npz, write_json
from common.errors import UserError

FORMAT_VERSION = 1
SPLITS = ("X_train", "y_train", "X_test", "y_test")


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

    @property
    def num_outputs(self) -> int:
        """Classes for classification, target columns for regression: the model's output width."""
        if self.task == "classification":
            return len(self.meta["class_labels"])
        return self.y_train.shape[1]


def meta_path(npz_path: str | Path) -> Path:
    return Path(npz_path).with_suffix(".json")


def save_dataset(data: TabularData, npz_path: str | Path) -> None:
    save_npz(npz_path, **{name: getattr(data, name) for name in SPLITS})
    write_json(meta_path(npz_path), data.meta)


def load_dataset(npz_path: str | Path) -> TabularData:
    if Path(npz_path).suffix.lower() in (".csv", ".parquet", ".pq"):
        raise UserError(f"{npz_path} is a table, not a data set: run `python make_data.py --csv {npz_path} "
                        "--target COLUMN` first and pass the .npz it writes")
    arrays = load_npz(npz_path)
    missing = set(SPLITS) - arrays.keys()
    if missing:
        raise UserError(f"data file {npz_path} lacks {sorted(missing)}: regenerate it with make_data.py")
    meta = read_json(meta_path(npz_path), "data set description")
    data = TabularData(meta=meta, **{k: arrays[k] for k in SPLITS})
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
