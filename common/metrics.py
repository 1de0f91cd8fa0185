"""The figures for each task.

Training computes *sufficient statistics* on each process's shard (a confusion matrix, or
sums of errors), adds them up over processes and only then derives the figures. Sums are
exact to add, so the test metrics of an N-process run cover every test row exactly once,
whatever the shard sizes, and one small all-reduce replaces gathering every prediction.
Inference counts its own confusion matrix (or sums) a chunk at a time and derives the
classification figures with scikit-learn: an independent check (imported there only, so
training never pays for importing it).
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


def classification_figures(stats: np.ndarray, num_classes: int) -> dict[str, Any]:
    loss_sum, n = stats[0], stats[1]
    cm = stats[2:].reshape(num_classes, num_classes)
    tp = np.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    # Like sklearn: average over labels seen in the truth or the predictions; 0 where undefined.
    seen = seen_classes(cm)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * tp, predicted + actual, out=np.zeros_like(tp), where=(predicted + actual) > 0)
    return {
        "loss": float(loss_sum / n), "n": int(n), "accuracy": float(tp.sum() / n),
        "precision_macro": float(precision[seen].mean()), "recall_macro": float(recall[seen].mean()),
        "f1_macro": float(f1[seen].mean()), "confusion_matrix": cm.astype(np.int64).tolist(),
    }


def regression_figures(stats: np.ndarray) -> dict[str, Any]:
    loss_sum, n, abs_sum, sq_sum, yc_sum, yc_sq_sum = stats
    total = yc_sq_sum - yc_sum ** 2 / n
    return {
        "loss": float(loss_sum / n), "n": int(n), "mae": float(abs_sum / n),
        "rmse": float(np.sqrt(sq_sum / n)), "r2": float(1.0 - sq_sum / total) if total > 0 else float("nan"),
    }


def classification_report(confusion: np.ndarray) -> dict[str, Any]:
    """scikit-learn's figures from a confusion matrix (true x predicted): each (true, predicted)
    pair once, weighted by its count, so that the rows can be counted a chunk at a time."""
    from sklearn import metrics as skm

    num_classes = len(confusion)
    labels = list(range(num_classes))
    seen = [label for label in labels if seen_classes(confusion)[label]]  # the macro averages' classes
    y_true, y_pred = np.divmod(np.arange(num_classes * num_classes), num_classes)
    weight = confusion.ravel()
    kw: dict[str, Any] = {"sample_weight": weight, "zero_division": 0}
    precision, recall, _, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, **kw)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred, sample_weight=weight)),
        "precision_macro": float(skm.precision_score(y_true, y_pred, labels=seen, average="macro", **kw)),
        "recall_macro": float(skm.recall_score(y_true, y_pred, labels=seen, average="macro", **kw)),
        "f1_macro": float(skm.f1_score(y_true, y_pred, labels=seen, average="macro", **kw)),
        "confusion_matrix": confusion.astype(np.int64).tolist(),
        "precision": precision.tolist(), "recall": recall.tolist(), "support": np.rint(support).astype(int).tolist(),
    }


def regression_report(sums: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² from [rows, sum |e|, sum e^2, sum y, sum y^2] on the original scale."""
    n, abs_sum, sq_sum, y_sum, y_sq_sum = sums
    total = y_sq_sum - y_sum ** 2 / n
    return {"mae": float(abs_sum / n), "rmse": float(np.sqrt(sq_sum / n)),
            "r2": float(1.0 - sq_sum / total) if total > 0 else float("nan")}
