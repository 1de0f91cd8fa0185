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

from typing import Any

import numpy as np
import torch


def classification_stats(logits: torch.Tensor, y: torch.Tensor, num_classes: int,
                         loss_sum: torch.Tensor) -> torch.Tensor:
    """[loss sum, rows, confusion matrix (true x predicted) flattened], float64."""
    pred = logits.argmax(dim=1)
    cm = torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes)
    head = torch.stack([loss_sum.double(), torch.tensor(float(len(y)), dtype=torch.float64, device=logits.device)])
    return torch.cat([head, cm.double()])


def regression_stats(pred: torch.Tensor, y: torch.Tensor, y_scale: float,
                     loss_sum: torch.Tensor) -> torch.Tensor:
    """[loss sum, rows, sum |e|, sum e^2, sum y_c, sum y_c^2] on the original y scale, float64.

    y_c is y minus the training mean: summing centred values keeps R^2's denominator accurate.
    """
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
    seen = (predicted + actual) > 0
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
    y_true, y_pred = np.divmod(np.arange(num_classes * num_classes), num_classes)
    weight = confusion.ravel()
    kw: dict[str, Any] = {"sample_weight": weight, "zero_division": 0}
    precision, recall, _, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, **kw)
    return {
        "accuracy": float(skm.accuracy_score(y_true, y_pred, sample_weight=weight)),
        "precision_macro": float(skm.precision_score(y_true, y_pred, labels=labels, average="macro", **kw)),
        "recall_macro": float(skm.recall_score(y_true, y_pred, labels=labels, average="macro", **kw)),
        "f1_macro": float(skm.f1_score(y_true, y_pred, labels=labels, average="macro", **kw)),
        "confusion_matrix": confusion.astype(np.int64).tolist(),
        "precision": precision.tolist(), "recall": recall.tolist(), "support": np.rint(support).astype(int).tolist(),
    }


def regression_report(sums: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and R² from [rows, sum |e|, sum e^2, sum y, sum y^2] on the original scale."""
    n, abs_sum, sq_sum, y_sum, y_sq_sum = sums
    total = y_sq_sum - y_sum ** 2 / n
    return {"mae": float(abs_sum / n), "rmse": float(np.sqrt(sq_sum / n)),
            "r2": float(1.0 - sq_sum / total) if total > 0 else float("nan")}
