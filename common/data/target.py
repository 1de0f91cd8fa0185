"""The target of a user's table: which task it makes, and how a regression's y is modelled.

A text target makes classes. A numeric one makes classes when it holds a few whole numbers,
unless they are skewed like counts (a regression then); anything else is a regression. A
regression target that is never negative and skewed to the right is modelled through a log
link, y is scaled, and its training range bounds the predictions (common/steps.TargetStep).
Everything is read from the scratch column a chunk at a time.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from common.config import MakeDataConfig
from common.data.columns import written_unlike_most
from common.data.preprocess import Moments
from common.data.scratch import ScratchColumn, ValueRange, Vocabulary, median_sample, training_chunks
from common.data.splits import TRAIN, chunks
from common.errors import UserError
from common.steps import TargetStep

MAX_CLASSES_FROM_INTEGERS = 20  # a numeric target with at most this many integer values is taken as classes,
MIN_COUNT_VALUES = 8            # unless it has at least this many, none negative, skewed like counts ...
COUNT_SKEWED = 0.5              # ... above this: a team's goals (0.9) count, the ten digits (0.0) and a
                                # wine's quality score 3-9 (0.2) are classes
SKEWED = 1.0  # a non-negative target with a sample skewness above this is modelled on the log scale
ID_CLASSES = 100  # a text target with more classes than this, whose classes of one row alone hold more than
ID_ALONE = 0.9    # this share of the rows, is an id or free text (a long tail of rare classes holds far less)


def targets(raw: ScratchColumn, vocabulary: Vocabulary | None, cfg: MakeDataConfig,
            decimal: str = ".") -> tuple[str, Any, list[Any] | None, str]:
    """(task, y, class labels, why that task): int32 class codes 0..K-1 in the order of the
    sorted labels, or the scratch column of a regression's numbers (read a chunk at a time).
    `vocabulary`: the target's text values, None where it was read as numbers; `decimal`: the
    file's decimal mark."""
    if vocabulary is not None:  # text labels
        values = vocabulary.values
        order = sorted(range(len(values)), key=values.__getitem__)
        code = np.empty(len(values), dtype=np.int32)
        code[order] = np.arange(len(values))
        labels: list[Any] = [values[i] for i in order]
        y = class_codes(raw, lambda ids: code[ids])
        task, why = "classification", "text: classes"
    else:
        distinct = few_integers(raw)
        counts = cfg.task is None and distinct is not None and looks_like_counts(distinct,
                                                                                 value_frequencies(raw, distinct))
        task = cfg.task or ("classification" if distinct is not None and not counts else "regression")
        why = task_reason(cfg.task, distinct, counts)
        if task == "regression":
            if not any(np.any(raw[part] != raw[0:1][0]) for part in chunks(len(raw))):
                raise UserError(f"{cfg.csv}: target column '{cfg.target}' holds one value only: "
                                "there is nothing to learn")
            return task, raw, None, why
        unique = distinct if distinct is not None else distinct_values(raw)
        y = class_codes(raw, lambda numbers: np.searchsorted(unique, numbers))
        labels = (unique.astype(np.int64) if np.all(unique == np.round(unique)) else unique).tolist()
    if len(labels) < 2:
        raise UserError(f"{cfg.csv}: target column '{cfg.target}' holds one class only ({labels[0]!r}): "
                        "there is nothing to learn")
    if cfg.task is None:
        refuse_an_id(y, labels, cfg, decimal)
    return task, y, labels, why


