"""Data sets on disk: generation as in the recipes, scaling, and the npz + JSON pair.

A data set is `<stem>.npz` (X_train, y_train, X_test, y_test, already scaled) plus
`<stem>.json`: the task, feature names, class labels and scaler statistics. The JSON
is what training and inference need to know, readable without pickle.
"""
from __future__ import annotations

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
    n_samples, n_features, n_informative = RECIPE_SIZES[cfg.task]
    return dataclasses.replace(
        cfg,
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
