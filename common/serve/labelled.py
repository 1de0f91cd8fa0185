"""New rows that carry their target: the model's figures on them, and which columns matter there.

Rows are scored as they are predicted, a batch at a time, so a labelled file of any size is
read once: a confusion matrix (true labels unseen in training become classes of their own,
never predicted) or the sums behind MAE, RMSE and R² on the original scale. Rows whose target is
blank are predicted, not scored, and counted. Permutation importance needs the rows in memory:
a seeded uniform sample of at most `sample_rows` labelled rows is kept as they stream by.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from common.data.columns import feature_type_advice, numeric_values, text_values
from common.data.dates import is_date_type, refuse_dates
from common.errors import UserError
from common.importance import DEFAULT_REPEATS, Importance, permutation_importance
from common.metrics import confusion_matrix, macro_f1, r2
from common.model_folder import ModelRecord
from common.steps import spelling_codes


class LabelledRows:
    """Figures summed over the batches of labelled rows, and a sample of them for importance."""

    def __init__(self, config: ModelRecord, target: str, source: str, sample_rows: int = 0, seed: int = 0):
        self.config, self.target, self.source = config, target, source
        self.classes = [str(label) for label in config.class_labels or []]
        self.unseen: list[str] = []        # true labels the model never saw, in order of appearance
        # A label in the spelling of another writer reads as that class (a 0/1 target written
        # 0.0/1.0 by pandas, a true/false one True/False by one and true/false by another), as
        # a categorical column's levels do (common/steps.spelling_codes).
        self.codes: dict[str | None, int] = spelling_codes(self.classes)
        self.confusion = np.zeros((0, 0), dtype=np.int64)
        self.sums = np.zeros(5)            # regression: rows, sum |e|, sum e^2, sum y, sum y^2
        self.blank = self.rows = 0
        self.sample_rows, self.rng = sample_rows, np.random.default_rng(seed)
        self.keys = np.zeros(0)
        self.X_kept: np.ndarray | None = None
        self.y_kept = np.zeros(0)

    def truth(self, column: Any, first_row: int, decimal: str) -> np.ndarray:
        """Class codes (unseen labels after the known ones; -1 blank) or values (NaN blank; a
        semicolon-separated file writes decimals with a comma, as its numeric columns do)."""
        if self.config.task == "regression":
            assert self.config.target is not None
            # dates read as seconds since 1970 (unless it trained on them so); a time or a duration
            # reads as seconds, as a target trained on one (--task regression) took them
            if not self.config.target.instants and is_date_type(column.type):
                refuse_dates(column.type, self.target, self.source)
            return numeric_values(column, self.target, self.source, decimal, first_row,
                                  grouped=self.config.target.thousands == ".")
        if feature_type_advice(column.type):  # bytes that are not UTF-8, read as binary
            raise UserError(f"{self.source}: column '{self.target}' holds {column.type} values, not labels: "
                            "save the file as UTF-8 text")
        categories = text_values(column)
        codes = self.codes
        for value in categories.values:
            if value not in codes:
                codes[value] = len(self.classes) + len(self.unseen)
                self.unseen.append(value)
        lookup = np.asarray([codes[v] for v in categories.values] + [-1], dtype=np.int64)
        return lookup[categories.index]

    def add(self, X: np.ndarray, column: Any, result: dict[str, np.ndarray], first_row: int = 0,
            decimal: str = ".") -> None:
        """A batch: its inputs, its target column and the model's predictions of it."""
        y = self.truth(column, first_row, decimal)
        labelled = ~np.isnan(y) if self.config.task == "regression" else y >= 0
        self.blank += int((~labelled).sum())
        self.rows += int(labelled.sum())
        if self.config.task == "classification":
            self._count(y[labelled], result["class"][labelled])
        else:
            err = result["prediction"][labelled] - y[labelled]
            self.sums += [len(err), np.abs(err).sum(), err @ err, y[labelled].sum(), y[labelled] @ y[labelled]]
        if self.sample_rows:
            self._sample(X[labelled], y[labelled])

    def _count(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        size = len(self.classes) + len(self.unseen)
        grown = confusion_matrix(truth, predicted, size)
        grown[:len(self.confusion), :len(self.confusion)] += self.confusion
        self.confusion = grown

    def _sample(self, X: np.ndarray, y: np.ndarray) -> None:
        """The `sample_rows` rows of smallest random key so far: a uniform sample of all rows seen."""
        keys = np.concatenate([self.keys, self.rng.random(len(y))])
        X_all = X if self.X_kept is None else np.concatenate([self.X_kept, X])
        y_all = np.concatenate([self.y_kept, y])
        chosen = np.sort(np.argsort(keys, kind="stable")[:self.sample_rows])
        self.keys, self.X_kept, self.y_kept = keys[chosen], X_all[chosen], y_all[chosen]

    def figures(self) -> dict[str, Any]:
        """The figures on the labelled rows (as infer.py reports a test split's), and the counts."""
        from common.metrics import classification_report, regression_report

        if not self.rows:
            raise UserError(f"{self.source}: every row's '{self.target}' is blank: nothing to score")
        counts = {"rows_scored": self.rows, "rows_without_target": self.blank}
        if self.config.task == "regression":
            return {**regression_report(self.sums), **counts}
        # the model's labels as its predictions give them (whole numbers stay numbers), then the unseen as read
        return {**classification_report(self.confusion), "labels": list(self.config.class_labels or []) + self.unseen,
                "unseen_labels": list(self.unseen), **counts}

    def importance(self, predict: Callable[[np.ndarray], dict[str, np.ndarray]], repeats: int = DEFAULT_REPEATS,
                   seed: int = 0) -> Importance:
        """Each column's permutation importance on the kept rows; `predict(X)` gives the model's
        prediction dict for preprocessed rows."""
        if self.X_kept is None or not len(self.y_kept):
            raise UserError(f"{self.source}: no row with a '{self.target}' to measure importance on")
        y = self.y_kept
        if self.config.task == "classification":
            classes = len(self.classes) + len(self.unseen)
            truth = y.astype(np.int64)

            def score(X: np.ndarray) -> float:
                return macro_f1(predict(X)["class"], truth, classes)
            figure = "f1_macro"
        else:
            def score(X: np.ndarray) -> float:
                return r2(predict(X)["prediction"], y)
            figure = "r2"
        return permutation_importance(score, self.X_kept, self.config.preprocess.column_inputs(), figure, repeats,
                                      seed, "the input")
