"""The fitted steps between a table's columns and the model's inputs, fastai-style.

Fitted on the training split only, stored as plain JSON with the data set and the model, and
replayed identically at prediction time:

- FillMissing + Normalize (numeric): blanks take the training median; where the training split
  had any blank, a 0/1 `<name>_missing` input says which rows were filled; then each column is
  either standardised with the training mean and scale, or (`quantiles`, users' tables) mapped
  through its training quantiles onto a standard normal, as scikit-learn's QuantileTransformer
  with output_distribution="normal" does: a skewed column (incomes, counts, areas) or one with
  outliers then reaches the model spread evenly, the way a tree's splits see it (the indicators
  are left as 0/1).
- Categorify (categorical): the training split's levels with at least `min_rows` rows, at most
  `max_levels` of the most frequent, get codes 1..K; code 0 is every other value: unseen,
  rare, or blank where blanks were too rare to be a level of their own.

The model's input row is [scaled numeric columns, missing indicators, category codes]: codes
travel as float32 columns (exact below 2^24), so batching, sharding and evaluation handle one
tensor and the model alone tells the parts apart (common/model.py).
"""
from __future__ import annotations

import dataclasses
import functools
import statistics
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from common.model_folder import UNKNOWN_CODE

MISSING_SUFFIX = "_missing"


@dataclasses.dataclass
class Categories:
    """A categorical column, dictionary-encoded: each row's index into `values`, -1 for a blank.
    Fitting and coding then work on arrays, not on a Python string per row."""

    index: np.ndarray    # int64, one per row
    values: list[str]    # the distinct values

    @classmethod
    def from_list(cls, items: Sequence[str | None]) -> Categories:
        values: dict[str, int] = {}
        index = np.fromiter((-1 if v is None else values.setdefault(v, len(values)) for v in items),
                            dtype=np.int64, count=len(items))
        return cls(index, list(values))

    def take(self, rows: np.ndarray | slice) -> Categories:
        return Categories(self.index[rows], self.values)

    def __len__(self) -> int:
        return len(self.index)


@dataclasses.dataclass
class NumericStep:
    name: str
    median: float
    mean: float
    scale: float
    indicator: bool  # the training split had blanks: add a 0/1 input
    quantiles: list[float] | None = None  # training quantiles at evenly spaced levels: map onto a normal

    def scaled(self, filled: np.ndarray) -> np.ndarray:
        if self.quantiles is None:
            return (filled - self.mean) / self.scale
        return self.normal_scores(filled)

    @functools.cached_property
    def normal_scores(self) -> NormalScores:
        """Built once per step, not once per chunk of rows."""
        return NormalScores(np.asarray(self.quantiles, dtype=np.float64))


QUANTILE_BOUND = 1e-7  # QuantileTransformer's: levels 0 and 1 map to about -5.2 and +5.2, not infinity


class NormalScores:
    """Each value's level among the training quantiles, as a standard normal score. Where
    quantiles repeat (a column of few values), a value takes the middle of its levels, as
    QuantileTransformer averages the forward and backward interpolation: a 0/1 column with half
    its rows at 0 maps to about -0.67 and +0.67, not to the ends of the scale."""

    def __init__(self, quantiles: np.ndarray):
        self.quantiles = quantiles
        self.levels = np.linspace(0.0, 1.0, len(quantiles))
        self.scores = np.asarray([statistics.NormalDist().inv_cdf(p)
                                  for p in np.clip(self.levels, QUANTILE_BOUND, 1 - QUANTILE_BOUND)])
        self.ties = not np.all(np.diff(quantiles) > 0)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        if not self.ties:  # both directions agree, and one pass does it all
            return np.interp(values, self.quantiles, self.scores)
        q, levels = self.quantiles, self.levels
        level = 0.5 * (np.interp(values, q, levels) - np.interp(-values, -q[::-1], -levels[::-1]))
        return np.interp(level, levels, self.scores)


QUANTILE_SAMPLE = 100_000  # values a column's quantiles are taken from, at most (QuantileTransformer: 10,000)


