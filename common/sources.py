"""Where make_data.py's rows come from, and how every table is split and preprocessed.

Rows come from a user's CSV or Parquet file (common/table.py), the recipes' synthetic data
(`make_classification`, `make_regression`, called as the recipe calls them) or the data sets
scikit-learn ships. Each becomes a RawTable of numeric and categorical columns and a target;
`split_and_preprocess` cuts train / validation / test and fits every statistic on the
training split only. scikit-learn is imported here and in no module that training needs.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import datasets, model_selection
from sklearn.preprocessing import StandardScaler

from common.config import MakeDataConfig, recipe_value
from common.dataset import FORMAT_VERSION, TabularData
from common.errors import UserError
from common.preprocess import Categories, Preprocessor, fit_categorical, fit_numeric
from common.table import (
    ColumnRole,
    RoleOverrides,
    column_looks_numeric,
    decimal_of,
    infer_roles,
    numeric_values,
    read_table,
    text_values,
)

FILE_STEMS = {"classification": "cls_data", "regression": "reg_data"}
SHIPPED = {  # name -> (loader, task)
    "iris": (datasets.load_iris, "classification"),
    "wine": (datasets.load_wine, "classification"),
    "breast_cancer": (datasets.load_breast_cancer, "classification"),
    "digits": (datasets.load_digits, "classification"),
    "diabetes": (datasets.load_diabetes, "regression"),
}
MAX_CLASSES_FROM_INTEGERS = 20  # a numeric target with at most this many integer values is taken as classes


@dataclasses.dataclass
class RawTable:
    """A table's feature columns and target before the split, and where they came from."""

    numeric: dict[str, np.ndarray]           # float64, NaN for blanks
    text: dict[str, Categories]              # categorical columns
    y: np.ndarray
    task: str
    class_labels: list[Any] | None
    source: dict[str, Any]
    stem: str
    roles: list[ColumnRole]

    @classmethod
    def from_matrix(cls, X: np.ndarray, names: list[str], y: np.ndarray, task: str, labels: list[Any] | None,
                    source: dict[str, Any], stem: str) -> RawTable:
        roles = [ColumnRole(n, "numeric", "double", 0, "numbers") for n in names]
        return cls({n: X[:, i].astype(np.float64) for i, n in enumerate(names)}, {}, y, task, labels, source, stem,
                   roles)


@dataclasses.dataclass
class ScaledData:
    """A preprocessed data set, and the scalers the recipes keep (x_scaler: the recipes' alone)."""

    data: TabularData
    x_scaler: StandardScaler | None
    y_scaler: StandardScaler | None


def resolve_make_data_config(cfg: MakeDataConfig) -> MakeDataConfig:
    """The synthetic recipe's sizes, and its 80/20 split without validation rows unless asked."""
    for name in ("max_levels", "min_level_rows"):
        if getattr(cfg, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(cfg, name)}")
    if cfg.csv or cfg.dataset:
        return dataclasses.replace(cfg, val_size=0.1 if cfg.val_size is None else cfg.val_size)
    task = cfg.task or "classification"
    sizes = {name: recipe_value(task, name) for name in ("n_samples", "n_features", "n_informative")
             if getattr(cfg, name) is None}
    return dataclasses.replace(cfg, task=task, val_size=0.0 if cfg.val_size is None else cfg.val_size, **sizes)


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
    settings = ("out_dir", "csv", "target", "dataset", "sep", "categorical", "numeric", "drop", "id")
    source.update({k: v for k, v in vars(cfg).items() if k not in settings})
    return RawTable.from_matrix(X, [f"x{i}" for i in range(X.shape[1])], y, cfg.task, labels, source,
                                FILE_STEMS[cfg.task])


def shipped_table(name: str, task: str | None) -> RawTable:
    loader, own_task = SHIPPED[name]
    if task and task != own_task:
        raise UserError(f"--dataset {name} is a {own_task} data set: drop --task {task}")
    bunch = loader()
    names = [str(n) for n in getattr(bunch, "feature_names", [f"x{i}" for i in range(bunch.data.shape[1])])]
    if own_task == "regression":
        return RawTable.from_matrix(bunch.data, names, bunch.target.astype(np.float64), own_task, None,
                                    {"dataset": name}, name)
    labels = [str(n) for n in getattr(bunch, "target_names", np.unique(bunch.target))]
    return RawTable.from_matrix(bunch.data, names, bunch.target.astype(np.int64), own_task, labels,
                                {"dataset": name}, name)