def refuse_an_id(y: np.ndarray, labels: list[Any], cfg: MakeDataConfig, decimal: str) -> None:
    """A customer number or a free-text column given as the target makes a class of nearly every
    row, which no model learns to predict (and the real target would be a feature): refused, unless
    --task says classification. (Numbers make more than 20 classes only where --task says so.)
    Text that is mostly numbers written one way and some another (`8.000,00` and `2.5` in a
    semicolon file) is said as such."""
    classes = len(labels)
    if classes <= ID_CLASSES:
        return
    alone = int((np.bincount(y, minlength=classes) == 1).sum())  # y: the codes, in memory, 4 bytes a row
    if alone <= ID_ALONE * len(y):
        return
    odd = written_unlike_most(labels, decimal)
    if odd is not None:
        raise UserError(f"{cfg.csv}: target column '{cfg.target}' holds numbers, most written one way and some "
                        f"another (such as {odd!r}), so it was read as text of {classes:,} classes: write its numbers "
                        "one way, or give --task regression")
    raise UserError(f"{cfg.csv}: target column '{cfg.target}' has {classes:,} classes, and {alone:,} of its "
                    f"{len(y):,} rows hold one no other row has: an id or free text, which no model learns to "
                    "predict; choose another --target (or give --task classification to train on it as it is)")


def task_reason(given: str | None, distinct: np.ndarray | None, counts: bool) -> str:
    """Why a numeric target makes a classification or a regression, in the words make_data.py prints."""
    if given:
        return f"--task {given}"
    if distinct is None:
        return "numbers: a regression (--task classification for classes)"
    values = f"{len(distinct)} whole numbers, {distinct[0]:g} to {distinct[-1]:g}"
    if counts:
        return f"{values}, skewed like counts: a regression (--task classification for classes)"
    return f"{values}: classes (--task regression for amounts)"


def class_codes(raw: ScratchColumn, code: Any) -> np.ndarray:
    """int32 class codes of every row, `code` applied a chunk at a time: 4 bytes a row, the one
    array of the table's size."""
    y = np.empty(len(raw), dtype=np.int32)
    for part in chunks(len(raw)):
        y[part] = code(raw[part])
    return y


def distinct_values(values: ScratchColumn) -> np.ndarray:
    found: np.ndarray = np.empty(0)
    for part in chunks(len(values)):
        found = np.union1d(found, values[part])
    return found


def value_frequencies(values: ScratchColumn, distinct: np.ndarray) -> np.ndarray:
    """How many rows hold each of the (sorted) distinct values."""
    frequencies = np.zeros(len(distinct), dtype=np.int64)
    for part in chunks(len(values)):
        frequencies += np.bincount(np.searchsorted(distinct, values[part]), minlength=len(distinct))
    return frequencies


def looks_like_counts(distinct: np.ndarray, frequencies: np.ndarray) -> bool:
    """Whole numbers that count something (doctor visits, children, defects) rather than name
    classes: at least MIN_COUNT_VALUES values, none negative, skewed to the right. Class codes
    are fewer, or evenly spread (the ten digits), or ordinal scores around a middle (wine
    quality 3-9); a count of visits piles up at 0 with a long tail, and its figure is how far
    off a prediction is, not which value it names."""
    return len(distinct) >= MIN_COUNT_VALUES and distinct[0] >= 0 and skewness(distinct, frequencies) > COUNT_SKEWED


def few_integers(values: ScratchColumn) -> np.ndarray | None:
    """The sorted distinct values when there are at most MAX_CLASSES_FROM_INTEGERS, all whole;
    else None (reading stops as soon as that is clear)."""
    found: np.ndarray = np.empty(0)
    for part in chunks(len(values)):
        chunk = values[part]
        if not np.all(chunk == np.round(chunk)):
            return None
        found = np.union1d(found, chunk)
        if len(found) > MAX_CLASSES_FROM_INTEGERS:
            return None
    return found



