"""Which columns matter: permutation importance per original column.

A column's importance is the drop in the run's own figure (macro-F1 for classes, R² for a
regression) when that column's values are shuffled among the rows, the mean and spread over a
few repeats. A column is what the user's table holds: a numeric column moves with its
`_missing` input, a categorical column is its codes. The model's inputs are preprocessed row by
row, so shuffling a column's inputs is shuffling the column itself.

The shuffles are scikit-learn's (`sklearn.inspection.permutation_importance`): one seed drawn
from `seed`, and each column shuffled from a fresh `RandomState` of that seed, each repeat
shuffling the previous one's order again. The same model, rows and seed therefore give the
same figures here and there (tests/test_importance.py checks it). numpy only: no scikit-learn
is imported on the training path.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_REPEATS = 5      # shuffles per column asked for (infer.py --importance, the API): scikit-learn's n_repeats
LABELLED_ROWS = 10_000   # labelled rows they are measured on, at most (a uniform sample of more)
RUN_REPEATS = 3          # the run's own, at the end of training: bounded, as every run pays for it
RUN_ROWS = 5_000


@dataclasses.dataclass
class ColumnImportance:
    column: str
    mean: float                 # the figure's mean drop over the repeats
    std: float
    drops: list[float]          # one per repeat

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Importance:
    """The figure on the rows as they are, and each column's drop, most important first."""

    figure: str                 # f1_macro or r2
    baseline: float
    columns: list[ColumnImportance]
    rows: int                   # rows scored
    repeats: int
    seed: int
    seconds: float
    scored_on: str              # which rows: "out of fold", "validation", "test", "the input"

    def to_json(self) -> dict[str, Any]:
        return {"figure": self.figure, "baseline": self.baseline, "rows": self.rows, "repeats": self.repeats,
                "seed": self.seed, "seconds": self.seconds, "scored_on": self.scored_on,
                "columns": [c.to_json() for c in self.columns]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Importance:
        columns = [ColumnImportance(c["column"], c["mean"], c["std"], list(c["drops"])) for c in obj["columns"]]
        return cls(obj["figure"], obj["baseline"], columns, obj["rows"], obj["repeats"], obj["seed"],
                   obj["seconds"], obj["scored_on"])


def shuffle_seed(seed: int) -> int:
    """The one seed every column's shuffles start from, drawn as scikit-learn draws it."""
    return int(np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1))


def permutation_importance(score: Callable[[np.ndarray], float], X: np.ndarray, groups: Mapping[str, Sequence[int]],
                           figure: str, repeats: int = DEFAULT_REPEATS, seed: int = 0,
                           scored_on: str = "the input") -> Importance:
    """Each group of input columns (an original column) shuffled `repeats` times; `score(X)` is
    the figure of the model on rows X (higher is better)."""
    started = time.perf_counter()
    X = np.asarray(X)
    baseline = score(X)
    common_seed = shuffle_seed(seed)
    columns = []
    for name, inputs in groups.items():
        rng = np.random.RandomState(common_seed)
        permuted = X.copy()
        order = np.arange(len(X))
        drops = []
        for _ in range(repeats):
            rng.shuffle(order)
            permuted[:, inputs] = permuted[order][:, inputs]
            drops.append(baseline - score(permuted))
        columns.append(ColumnImportance(name, float(np.mean(drops)), float(np.std(drops)), [float(d) for d in drops]))
    columns.sort(key=lambda c: -c.mean)
    return Importance(figure, float(baseline), columns, len(X), repeats, seed,
                      round(time.perf_counter() - started, 3), scored_on)
