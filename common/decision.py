"""How a classifier's probabilities become classes: the most probable one, or, for two classes,
a threshold on the second one's probability chosen where the model was validated.

The benchmark's figure for a table's classes is macro-F1, and with a minority class the most
probable class is rarely its best decision: a model that is right to call the minority class
less likely than not still loses F1 by never naming it. `fit_threshold` picks the threshold
from the rows the model never trained on (out of fold, the validation fold or a validation split)
and keeps it only where it clearly beats the most probable class there: each candidate, 0.5
too, is judged by the mean F1 of its neighbourhood (±WINDOW steps), not by its own, so a lucky
spike or dip on a few rows does not move it. More than two classes keep the most probable: an
offset per class was measured too, and on small tables with rare classes it followed noise
(bench/README.md, section 7).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from common.schema import Fields, is_finite

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)  # the candidates, in steps of 0.01
WINDOW = 2          # a candidate's F1 is the mean over it and its 2 neighbours on each side
MIN_GAIN = 0.002    # that mean must beat the most probable class's own F1 by this much


@dataclasses.dataclass(frozen=True)
class ThresholdFit:
    """config.json's `decision`: the threshold, and the two figures it was chosen by."""
    threshold: float
    f1_argmax: float     # macro-F1 on the fitted rows around 0.5 (the most probable class), its neighbourhood's mean
    f1_threshold: float  # the same around the threshold

    def to_json(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    @classmethod
    def read(cls, f: Fields) -> ThresholdFit:
        threshold = f.checked("threshold", lambda v: is_finite(v) and 0 < v < 1, "a number in (0, 1)")
        return cls(float(threshold), f.number("f1_argmax"), f.number("f1_threshold"))

    def describe(self, labels: list[Any]) -> str:
        """The decision in words, for the console and the model card."""
        first, second = labels
        return (f"'{second}' where its probability exceeds {self.threshold:.2f}, else '{first}' (macro-F1 on the "
                f"rows it never trained on: {self.f1_threshold:.4f} around this threshold, {self.f1_argmax:.4f} "
                "around 0.5, the most probable class)")


def decided_classes(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """Each row's class index: the most probable, or with a threshold (two classes) the second
    where its probability exceeds it."""
    if threshold is None:
        return proba.argmax(axis=1)
    return (proba[:, 1] > threshold).astype(np.int64)


def binary_macro_f1(p1: np.ndarray, y: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Macro-F1 of the rule `p1 > t` for each t, from the sorted probabilities of each class:
    every threshold in O(log n)."""
    positives, negatives = np.sort(p1[y == 1]), np.sort(p1[y == 0])
    tp = len(positives) - np.searchsorted(positives, thresholds, side="right")
    fp = len(negatives) - np.searchsorted(negatives, thresholds, side="right")
    fn, tn = len(positives) - tp, len(negatives) - fp
    f1_pos = 2 * tp / np.maximum(1, 2 * tp + fp + fn)
    f1_neg = 2 * tn / np.maximum(1, 2 * tn + fp + fn)
    return (f1_pos + f1_neg) / 2


def decision_in_words(fit: ThresholdFit | None, asked: str, labels: list[Any]) -> str | None:
    """How the model decides, for the console and the card: by its threshold, or by the most
    probable class where a threshold was tried and none kept; None where argmax was asked."""
    if fit is not None:
        return fit.describe(labels)
    return "the most probable class (no threshold beat it on the rows the model never trained on)" \
        if asked == "threshold" else None


def fit_threshold(p1: np.ndarray, y: np.ndarray) -> ThresholdFit | None:
    """The threshold on the second class's probability `p1` whose neighbourhood has the highest
    mean macro-F1 on these rows (labels `y` in {0, 1}), where that mean beats the most probable
    class's own macro-F1 by MIN_GAIN; else None (keep the most probable)."""
    p1, y = np.asarray(p1, dtype=np.float64), np.asarray(y)
    if not (y == 0).any() or not (y == 1).any():
        return None
    f1 = binary_macro_f1(p1, y, THRESHOLDS)
    # Each candidate with a whole neighbourhood, judged as 0.5 itself is: by the neighbourhood's mean.
    smooth = np.convolve(f1, np.full(2 * WINDOW + 1, 1 / (2 * WINDOW + 1)), "valid")
    centres = THRESHOLDS[WINDOW:len(THRESHOLDS) - WINDOW]
    best, half = int(np.argmax(smooth)), int(np.flatnonzero(centres == 0.5)[0])
    if smooth[best] < smooth[half] + MIN_GAIN:
        return None
    return ThresholdFit(float(centres[best]), float(smooth[half]), float(smooth[best]))
