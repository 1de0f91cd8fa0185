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

import contextlib
import dataclasses
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_array, check_consistent_length, column_or_1d
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from common.api import Predictor, fit
from common.data.columns import NULL_VALUES
from common.decision import decided_classes
from common.errors import UserError, warn_at_caller

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

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # blanks are the model's business: filled and flagged as in training
        tags.input_tags.string = True     # text columns of a DataFrame or an object array are categorical
        return tags

    def _table(self, X: Any) -> Any:
        """X as a table of named columns: a DataFrame as it is, an array (checked as scikit-learn
        checks one: 2-d, no infinity, not sparse, not complex) as columns x0, x1, ..."""
        if hasattr(X, "columns") and hasattr(X, "iloc"):
            if not len(X):
                raise ValueError(f"Found array with 0 sample(s) (shape={X.shape}) while a minimum of 1 is required.")
            return X
        X = check_array(X, dtype=None, ensure_all_finite="allow-nan")
        return {f"x{i}": X[:, i] for i in range(X.shape[1])}

    def _fit_table(self, X: Any, y: np.ndarray) -> Predictor:
        import pyarrow as pa

        table = self._table(X)
        self.__dict__.pop("feature_names_in_", None)  # a refit forgets the names of the rows fitted before
        if hasattr(table, "columns"):
            if all(isinstance(c, str) for c in table.columns):  # as scikit-learn: names of text only
                self.feature_names_in_ = np.asarray(table.columns, dtype=object)
            table = pa.Table.from_pandas(table, preserve_index=False)
        else:
            table = pa.table(table)
        self._named_rows, self._columns = hasattr(self, "feature_names_in_"), table.column_names
        self.n_features_in_ = table.num_columns
        check_consistent_length(np.empty(table.num_rows), y)
        if table.num_rows < 2:
            raise ValueError(f"n_samples = {table.num_rows}: training needs at least 2 rows")
        table = table.append_column(TARGET, pa.array(y))
        settings = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "hidden": self.hidden,
                    "folds": self.folds, "periodic": self.periodic, "patience": self.patience,
                    "pictures": False, "importance_rows": 0, **(self.settings or {})}
        with tempfile.TemporaryDirectory(prefix="tabular-estimator-") as tmp, as_value_error():
            model = fit(table, TARGET, name="table", out_dir=str(Path(tmp) / "data"), ckpt_dir=str(Path(tmp) / "run"),
                        quiet=not self.verbose, task=self._task, seed=self.random_state, **settings)
        model.folder = None  # held in memory: its temporary folder is gone
        return model

    def _rows(self, X: Any) -> Any:
        check_is_fitted(self, "model_")
        table = self._table(X)
        width = len(table.columns) if hasattr(table, "columns") else len(table)
        if width != self.n_features_in_:
            raise ValueError(f"X has {width} features, but {type(self).__name__} is expecting "
                             f"{self.n_features_in_} features as input")
        named = hasattr(X, "columns") and all(isinstance(c, str) for c in X.columns)  # scikit-learn's rule
        if named and self._named_rows:
            return table  # by name, in any order
        if named != self._named_rows:  # taken by position, with scikit-learn's own warning
            fitted = "with" if self._named_rows else "without"
            warn_at_caller(f"X {'has' if named else 'does not have valid'} feature names, but {type(self).__name__} "
                           f"was fitted {fitted} feature names", UserWarning)
        columns = [table[c].to_numpy() for c in table.columns] if hasattr(table, "columns") else list(table.values())
        return dict(zip(self._columns, columns, strict=True))


def checked_y(y: Any, dtype: Any = None) -> np.ndarray:
    """y as scikit-learn wants it checked: given, finite, 1-d (a column is flattened with its warning)."""
    if y is None:
        raise ValueError("requires y to be passed, but the target y is None")
    return column_or_1d(check_array(y, ensure_2d=False, dtype=dtype), warn=True)


@contextlib.contextmanager
def as_value_error() -> Iterator[None]:
    """The suite's one-line errors as the ValueError scikit-learn's callers expect."""
    try:
        yield
    except UserError as err:
        raise ValueError(str(err)) from None


class TabularClassifier(ClassifierMixin, _TabularEstimator):
    """The suite's classifier as a scikit-learn estimator: `classes_` are y's distinct values,
    `predict_proba`'s columns in their order. With two classes `predict` may differ from the
    most probable class: it applies the decision threshold fitted for macro-F1 where one was
    kept (`model_.record.threshold`; `settings={"decision": "argmax"}` keeps the most probable)."""

    _task = "classification"

    def fit(self, X: Any, y: Any) -> TabularClassifier:
        y = checked_y(y)
        check_classification_targets(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError(f"y has {len(self.classes_)} class: a classifier needs at least 2")
        texts = [str(c) for c in self.classes_]
        if any(text in NULL_VALUES for text in texts):
            # A table's text column reads `NA`, `None` or `?` as a blank: a class spelled so (North
            # America's code) would lose its rows. Such labels travel as their index into classes_,
            # and the model in memory is given their text back.
            model = self._fit_table(X, np.searchsorted(self.classes_, y).astype(np.int64))
            self._order = np.asarray([int(label) for label in model.record.class_labels or []])
            model.record = dataclasses.replace(model.record, class_labels=[texts[i] for i in self._order])
        else:  # as text, which is what the run's own lines (verbose, errors) then name
            index = {text: i for i, text in enumerate(texts)}
            model = self._fit_table(X, np.asarray([str(v) for v in y], dtype=object))
            self._order = np.asarray([index[str(label)] for label in model.record.class_labels or []])
        self.model_ = model
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        rows = self._rows(X)
        with as_value_error():
            proba = self.model_.predict_proba(rows)
        out = np.zeros((len(proba), len(self.classes_)))
        out[:, self._order] = proba
        return out

    def predict(self, X: Any) -> np.ndarray:
        proba = self.predict_proba(X)  # first: it says where the estimator is not fitted
        # The model decides in its own class order (a two-class threshold is on its second class).
        return self.classes_[self._order[decided_classes(proba[:, self._order], self.model_.record.threshold)]]


class TabularRegressor(RegressorMixin, _TabularEstimator):
    """The suite's regression as a scikit-learn estimator."""

    _task = "regression"

    def fit(self, X: Any, y: Any) -> TabularRegressor:
        self.model_ = self._fit_table(X, checked_y(y, dtype=np.float64))
        return self

    def predict(self, X: Any) -> np.ndarray:
        rows = self._rows(X)
        with as_value_error():
            return np.asarray(self.model_.predict(rows), dtype=np.float64)