def file_table(cfg: MakeDataConfig) -> RawTable:
    """A user's CSV or Parquet file: roles, then the feature columns and the target."""
    import pyarrow.compute as pc

    assert cfg.csv is not None
    table = read_table(cfg.csv, cfg.sep)
    if not cfg.target:
        raise UserError(f"--csv needs --target: one of {table.column_names}")
    if cfg.target not in table.column_names:
        raise UserError(f"{cfg.csv} has no target column '{cfg.target}': choose --target from {table.column_names}")
    roles = infer_roles(table, cfg.target, RoleOverrides(cfg.categorical, cfg.numeric, cfg.drop, cfg.id))
    categorical = [r.name for r in roles if r.role == "categorical"]
    # The categorical columns once more, as the text in the file, which is how infer.py reads them.
    as_text = read_table(cfg.csv, cfg.sep, text_columns=categorical, columns=categorical) if categorical else table
    decimal = decimal_of(table)
    keep = pc.is_valid(table.column(cfg.target)).to_numpy(zero_copy_only=False)
    if not keep.any():
        raise UserError(f"{cfg.csv}: target column '{cfg.target}' is empty: choose another --target")
    task, y, labels = target_values(table.column(cfg.target), cfg.target, cfg.csv, cfg.task, keep, decimal)
    rows = slice(None) if keep.all() else np.flatnonzero(keep)  # a slice keeps views, not copies
    numeric = {r.name: numeric_values(table.column(r.name), r.name, cfg.csv, decimal)[rows]
               for r in roles if r.role == "numeric"}
    text = {name: text_values(as_text.column(name)).take(rows) for name in categorical}
    if not numeric and not text:
        raise UserError(f"{cfg.csv} has no feature columns besides '{cfg.target}' (roles: "
                        f"{ {r.name: r.role for r in roles} }): name some with --numeric or --categorical")
    source = {"csv": str(Path(cfg.csv).resolve()), "target": cfg.target, "rows_without_target": int((~keep).sum()),
              "ids": [r.name for r in roles if r.role == "id"],
              "dropped_columns": [r.name for r in roles if r.role == "dropped"]}
    return RawTable(numeric, text, y, task, labels, source, Path(cfg.csv).stem, roles)


def target_values(column: Any, name: str, path: str, task: str | None, keep: np.ndarray,
                  decimal: str = ".") -> tuple[str, np.ndarray, list[Any] | None]:
    """(task, y, class labels) of the rows that have a target. Text or true/false labels, or a few
    integer values, make a classification; other numbers (written as text too) a regression."""
    import pyarrow as pa

    kind = column.type
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind) or (
        pa.types.is_string(kind) and task != "classification"
        and column_looks_numeric(column, decimal))
    values = numeric_values(column, name, path, decimal)[keep] if numeric else None
    if task is None:
        few = values is not None and len(np.unique(values)) <= MAX_CLASSES_FROM_INTEGERS \
            and bool(np.all(values == np.round(values)))
        task = "classification" if values is None or few else "regression"
    if task == "regression":
        if values is None:
            values = numeric_values(column, name, path, decimal)[keep]
        if len(np.unique(values)) < 2:
            raise UserError(f"{path}: target column '{name}' holds one value only: there is nothing to learn")
        return task, values, None
    if values is None:
        categories = text_values(column).take(np.flatnonzero(keep))
        labels = np.asarray(categories.values, dtype=object)[categories.index]
    else:
        labels = values
    y, class_labels = encode_labels(labels)
    if len(class_labels) < 2:
        raise UserError(f"{path}: target column '{name}' holds one class only ({class_labels[0]!r}): "
                        "there is nothing to learn")
    return task, y, class_labels


