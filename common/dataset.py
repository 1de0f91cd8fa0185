"""Data sets on disk: the npz + JSON pair that make_data.py writes and train.py and infer.py read.

A data set is `<stem>.npz` (X_train, y_train, X_val, y_val, X_test, y_test: the model's inputs,
already preprocessed) plus `<stem>.json`: the task, input names, class labels, the fitted
preprocessing steps (common/preprocess.py) and the target's scaling. The JSON is what training
and inference need to know, readable without pickle. Reading a data set needs numpy only
(neither scikit-learn nor pyarrow).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from common.artifacts import load_npz, read_json, save_npz, write_json
from common.errors import UserError
from common.preprocess import Preprocessor

FORMAT_VERSION = 2  # 1: no validation split, no preprocessing steps (scaling only)
SPLITS = ("train", "val", "test")
RECIPE_GENERATORS = ("make_classification", "make_regression")


@dataclasses.dataclass
class TabularData:
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    meta: dict[str, Any]
    X_val: np.ndarray | None = None  # None: no validation rows
    y_val: np.ndarray | None = None
    fingerprint: str = "in memory"    # of the file it was read from (load_dataset)

    def __post_init__(self) -> None:
        if self.X_val is None or self.y_val is None:
            self.X_val, self.y_val = self.X_train[:0], self.y_train[:0]

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def num_outputs(self) -> int:
        """Classes for classification, target columns for regression: the model's output width."""
        if self.task == "classification":
            return len(self.meta["class_labels"])
        return self.y_train.shape[1]

    @property
    def preprocessor(self) -> Preprocessor:
        return preprocessor_of(self.meta)

    @property
    def is_recipe(self) -> bool:
        """The seed's synthetic data: trained with the recipe's exact settings."""
        return self.meta.get("source", {}).get("generator") in RECIPE_GENERATORS

    @property
    def n_val(self) -> int:
        return 0 if self.X_val is None else len(self.X_val)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")


def preprocessor_of(meta: dict[str, Any]) -> Preprocessor:
    """The fitted steps of a data set or model folder, also of one written before they existed."""
    if "preprocess" in meta:
        return Preprocessor.from_json(meta["preprocess"])
    return Preprocessor.all_numeric(meta["feature_names"], meta["x_mean"], meta["x_scale"])


FINGERPRINT_CHUNKS, FINGERPRINT_CHUNK = 16, 1 << 20


def fingerprint(path: str | Path) -> str:
    """Size and a hash of 16 evenly spaced 1 MiB pieces (the whole file when smaller): a data
    file replaced by another of the same shape is told apart in milliseconds, whatever its size."""
    import hashlib

    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        if size <= FINGERPRINT_CHUNKS * FINGERPRINT_CHUNK:
            digest.update(fh.read())
        else:
            for i in range(FINGERPRINT_CHUNKS):
                fh.seek(i * (size - FINGERPRINT_CHUNK) // (FINGERPRINT_CHUNKS - 1))
                digest.update(fh.read(FINGERPRINT_CHUNK))
    return f"{size}:{digest.hexdigest()[:16]}"


def meta_path(npz_path: str | Path) -> Path:
    return Path(npz_path).with_suffix(".json")


def save_dataset(data: TabularData, npz_path: str | Path) -> None:
    save_npz(npz_path, **{f"{a}_{s}": getattr(data, f"{a}_{s}") for s in SPLITS for a in "Xy"})
    write_json(meta_path(npz_path), data.meta)


def load_dataset(npz_path: str | Path) -> TabularData:
    if Path(npz_path).suffix.lower() in (".csv", ".tsv", ".parquet", ".pq"):
        raise UserError(f"{npz_path} is a table, not a data set: run `python make_data.py --csv {npz_path} "
                        "--target COLUMN` first and pass the .npz it writes")
    arrays = load_npz(npz_path)
    missing = {"X_train", "y_train", "X_test", "y_test"} - arrays.keys()
    if missing:
        raise UserError(f"data file {npz_path} lacks {sorted(missing)}: regenerate it with make_data.py")
    meta = read_json(meta_path(npz_path), "data set description")
    X_val, y_val = arrays.get("X_val"), arrays.get("y_val")  # format 1 had no validation split
    data = TabularData(arrays["X_train"], arrays["y_train"], arrays["X_test"], arrays["y_test"], meta, X_val, y_val,
                       fingerprint(npz_path))
    check_dataset(data, npz_path)
    return data


def check_dataset(data: TabularData, path: str | Path) -> None:
    width = len(data.meta["feature_names"])
    for split in SPLITS:
        X, y = data.split(split)
        if X.ndim != 2 or X.shape[1] != width:
            raise UserError(f"{path}: X_{split} has shape {X.shape}, expected (rows, {width}): regenerate the data set")
        if len(X) != len(y):
            raise UserError(f"{path}: features and targets of the {split} split differ in length: "
                            "regenerate the data set")
    if len(data.X_train) == 0 or len(data.X_test) == 0:
        raise UserError(f"{path}: the training or test split is empty: use more rows")


def unscale_target(y_scaled: np.ndarray, meta: dict[str, Any]) -> np.ndarray:
    """Model outputs on the scaled target -> the original y scale."""
    return np.asarray(y_scaled, dtype=np.float64) * meta["y_scale"] + meta["y_mean"]