def regression_target(y: ScratchColumn, split: np.ndarray, cfg: MakeDataConfig) -> TargetStep:
    """How the target is modelled (target_transform: its shape from a sample of the training
    rows, its range from all of them) and its scaling. A log is never taken of a negative value
    in any labelled row: the automatic choice falls back to none, a chosen log is refused."""
    n_train = int(np.count_nonzero(split == TRAIN))
    training = ValueRange.of(training_chunks(y, split))
    transform = target_transform(y.take(median_sample(split, n_train, cfg.seed)), cfg.target_transform,
                                 training.low)
    lowest = min(float(y[part].min()) for part in chunks(len(y)))
    if transform != "none" and lowest < 0:
        if cfg.target_transform != "auto":
            raise UserError(f"{cfg.csv}: target column '{cfg.target}' has values down to {lowest:g}, and "
                            f"{transform} needs a target that is never negative: use --target-transform none")
        transform = "none"
    unscaled = TargetStep(transform, 0.0, 1.0, training.low, training.high)
    mean, scale = fit_target_scaling(unscaled.modelled(c) for c in training_chunks(y, split))
    if not unscaled.link:
        return TargetStep(transform, mean, scale, training.low, training.high)
    if mean <= 0:
        raise UserError(f"{cfg.csv}: target column '{cfg.target}' is 0 in every training row, which a log link "
                        "cannot model: use --target-transform none")
    # y / its training mean: the model's output starts near log 1 = 0
    return TargetStep(transform, 0.0, mean, training.low, training.high)


FAR_SPREADS = 1000  # median absolute deviations from the median past which a target value is far out: the
                   # 15 regression tables of bench/README.md section 7 reach 76 at most (DoctorContacts)


def far_target_values(y: ScratchColumn, split: np.ndarray, seed: int) -> dict[str, float] | None:
    """The training targets FAR_SPREADS spreads or more from the median (a typing slip, a code
    such as 999999 for "unknown"), which squared error, R² and a log link's fit are all about:
    how many, the farthest and the median; None where there are none, or where half the rows
    hold one value (no spread to measure by)."""
    n_train = int(np.count_nonzero(split == TRAIN))
    if not n_train:
        return None
    sample = y.take(median_sample(split, n_train, seed))
    median = float(np.median(sample))
    spread = float(np.median(np.abs(sample - median)))
    if spread == 0:
        return None
    rows, farthest = 0, median
    for chunk in training_chunks(y, split):
        far = chunk[np.abs(chunk - median) >= FAR_SPREADS * spread]
        if far.size:
            rows += int(far.size)
            candidate = float(far[np.argmax(np.abs(far - median))])
            farthest = candidate if abs(candidate - median) > abs(farthest - median) else farthest
    return {"rows": rows, "farthest": farthest, "median": median} if rows else None


def target_transform(sample: np.ndarray, choice: str = "auto", low: float | None = None) -> str:
    """How a regression target is modelled, from a sample of its training values (`low`: the
    least of all of them, where known). Where every value is >= 0 and the distribution is
    skewed to the right (counts, prices, incomes), the model predicts log E[y] and trains on
    the Poisson deviance (a log link): predictions are never negative, and they are the
    conditional mean that RMSE and R^2 score. Squared error on log1p(y) (`log1p`) predicts
    something nearer the median, which R^2 on the original scale penalises; squared error on y
    itself predicts negative counts. Else y is modelled as it is."""
    if choice != "auto":
        return choice
    low = float(np.min(sample)) if low is None else low
    return "log_link" if low >= 0 and skewness(sample) > SKEWED else "none"


def skewness(values: np.ndarray, weights: np.ndarray | None = None) -> float:
    """The sample skewness (third standardised moment) of `values`, each counted `weights` times
    where given (a frequency table); 0 for a constant."""
    centred = values - np.average(values, weights=weights)
    spread = float(np.sqrt(np.average(centred ** 2, weights=weights)))
    return float(np.average(centred ** 3, weights=weights)) / spread ** 3 if spread > 0 else 0.0


def fit_target_scaling(chunks: Iterable[np.ndarray]) -> tuple[float, float]:
    """A regression target's training mean and standard deviation (1 for a constant one), as
    StandardScaler makes them; `chunks` as for fit_numeric."""
    moments = Moments()
    for chunk in chunks:
        moments.add(chunk)
    return moments.mean_and_scale()

