"""Where make_data.py's rows come from besides users' files, and how every table is split and scaled.

The recipes' synthetic data (`make_classification`, `make_regression`, called as the recipe
calls them), the data sets scikit-learn ships, the 80/20 split and the scalers fitted on the
training split only. scikit-learn is imported here and in no module that training needs.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from sklearn import datasets, model_selection
from sklearn.preprocessing import StandardScaler

from common.config import MakeDataConfig, recipe_value
from common.dataset import FORMAT_VERSION, TabularData
from common.errors import UserError
from common.tables import RawTable

FILE_STEMS = {"classification": "cls_data", "regression": "reg_data"}
SHIPPED = {  # name -> (loader, task)
    "iris": (datasets.load_iris, "classification"),
    "wine": (datasets.load_wine, "classification"),
    "breast_cancer": (datasets.load_breast_cancer, "classification"),
    "digits": (datasets.load_digits, "classification"),
    "diabetes": (datasets.load_diabetes, "regression"),
}


@dataclasses.dataclass
class ScaledData:
    """A scaled data set and the scalers fitted on its training split."""

    data: TabularData
    x_scaler: StandardScaler
    y_scaler: StandardScaler | None


def resolve_make_data_config(cfg: MakeDataConfig) -> MakeDataConfig:
    """Fill the synthetic recipe's sizes; a CSV or shipped data set keeps its own task (None here)."""
    if cfg.csv or cfg.dataset:
        return cfg
    task = cfg.task or "classification"
    sizes = {name: recipe_value(task, name) for name in ("n_samples", "n_features", "n_informative")
             if getattr(cfg, name) is None}
    return dataclasses.replace(cfg, task=task, **sizes)


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


def synthetic_table(cfg: MakeDataConfig) -> RawTable:
    assert cfg.task is not None, "resolve_make_data_config sets the task"
    X, y, source = generate(cfg)
    labels = np.unique(y).tolist() if cfg.task == "classification" else None
    source.update({k: v for k, v in vars(cfg).items() if k not in ("out_dir", "csv", "target", "dataset")})
    return RawTable(X, y, cfg.task, [f"x{i}" for i in range(X.shape[1])], labels, source, FILE_STEMS[cfg.task])


def shipped_table(name: str, task: str | None) -> RawTable:
    loader, own_task = SHIPPED[name]
    if task and task != own_task:
        raise UserError(f"--dataset {name} is a {own_task} data set: drop --task {task}")
    bunch = loader()
    names = [str(n) for n in getattr(bunch, "feature_names", [f"x{i}" for i in range(bunch.data.shape[1])])]
    source = {"dataset": name}
    if own_task == "regression":
        return RawTable(bunch.data, bunch.target.astype(np.float64), own_task, names, None, source, name)
    labels = [str(n) for n in getattr(bunch, "target_names", np.unique(bunch.target))]
    return RawTable(bunch.data, bunch.target.astype(np.int64), own_task, names, labels, source, name)


def check_splittable(table: RawTable, test_size: float) -> None:
    """Both splits get rows (every task); for classification every class can be stratified."""
    if not 0.0 < test_size < 1.0:
        raise UserError(f"--test-size must lie strictly between 0 and 1, got {test_size}")
    n = len(table.y)
    n_test = int(np.ceil(n * test_size))
    if n < 2 or n_test < 1 or n - n_test < 1:
        raise UserError(f"{n} row(s) cannot be split into training and test rows: add rows")
    if table.task != "classification":
        return
    labels = table.class_labels or []
    counts = np.bincount(table.y, minlength=len(labels))
    rare = [labels[k] for k in np.flatnonzero(counts < 2)]
    if rare:
        raise UserError(f"class(es) {rare} have fewer than 2 rows; a stratified split needs 2: drop them or add rows")
    if n_test < len(labels):
        raise UserError(f"{n_test} test rows cannot hold all {len(labels)} classes: raise --test-size")


def split_and_scale(table: RawTable, test_size: float, seed: int) -> ScaledData:
    """80/20 by default, stratified for classification; scalers fitted on the training split only,
    so no information leaks from the test rows."""
    check_splittable(table, test_size)
    stratify = table.y if table.task == "classification" else None
    X_train, X_test, y_train, y_test = model_selection.train_test_split(
        table.X, table.y, test_size=test_size, random_state=seed, stratify=stratify)
    x_scaler = StandardScaler().fit(X_train)
    y_scaler = StandardScaler().fit(y_train.reshape(-1, 1)) if table.task == "regression" else None
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION, "task": table.task, "feature_names": table.feature_names,
        "class_labels": table.class_labels,
        "x_mean": x_scaler.mean_.tolist(), "x_scale": x_scaler.scale_.tolist(),
        "y_mean": None if y_scaler is None else float(y_scaler.mean_[0]),
        "y_scale": None if y_scaler is None else float(y_scaler.scale_[0]),
        "n_train": int(len(X_train)), "n_test": int(len(X_test)),
        "source": {**table.source, "seed": seed, "test_size": test_size},
    }
    if y_scaler is None:
        y_tr, y_te = y_train.astype(np.int64), y_test.astype(np.int64)
    else:
        y_tr = y_scaler.transform(y_train.reshape(-1, 1)).astype(np.float32)
        y_te = y_scaler.transform(y_test.reshape(-1, 1)).astype(np.float32)
    data = TabularData(X_train=x_scaler.transform(X_train).astype(np.float32), y_train=y_tr,
                       X_test=x_scaler.transform(X_test).astype(np.float32), y_test=y_te, meta=meta)
    return ScaledData(data, x_scaler, y_scaler)
