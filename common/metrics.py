"""The figures for each task.

Training computes *sufficient statistics* on each process's shard (a confusion matrix, or
sums of errors), adds them up over processes and only then derives the figures. Sums are
exact to add, so the test metrics of an N-process run cover every test row exactly once,
whatever the shard sizes, and one small all-reduce replaces gathering every prediction.
Inference counts its own confusion matrix (or sums) a chunk at a time and derives the same
figures from it. Every figure is scikit-learn's (tests/test_metrics.py compares them on random
matrices), computed with numpy: no script imports scikit-learn (~1 s) to report.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported by those who pass tensors: the numpy figures need none
    import torch

FIGURE_NAMES = {"f1_macro": "macro-F1", "r2": "R²", "accuracy": "accuracy", "precision_macro": "macro precision",
                "recall_macro": "macro recall", "mae": "MAE", "rmse": "RMSE", "loss": "loss"}


def figure_name(key: str) -> str:
    """`val_f1_macro` -> macro-F1: a figure as a person reads it."""
    bare = key.split("_", 1)[1] if key.startswith(("val_", "test_", "train_")) else key
    return FIGURE_NAMES.get(bare, key)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """Counts, true class by row, predicted class by column (class codes 0..classes-1)."""
    codes = np.asarray(truth, dtype=np.int64) * classes + np.asarray(predicted, dtype=np.int64)
    return np.bincount(codes, minlength=classes * classes).reshape(classes, classes)


def seen_classes(cm: np.ndarray) -> np.ndarray:
    """The classes in the truth or the predictions: scikit-learn's macro averages are over these."""
    return (cm.sum(axis=0) + cm.sum(axis=1)) > 0


def macro_f1(predicted: np.ndarray, truth: np.ndarray, classes: int) -> float:
    """Macro-F1 over the classes seen in the truth or the predictions (scikit-learn's average)."""
    cm = confusion_matrix(truth, predicted, classes)
    tp, both = np.diag(cm), cm.sum(axis=0) + cm.sum(axis=1)
    seen = seen_classes(cm)
    return float(np.divide(2 * tp, both, out=np.zeros(classes), where=seen)[seen].mean())


def r2(predicted: np.ndarray, truth: np.ndarray) -> float:
    """1 - SSE / SST, as scikit-learn's r2_score (1 where both are 0, 0 where only SST is)."""
    sse = float(((truth - predicted) ** 2).sum())
    sst = float(((truth - truth.mean()) ** 2).sum())
    if sst == 0:
        return 1.0 if sse == 0 else 0.0
    return 1.0 - sse / sst


def classification_stats(logits: torch.Tensor, y: torch.Tensor, num_classes: int,
                         loss_sum: torch.Tensor) -> torch.Tensor:
    """[loss sum, rows, confusion matrix (true x predicted) flattened], float64."""
    import torch

    pred = logits.argmax(dim=1)
    cm = torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
    head = torch.stack([loss_sum.double(), torch.tensor(float(len(y)), dtype=torch.float64, device=logits.device)])
    return torch.cat([head, cm.double()])


def regression_stats(pred: torch.Tensor, y: torch.Tensor, y_scale: float,
                     loss_sum: torch.Tensor) -> torch.Tensor:
    """[loss sum, rows, sum |e|, sum e^2, sum y_c, sum y_c^2] on the original y scale, float64.

    y_c is y minus the training mean: summing centred values keeps R^2's denominator accurate.
    """
    import torch

    err = (pred.double() - y.double()) * y_scale
    y_c = y.double() * y_scale  # (y_orig - y_mean) = y_scaled * y_scale
    n = torch.tensor(float(len(y)), dtype=torch.float64, device=pred.device)
    return torch.stack([loss_sum.double(), n, err.abs().sum(), (err ** 2).sum(), y_c.sum(), (y_c ** 2).sum()])


def per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of each class from a confusion matrix (true x predicted), 0 where
    undefined, as scikit-learn's `zero_division=0` gives them."""
    cm = cm.astype(np.float64)
    tp = np.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * tp, predicted + actual, out=np.zeros_like(tp), where=(predicted + actual) > 0)
    return precision, recall, f1


def macro_figures(cm: np.ndarray) -> dict[str, Any]:
    """Accuracy and the macro averages, like scikit-learn's over the labels seen in the truth or
    the predictions, with the matrix itself."""
    precision, recall, f1 = per_class(cm)
    seen = seen_classes(cm)
    return {"accuracy": float(np.trace(cm) / cm.sum()), "precision_macro": float(precision[seen].mean()),
            "recall_macro": float(recall[seen].mean()), "f1_macro": float(f1[seen].mean()),
            "confusion_matrix": cm.astype(np.int64).tolist()}


def classification_figures(stats: np.ndarray, num_classes: int) -> dict[str, Any]:
    loss_sum, n = stats[0], stats[1]
    return {"loss": float(loss_sum / n), "n": int(n), **macro_figures(stats[2:].reshape(num_classes, num_classes))}


def regression_figures(stats: np.ndarray) -> dict[str, Any]:
    loss_sum, n, abs_sum, sq_sum, yc_sum, yc_sq_sum = stats
    total = yc_sq_sum - yc_sum ** 2 / n
    return {
        "loss": float(loss_sum / n), "n": int(n), "mae": float(abs_sum / n),
        "rmse": float(np.sqrt(sq_sum / n)), "r2": float(1.0 - sq_sum / total) if total > 0 else float("nan"),
    }


def classification_report(confusion: np.ndarray) -> dict[str, Any]:
    """The macro figures and each class's precision, recall and support, from a confusion matrix
    counted a chunk at a time."""
    precision, recall, _ = per_class(confusion)
    return {**macro_figures(confusion), "precision": precision.tolist(), "recall": recall.tolist(),
            "support": confusion.sum(axis=1).astype(np.int64).tolist()}


def regression_report(sums: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² from [rows, sum |e|, sum e^2, sum y, sum y^2] on the original scale."""
    n, abs_sum, sq_sum, y_sum, y_sq_sum = sums
    total = y_sq_sum - y_sum ** 2 / n
    return {"mae": float(abs_sum / n), "rmse": float(np.sqrt(sq_sum / n)),
            "r2": float(1.0 - sq_sum / total) if total > 0 else float("nan")}