def quantiles_of(sample: np.ndarray) -> list[float]:
    """The quantiles kept for a column, from a sample of its (filled) training values, evenly
    thinned to QUANTILE_SAMPLE: one per 30 rows, between 10 and 1,000 (TabM's choice;
    QuantileTransformer's default is 1,000)."""
    sample = sample[::-(-len(sample) // QUANTILE_SAMPLE)] if len(sample) > QUANTILE_SAMPLE else sample
    n = int(np.clip(len(sample) // 30, 10, 1000))
    return [float(q) for q in np.quantile(sample, np.linspace(0.0, 1.0, n))]


@dataclasses.dataclass
class CategoricalStep:
    name: str
    levels: list[str | None]  # code i + 1 for levels[i]; None is the blank level

    @property
    def cardinality(self) -> int:
        return len(self.levels) + 1  # with the reserved code 0

    def codes(self, column: Categories) -> np.ndarray:
        lookup = {level: i + 1 for i, level in enumerate(self.levels)}
        by_value = np.asarray([lookup.get(v, UNKNOWN_CODE) for v in column.values] + [lookup.get(None, UNKNOWN_CODE)],
                              dtype=np.float32)
        return by_value[column.index]  # index -1 (a blank) picks the last entry: the blank level's code


@dataclasses.dataclass
class Preprocessor:
    numeric: list[NumericStep]
    categorical: list[CategoricalStep]

    @property
    def input_names(self) -> list[str]:
        """The model's inputs in order: numeric, indicators, categorical codes."""
        return ([s.name for s in self.numeric] + [s.name + MISSING_SUFFIX for s in self.numeric if s.indicator]
                + [s.name for s in self.categorical])

    @property
    def numeric_inputs(self) -> int:
        return len(self.numeric) + sum(s.indicator for s in self.numeric)

    @property
    def column_names(self) -> list[str]:
        """The table columns it reads."""
        return [s.name for s in self.numeric] + [s.name for s in self.categorical]

    def transform(self, numeric: Callable[[str], np.ndarray], text: Callable[[str], Categories],
                  rows: int) -> np.ndarray:
        """The model's inputs (float32) from column getters: raw numbers (NaN for blanks) and categories."""
        out = np.empty((rows, len(self.input_names)), dtype=np.float32)
        col = 0
        blanks = []
        for step in self.numeric:
            values = numeric(step.name)
            missing = np.isnan(values)
            out[:, col] = step.scaled(np.where(missing, step.median, values))
            col += 1
            if step.indicator:
                blanks.append(missing)
        for missing in blanks:
            out[:, col] = missing
            col += 1
        for cat in self.categorical:
            out[:, col] = cat.codes(text(cat.name))
            col += 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"numeric": [{k: v for k, v in dataclasses.asdict(s).items() if v is not None} for s in self.numeric],
                "categorical": [dataclasses.asdict(s) for s in self.categorical]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Preprocessor:
        return cls([NumericStep(**s) for s in obj["numeric"]], [CategoricalStep(**s) for s in obj["categorical"]])

    @classmethod
    def all_numeric(cls, names: Sequence[str], mean: Sequence[float], scale: Sequence[float]) -> Preprocessor:
        """What a data set or model folder written before these steps existed meant: scaling only."""
        return cls([NumericStep(n, 0.0, float(m), float(s), False) for n, m, s in zip(names, mean, scale, strict=True)],
                   [])


@dataclasses.dataclass
class Moments:
    """The count, mean and variance of values given a chunk at a time, computed as scikit-learn's
    StandardScaler.partial_fit computes them: each chunk by the corrected two-pass algorithm,
    chunks merged by the update of Chan, Golub and LeVeque. One chunk (an array in memory) gives
    StandardScaler.fit's figures to the bit; a chunked pass gives the same up to rounding."""

    count: int = 0
    mean: float = 0.0
    var: float = 0.0
    low: float = np.inf
    high: float = -np.inf

    def add(self, values: np.ndarray) -> None:
        n = len(values)
        if not n:
            return
        total = np.sum(values)
        centred = values - total / n
        correction = np.sum(centred)
        centred **= 2
        squares = np.sum(centred) - correction ** 2 / n
        if self.count == 0:
            merged = squares
        else:
            before = self.mean * self.count
            ratio = self.count / n
            merged = self.var * self.count + squares + ratio / (self.count + n) * (before / ratio - total) ** 2
            total = before + total
        self.count += n
        self.mean, self.var = float(total / self.count), float(merged / self.count)
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))

    def mean_and_scale(self) -> tuple[float, float]:
        """The mean and standard deviation; a constant (or absent) column: its value, and 1."""
        if self.low >= self.high:
            return (self.low if self.count else 0.0), 1.0
        scale = float(np.sqrt(self.var))
        return self.mean, scale if scale > 0 else 1.0


def fit_numeric(name: str, sample: np.ndarray, chunks: Iterable[np.ndarray], quantile: bool = False) -> NumericStep:
    """Median fill, the median taken from `sample` (training values: all of them, or a seeded
    sample of a large table), then the mean and scale of the filled training values, given as
    `chunks` (an array in memory is one chunk); with `quantile`, also the quantiles of the
    sample (blanks filled) that map the column onto a normal."""
    present = sample[~np.isnan(sample)]
    median = float(np.median(present)) if len(present) else 0.0
    moments, blanks = Moments(), False
    for chunk in chunks:
        missing = np.isnan(chunk)
        blanks = blanks or bool(missing.any())
        moments.add(np.where(missing, median, chunk))
    mean, scale = moments.mean_and_scale()
    quantiles = quantiles_of(np.where(np.isnan(sample), median, sample)) if quantile and len(sample) else None
    return NumericStep(name, median, mean, scale, blanks, quantiles)


def fit_categorical(name: str, values: Sequence[str], chunks: Iterable[np.ndarray], min_rows: int,
                    max_levels: int) -> CategoricalStep:
    """The most frequent levels with at least `min_rows` rows (ties: first seen first, blanks last).
    `chunks`: the training rows' indices into `values` (-1 for a blank), an array in memory being
    one chunk."""
    counts = np.zeros(len(values) + 1, dtype=np.int64)  # blanks last
    for chunk in chunks:
        counts += np.bincount(np.where(chunk >= 0, chunk, len(values)), minlength=len(values) + 1)
    levels: list[str | None] = [*values, None]
    order = np.argsort(-counts, kind="stable")[:max_levels]
    kept = [levels[i] for i in order if counts[i] >= min_rows]
    return CategoricalStep(name, kept)


SKEWED = 1.0  # a non-negative target with a sample skewness above this is modelled on the log scale


def target_transform(sample: np.ndarray, choice: str = "auto",
                     value_range: tuple[float, float] | None = None) -> dict[str, Any]:
    """How a regression target is modelled, from a sample of its training values. Where every
    value is >= 0 and the distribution is skewed to the right (counts, prices, incomes), the
    model predicts log E[y] and trains on the Poisson deviance (a log link): predictions are
    never negative, and they are the conditional mean that RMSE and R^2 score. Squared error on
    log1p(y) (`log1p`) predicts something nearer the median, which R^2 on the original scale
    penalises; squared error on y itself predicts negative counts. Else y is modelled as it is.
    Predictions are kept within the training range either way."""
    low, high = value_range or (float(np.min(sample)), float(np.max(sample)))
    automatic = "log_link" if low >= 0 and skewness(sample) > SKEWED else "none"
    return {"transform": automatic if choice == "auto" else choice, "low": low, "high": high}


def skewness(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The sample skewness (third standardised moment) of `values`, each counted `weights` times
    where given (a frequency table); 0 for a constant."""
    centred = values - np.average(values, weights=weights)
    spread = float(np.sqrt(np.average(centred ** 2, weights=weights)))
    return float(np.average(centred ** 3, weights=weights)) / spread ** 3 if spread > 0 else 0.0


def transformed_target(y: np.ndarray, target: dict[str, Any]) -> np.ndarray:
    return np.log1p(y) if target.get("transform") == "log1p" else y


def fit_target_scaling(chunks: Iterable[np.ndarray]) -> tuple[float, float]:
    """A regression target's training mean and standard deviation (1 for a constant one), as
    StandardScaler makes them; `chunks` as for fit_numeric."""
    moments = Moments()
    for chunk in chunks:
        moments.add(chunk)
    return moments.mean_and_scale()


def embedding_size(cardinality: int) -> int:
    """fastai's rule of thumb for an embedding's width."""
    return int(min(600, round(1.6 * cardinality ** 0.56)))
