"""Fitting the steps between a table's columns and the model's inputs, on the training split
only (their stored form, replayed at prediction, is common/steps.py).

- numeric: the median that fills blanks (from a sample of the training values), the mean and
  scale of the filled values (a chunked pass that StandardScaler's figures match), and for
  users' tables the quantiles that map the column onto a normal: a skewed column (incomes,
  counts, areas) or one with outliers then reaches the model spread evenly, the way a tree's
  splits see it;
- categorical: the training split's levels with at least `min_rows` rows, at most
  `max_levels` of the most frequent.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from common.steps import CategoricalStep, NumericStep

QUANTILE_SAMPLE = 100_000  # values a column's quantiles are taken from, at most (QuantileTransformer: 10,000)


def quantiles_of(sample: np.ndarray) -> list[float]:
    """The quantiles kept for a column, from a sample of its (filled) training values, evenly
    thinned to QUANTILE_SAMPLE: one per 30 rows, between 10 and 1,000 (TabM's choice;
    QuantileTransformer's default is 1,000)."""
    sample = sample[::-(-len(sample) // QUANTILE_SAMPLE)] if len(sample) > QUANTILE_SAMPLE else sample
    n = int(np.clip(len(sample) // 30, 10, 1000))
    return [float(q) for q in np.quantile(sample, np.linspace(0.0, 1.0, n))]


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


# A whole-number column also seen as categories (section 7 of bench/README.md measured each
# bound: looser ones cost the tables of temperatures, amounts and pixels more than the codes
# gained): a table of this many training rows at least (on fewer, each view's embedding
# overfits) ...
MIN_CODE_TABLE_ROWS = 5_000
# ... a column of this many distinct values at least (fewer, and the numeric view's periodic
# embedding already tells each apart) ...
MIN_CODE_LEVELS = 12
# ... and this many training rows a value on average (fewer, and its values are amounts or
# measurements, or too thin to learn an embedding from).
MIN_ROWS_PER_CODE = 50
# ... and whose values, in their order, do not move the target smoothly: a code's neighbours
# (occupation 8710 beside 8720) differ as much as any two values, an age's or a film length's
# hardly at all, and there the view only adds an embedding to overfit. `roughness` is about 0
# for a smooth relation and 2 for values in random order; bench/README.md section 7 has the
# columns it measured on both sides.
MIN_CODE_ROUGHNESS = 0.5
MIN_CODE_SIGNAL = 1.0  # the level means' spread beyond their noise, at least this many times the noise's
MOST_CODES_SEEN = 100_000  # distinct values counted before a column is taken for an amount
# A column of fractions whose values repeat exactly is an attribute of something a few rows share
# (a household's income in a panel of its members' years), which measurements rarely are: its
# view needs fewer rows a value, the roughness test still keeping smooth ones out ... but no more
# than MIN_ROWS_PER_CODE a value: more is a scale of few steps (a sum of survey answers), whose
# numeric view already tells its steps apart (its view as codes cost TV16 0.004).
MIN_ROWS_PER_FRACTION_CODE = 5
MAX_ROWS_PER_FRACTION_CODE = MIN_ROWS_PER_CODE


def fit_code_view(name: str, chunks: Iterable[np.ndarray], min_rows: int, max_levels: int) -> CategoricalStep | None:
    """A numeric column's view as categories (occupation and region codes, ages, years; a
    household's income repeated over its members' rows): its most frequent values with at least
    `min_rows` rows, or None where the column is no such column (too few or too many values,
    values that rarely repeat, fractions that repeat like a scale's steps). `chunks`: the
    training rows' raw values, NaN for a blank."""
    counts: dict[float, int] = {}
    rows = 0
    whole = True
    for chunk in chunks:
        present = chunk[~np.isnan(chunk)].astype(np.float64, copy=False)
        if not np.all(np.abs(present) < 2.0 ** 53):
            return None
        if not counts and len(np.unique(present[:2 * MOST_CODES_SEEN])) > MOST_CODES_SEEN:
            return None  # a measurement, told from its first rows without sorting a whole chunk
        whole = whole and bool(np.all(present == np.floor(present)))
        values, seen = np.unique(present, return_counts=True)
        for value, count in zip(values.tolist(), seen.tolist(), strict=True):
            counts[value] = counts.get(value, 0) + count
        rows += len(present)
        if len(counts) > MOST_CODES_SEEN or not whole and rows > MAX_ROWS_PER_FRACTION_CODE * MOST_CODES_SEEN:
            return None  # an amount, or fractions that can no longer be few rows a value: read no further
    if not whole:  # counted as they will be matched (CategoricalStep.fractional), so no kept level goes unused
        single: dict[float, int] = {}
        for value, count in counts.items():
            key = float(np.float32(value))
            single[key] = single.get(key, 0) + count
        counts = single
    per_value = MIN_ROWS_PER_CODE if whole else MIN_ROWS_PER_FRACTION_CODE
    if len(counts) < MIN_CODE_LEVELS or rows < per_value * len(counts) \
            or not whole and rows > MAX_ROWS_PER_FRACTION_CODE * len(counts):
        return None
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:max_levels]
    kept: list[str | None] = [f"{int(value)}" if whole else repr(value) for value, count in ranked if count >= min_rows]
    return CategoricalStep(name, kept, of_number=True) if len(kept) >= 2 else None


def roughness(view: CategoricalStep, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> float:
    """How little the target's mean moves smoothly with a view's numbers (von Neumann's ratio of
    the level means in the values' order, each mean's own noise taken out): ~0 where neighbouring
    values have neighbouring means, ~2 where the order says nothing; -inf where the levels' means
    differ by less than twice what their noise alone would give. `pairs`: the training rows' raw
    values and their target as a [rows, outputs] array (a class's 0/1 indicators, or a
    regression's rank in [0, 1])."""
    codes = view.number_lookup[1]
    n = np.zeros(view.cardinality)
    s = q = np.zeros((view.cardinality, 0))
    for values, target in pairs:
        code = view.number_codes(values).astype(np.int64)
        if s.shape[1] != target.shape[1]:  # the first chunk says how many outputs
            s, q = np.zeros((view.cardinality, target.shape[1])), np.zeros((view.cardinality, target.shape[1]))
        n += np.bincount(code, minlength=view.cardinality)
        for k in range(target.shape[1]):
            s[:, k] += np.bincount(code, weights=target[:, k], minlength=view.cardinality)
            q[:, k] += np.bincount(code, weights=target[:, k] ** 2, minlength=view.cardinality)
    order = codes[n[codes] >= 2]  # the kept levels with a variance, in the order of their numbers
    if len(order) < MIN_CODE_LEVELS:
        return -np.inf
    means = s[order] / n[order, None]
    noise = ((q[order] / n[order, None] - means ** 2).clip(min=0) / n[order, None]).sum(axis=1)  # each mean's variance
    steps = ((np.diff(means, axis=0) ** 2).sum() - (noise[1:] + noise[:-1]).sum())
    noise_spread = noise.sum() * (len(order) - 1) / len(order)  # what the means' spread would be from noise alone
    spread = ((means - means.mean(axis=0)) ** 2).sum() - noise_spread
    # Means that differ by little more than their noise make the ratio a quotient of two noises.
    return float(steps / spread) if spread > MIN_CODE_SIGNAL * noise_spread else -np.inf


def embedding_size(cardinality: int) -> int:
    """fastai's rule of thumb for an embedding's width."""
    return int(min(600, round(1.6 * cardinality ** 0.56)))
