"""make_data.py's data made in memory: the recipes' synthetic data and scikit-learn's data sets.

The recipes' data comes from `make_classification` and `make_regression`, called as the recipe
calls them; the shipped data sets from scikit-learn's loaders. Each becomes a RawTable of
numeric columns and a target; `split_and_preprocess` cuts train / validation / test with the
recipe's `train_test_split` (the documented case of common/data/splits.py's splitter) and fits
every statistic on the training split only, with the streamed path's functions, the training
split being one chunk. A user's file takes the streamed path (common/data/ingest.py).
scikit-learn is imported inside the functions that use it, so that neither training nor the
streamed path pays for it.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np

from common.config import MakeDataConfig, flag_name, recipe_value
from common.data.dataset import TabularData, dataset_meta
from common.data.preprocess import fit_categorical, fit_numeric
from common.data.roles import ColumnRole
from common.data.splits import SPLIT_CODES, Split, check_split_sizes, split_rows
from common.data.target import fit_target_scaling
from common.errors import UserError
from common.steps import Categories, Preprocessor, TargetStep

if TYPE_CHECKING:
    from sklearn.preprocessing import StandardScaler

FILE_STEMS = {"classification": "cls_data", "regression": "reg_data"}
SHIPPED = {  # name -> (scikit-learn loader, task)
    "iris": ("load_iris", "classification"),
    "wine": ("load_wine", "classification"),
    "breast_cancer": ("load_breast_cancer", "classification"),
    "digits": ("load_digits", "classification"),
    "diabetes": ("load_diabetes", "regression"),
}


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
    """A preprocessed data set, and the scalers the recipes keep as joblib files (None for other tables)."""

    data: TabularData
    x_scaler: StandardScaler | None
    y_scaler: StandardScaler | None


def resolve_make_data_config(cfg: MakeDataConfig) -> MakeDataConfig:
    """The synthetic recipe's sizes and its 80/20 split; a user's table keeps every labelled row
    for training unless --test-size asks for a test split."""
    test_size = cfg.test_size if cfg.test_size is not None else 0.0 if cfg.csv else 0.2
    if not cfg.csv and (cfg.scaling or cfg.target_transform != "auto"):
        raise UserError("--scaling and --target-transform shape a --csv table; the recipes and shipped data "
                        "sets keep their standard scaling and raw targets: drop them")
    table_flags = [flag_name(name) for name in ("target", "sep", "categorical", "numeric", "drop", "id", "date")
                   if getattr(cfg, name)]
    if not cfg.csv and table_flags:  # else the recipe's data is made, the flags unread, without a word
        own = "" if cfg.dataset else " (without --csv, the recipe makes its own data)"
        raise UserError(f"{', '.join(table_flags)} {'is' if len(table_flags) == 1 else 'are'} for a table of yours: "
                        f"give it with --csv FILE{own}")
    scaling = cfg.scaling or ("quantile" if cfg.csv else "standard")
    if cfg.csv or cfg.dataset:
        resolved = dataclasses.replace(cfg, test_size=test_size, scaling=scaling)
    else:
        task = cfg.task or "classification"
        sizes = {name: recipe_value(task, name) for name in ("n_samples", "n_features", "n_informative")
                 if getattr(cfg, name) is None}
        resolved = dataclasses.replace(cfg, task=task, test_size=test_size, scaling=scaling, **sizes)
        informative, features = resolved.n_informative, resolved.n_features
        assert informative is not None and features is not None, "the recipe's values fill them"
        if informative > features:  # make_regression would take fewer without a word (make_classification refuses)
            raise UserError(f"--n-informative {informative} is more than the {features} feature columns: lower it, "
                            "or raise --n-features")
    assert resolved.test_size is not None
    check_split_sizes(resolved.test_size, resolved.val_size)  # before a pass over a large file, not after
    return resolved


def generate(cfg: MakeDataConfig) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Raw X, y and the generator's description, exactly as the recipe calls sklearn."""
    from sklearn import datasets

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
    settings = ("out_dir", "csv", "target", "dataset", "sep", "categorical", "numeric", "drop", "id", "date")
    source.update({k: v for k, v in vars(cfg).items() if k not in settings})
    return RawTable.from_matrix(X, [f"x{i}" for i in range(X.shape[1])], y, cfg.task, labels, source,
                                FILE_STEMS[cfg.task])


def shipped_table(name: str, task: str | None) -> RawTable:
    from sklearn import datasets

    loader_name, own_task = SHIPPED[name]
    loader = getattr(datasets, loader_name)
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


def split_table(table: RawTable, test_size: float, val_size: float, seed: int) -> Split:
    """The recipe's train_test_split cut, the documented case of common/data/splits.py's splitter."""
    return split_rows(len(table.y), table.y, table.class_labels, test_size, val_size, seed, as_train_test_split=True)


def fit_preprocessor(table: RawTable, train: np.ndarray, min_level_rows: int, max_levels: int) -> Preprocessor:
    """The streamed path's fitting (common/data/ingest.py), the training rows in memory being one
    chunk; standard scaling, as the recipes and shipped data sets keep (--scaling is for --csv)."""
    numeric = [fit_numeric(name, values[train], [values[train]]) for name, values in table.numeric.items()]
    categorical = [fit_categorical(name, column.values, [column.index[train]], min_level_rows, max_levels)
                   for name, column in table.text.items()]
    return Preprocessor(numeric, categorical)


def split_and_preprocess(table: RawTable, cfg: MakeDataConfig) -> ScaledData:
    """Split, fit every statistic on the training split only (no information leaks from the
    validation or test rows), and turn each split into the model's inputs."""
    from sklearn.preprocessing import StandardScaler

    assert cfg.test_size is not None, "resolve_make_data_config sets it"
    split = split_table(table, cfg.test_size, cfg.val_size, cfg.seed)
    parts = {name: split.rows(name) for name in SPLIT_CODES}
    pre = fit_preprocessor(table, parts["train"], cfg.min_level_rows, cfg.max_levels)
    regression = table.task == "regression"
    target = TargetStep("none", *fit_target_scaling([table.y[parts["train"]]])) if regression else None

    def inputs(rows: np.ndarray) -> np.ndarray:
        return pre.transform(lambda n: table.numeric[n][rows], lambda n: table.text[n].take(rows), len(rows))

    def targets(rows: np.ndarray) -> np.ndarray:
        if target is None:
            return table.y[rows].astype(np.int64)
        return target.forward(table.y[rows]).reshape(-1, 1).astype(np.float32)

    # Only the recipes keep their scalers as joblib files (make_data.py); no other table needs one.
    recipe = table.source.get("generator") is not None
    x_scaler = StandardScaler().fit(np.stack(list(table.numeric.values()), 1)[parts["train"]]) if recipe else None
    y_scaler = StandardScaler().fit(table.y[parts["train"]].reshape(-1, 1)) if recipe and regression else None
    meta = dataset_meta(table.task, pre, table.class_labels, target, {k: len(v) for k, v in parts.items()},
                        table.roles, {**table.source, "seed": cfg.seed, "test_size": cfg.test_size,
                                      "val_size": cfg.val_size})
    data = TabularData(inputs(parts["train"]), targets(parts["train"]), inputs(parts["test"]),
                       targets(parts["test"]), meta, inputs(parts["val"]), targets(parts["val"]))
    return ScaledData(data, x_scaler, y_scaler)
