"""scikit-learn estimators over the suite: `TabularClassifier` and `TabularRegressor`.

    from sklearn.model_selection import cross_val_score
    from common.api import TabularClassifier
    cross_val_score(TabularClassifier(), X, y, cv=3)

`fit(X, y)` hands the rows to `common.api.fit` (make_data.py's ingestion and train.py's run, with
the table defaults) in a temporary folder and keeps the trained model in memory; `predict` and
`predict_proba` go through `Predictor`. X is a pandas DataFrame (its columns keep their names and
types: text columns become categorical) or a 2-d array (columns x0, x1, ...); y is any 1-d
array. The parameters are the settings worth tuning; `settings` passes any other flag of the two
scripts. Nothing is printed unless `verbose`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from common.api import Predictor, fit

TARGET = "__target__"  # the target's column name in the table handed to fit(): never a user's column


class _TabularEstimator(BaseEstimator):
    _task = ""

    def __init__(self, epochs: int | None = None, batch_size: int | None = None, lr: float | None = None,
                 hidden: list[int] | None = None, folds: int | None = None, periodic: int | None = None,
                 patience: int | None = None, random_state: int = 42, verbose: bool = False,
                 settings: dict[str, Any] | None = None):
        self.epochs, self.batch_size, self.lr, self.hidden = epochs, batch_size, lr, hidden
        self.folds, self.periodic, self.patience = folds, periodic, patience
        self.random_state, self.verbose, self.settings = random_state, verbose, settings

    def _table(self, X: Any) -> dict[str, Any] | Any:
        """X as a table of named columns (a DataFrame as it is)."""
        if hasattr(X, "columns") and hasattr(X, "iloc"):
            return X
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"Expected a 2-d array of rows, got shape {X.shape}")
        return {f"x{i}": X[:, i] for i in range(X.shape[1])}

    def _fit_table(self, X: Any, y: np.ndarray) -> Predictor:
        import pyarrow as pa

        table = self._table(X)
        if hasattr(table, "columns"):
            self.feature_names_in_ = np.asarray([str(c) for c in table.columns], dtype=object)
            table = pa.Table.from_pandas(table, preserve_index=False)
        else:
            table = pa.table(table)
        self.n_features_in_ = table.num_columns
        if len(y) != table.num_rows:
            raise ValueError(f"X has {table.num_rows} rows but y has {len(y)}")
        table = table.append_column(TARGET, pa.array(y))
        settings = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "hidden": self.hidden,
                    "folds": self.folds, "periodic": self.periodic, "patience": self.patience,
                    "pictures": False, "importance_rows": 0, **(self.settings or {})}
        with tempfile.TemporaryDirectory(prefix="tabular-estimator-") as tmp:
            return fit(table, TARGET, name="table", out_dir=str(Path(tmp) / "data"), ckpt_dir=str(Path(tmp) / "run"),
                       quiet=not self.verbose, task=self._task, seed=self.random_state, **settings)

    def _check_rows(self, X: Any) -> Any:
        check_is_fitted(self, "model_")
        table = self._table(X)
        width = len(table.columns) if hasattr(table, "columns") else len(table)
        if width != self.n_features_in_:
            raise ValueError(f"X has {width} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        return table


class TabularClassifier(ClassifierMixin, _TabularEstimator):
    """The suite's classifier as a scikit-learn estimator: `classes_` are y's distinct values,
    `predict_proba`'s columns in their order."""

    _task = "classification"

    def fit(self, X: Any, y: Any) -> TabularClassifier:
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"y has {len(self.classes_)} class: a classifier needs at least 2")
        as_text = {str(c): i for i, c in enumerate(self.classes_)}  # labels travel as text, come back as y's values
        self.model_ = self._fit_table(X, np.asarray([str(v) for v in y], dtype=object))
        self._order = np.asarray([as_text[str(label)] for label in self.model_.classes or []])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        proba = self.model_.predict_proba(self._check_rows(X))
        out = np.zeros((len(proba), len(self.classes_)))
        out[:, self._order] = proba
        return out

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class TabularRegressor(RegressorMixin, _TabularEstimator):
    """The suite's regression as a scikit-learn estimator."""

    _task = "regression"

    def fit(self, X: Any, y: Any) -> TabularRegressor:
        self.model_ = self._fit_table(X, np.asarray(y, dtype=np.float64))
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.model_.predict(self._check_rows(X)), dtype=np.float64)