def encode_labels(values: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """Labels -> 0..K-1, and the original labels in that order (ints stay ints in the JSON)."""
    labels, y = np.unique(values, return_inverse=True)
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
        labels = labels.astype(np.int64)
    return y.astype(np.int64), labels.tolist()


def check_splittable(table: RawTable, test_size: float, val_size: float) -> None:
    """All three splits get rows; for classification every class can be stratified."""
    if not 0.0 < test_size < 1.0:
        raise UserError(f"--test-size must lie strictly between 0 and 1, got {test_size}")
    if not 0.0 <= val_size < 1.0 - test_size:
        raise UserError(f"--val-size must lie in [0, 1 - --test-size), got {val_size}")
    n, parts = len(table.y), 3 if val_size else 2
    n_test = int(np.ceil(n * test_size))
    n_val = int(np.ceil((n - n_test) * val_size / (1 - test_size))) if val_size else 0
    if n < parts or n_test < 1 or n - n_test - n_val < 1 or (val_size and n_val < 1):
        raise UserError(f"{n} row(s) cannot be split into training, validation and test rows: add rows")
    if table.task != "classification":
        return
    labels = table.class_labels or []
    counts = np.bincount(table.y, minlength=len(labels))
    rare = [labels[k] for k in np.flatnonzero(counts < parts)]
    if rare:
        shown = ", ".join(map(repr, rare[:10])) + (f" and {len(rare) - 10} more" if len(rare) > 10 else "")
        raise UserError(f"{len(rare)} class(es) have fewer than {parts} rows ({shown}); a stratified split needs "
                        f"{parts}: drop them, add rows, or pass --task regression if the target is a number")
    sizes = {"training": n - n_test - n_val, "test": n_test, **({"validation": n_val} if val_size else {})}
    short = {name: rows for name, rows in sizes.items() if rows < len(labels)}
    if short:
        raise UserError(f"the {', '.join(short)} split(s) would get {min(short.values())} rows, too few to hold all "
                        f"{len(labels)} classes: change --test-size / --val-size, or add rows")


def split_rows(table: RawTable, test_size: float, val_size: float, seed: int) -> dict[str, np.ndarray]:
    """Row indices of each split; the test cut is the recipe's train_test_split call."""
    check_splittable(table, test_size, val_size)
    rows = np.arange(len(table.y))
    stratify = table.y if table.task == "classification" else None
    try:
        rest, test = model_selection.train_test_split(rows, test_size=test_size, random_state=seed,
                                                      stratify=stratify)
        if not val_size:
            return {"train": rest, "val": rows[:0], "test": test}
        train, val = model_selection.train_test_split(
            rest, test_size=val_size / (1 - test_size), random_state=seed,
            stratify=None if stratify is None else stratify[rest])
    except ValueError as err:  # a case the checks above did not foresee: still one line
        raise UserError(f"cannot split {len(rows)} rows ({err}): change --test-size / --val-size, or add rows") \
            from None
    return {"train": train, "val": val, "test": test}


def fit_preprocessor(table: RawTable, train: np.ndarray, min_level_rows: int, max_levels: int) -> Preprocessor:
    numeric = [fit_numeric(name, values[train]) for name, values in table.numeric.items()]
    categorical = [fit_categorical(name, column.take(train), min_level_rows, max_levels)
                   for name, column in table.text.items()]
    return Preprocessor(numeric, categorical)


def split_and_preprocess(table: RawTable, cfg: MakeDataConfig) -> ScaledData:
    """Split, fit every statistic on the training split only (no information leaks from the
    validation or test rows), and turn each split into the model's inputs."""
    assert cfg.val_size is not None, "resolve_make_data_config sets it"
    parts = split_rows(table, cfg.test_size, cfg.val_size, cfg.seed)
    pre = fit_preprocessor(table, parts["train"], cfg.min_level_rows, cfg.max_levels)
    y_scaler = StandardScaler().fit(table.y[parts["train"]].reshape(-1, 1)) if table.task == "regression" else None

    def inputs(rows: np.ndarray) -> np.ndarray:
        return pre.transform(lambda n: table.numeric[n][rows], lambda n: table.text[n].take(rows), len(rows))

    def targets(rows: np.ndarray) -> np.ndarray:
        if y_scaler is None:
            return table.y[rows].astype(np.int64)
        y = table.y[rows].reshape(-1, 1)
        return (y_scaler.transform(y) if len(y) else y).astype(np.float32)

    # Only the recipes keep their scaler as a joblib file (make_data.py); no other table needs one.
    recipe = table.source.get("generator") is not None
    x_scaler = StandardScaler().fit(np.stack(list(table.numeric.values()), 1)[parts["train"]]) if recipe else None
    meta: dict[str, Any] = {
        "format": FORMAT_VERSION, "task": table.task, "feature_names": pre.input_names,
        "class_labels": table.class_labels, "preprocess": pre.to_json(),
        "y_mean": None if y_scaler is None else float(y_scaler.mean_[0]),
        "y_scale": None if y_scaler is None else float(y_scaler.scale_[0]),
        **{f"n_{name}": int(len(rows)) for name, rows in parts.items()},
        "roles": [dataclasses.asdict(r) for r in table.roles],
        "source": {**table.source, "seed": cfg.seed, "test_size": cfg.test_size, "val_size": cfg.val_size},
    }
    data = TabularData(inputs(parts["train"]), targets(parts["train"]), inputs(parts["test"]),
                       targets(parts["test"]), meta, inputs(parts["val"]), targets(parts["val"]))
    return ScaledData(data, x_scaler, y_scaler)
