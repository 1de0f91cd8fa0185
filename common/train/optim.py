"""The optimizer, the learning-rate schedule and the loss, as the run plan asks for them."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from common.train.leans import compiler_lean_missing, eager_optimizer_class
from common.train.run_plan import OptimPlan, TrainPlan

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def make_optimizer(optim: OptimPlan, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """Adam, AdamW (decoupled weight decay) or SGD on their fused kernels where this torch has
    them, else the foreach path; stepped without importing torch's compiler where
    common/train/leans.py says that holds (lean 5)."""
    cls: Any = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[optim.optimizer]
    if compiler_lean_missing() is None:
        cls = eager_optimizer_class(cls)
    params = list(params)
    decay = {"weight_decay": optim.weight_decay} if optim.weight_decay else {}
    try:
        return cls(params, lr=optim.lr, fused=True, **decay)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, lr=optim.lr, foreach=True, **decay)


def make_scheduler(plan: TrainPlan, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LRScheduler | None:
    """None for a constant rate; else a scheduler stepped once per optimizer step over the planned
    epochs (a leg restarts the cosine: `restart_cosine`)."""
    total = max(1, plan.batches.optimizer_steps)
    if plan.optim.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if plan.optim.lr_schedule == "step":  # /10 at 50% and at 75% of the optimizer steps
        milestones = sorted({max(1, total // 2), max(1, total * 3 // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return None


def restart_cosine(scheduler: torch.optim.lr_scheduler.CosineAnnealingLR, peak: float, steps: int) -> None:
    """A new leg of the cosine schedule: from `peak` times each group's planned rate to zero over
    `steps` optimizer steps. Set through the scheduler's public attributes, which its state_dict
    saves, so a checkpoint keeps the leg and a resumed run goes on with it."""
    scheduler.base_lrs = [group["initial_lr"] * peak for group in scheduler.optimizer.param_groups]
    scheduler.T_max, scheduler.last_epoch = steps, 0
    for group, rate in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = rate


COUNT_CHUNK = 1 << 20


def balanced_class_weights(y_train: np.ndarray, num_classes: int) -> torch.Tensor:
    """scikit-learn's 'balanced' weights, n / (classes present x rows of the class); 0 for a class
    with no training row (it contributes no loss either way). Counted a chunk at a time: the
    targets may be a memory-mapped file of any size."""
    counts = np.zeros(num_classes, dtype=np.int64)
    for start in range(0, len(y_train), COUNT_CHUNK):
        counts += np.bincount(y_train[start:start + COUNT_CHUNK], minlength=num_classes)
    present = counts > 0
    weights = np.zeros(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


def summed_loss(task: str, weight: torch.Tensor | None = None, log_link: bool = False,
                label_smoothing: float = 0.0) -> LossFn:
    """Loss summed over rows (per-row loss as the recipe's mean loss counts it); smoothed labels
    are for training only (evaluation scores the labels as they are)."""
    if task == "classification":
        return lambda out, y: F.cross_entropy(out, y, weight=weight, reduction="sum", label_smoothing=label_smoothing)
    if log_link:
        return lambda out, y: poisson_deviance(out, y).sum() / out.shape[1]
    return lambda out, y: F.mse_loss(out, y, reduction="sum") / out.shape[1]


MAX_LOG_OUTPUT = 30.0  # exp(30) times the training mean: far past any target, and within float32


def poisson_deviance(log_mean: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Half the Poisson deviance of y >= 0 (scaled by its training mean) under the predicted
    mean exp(log_mean), per element: 0 for a perfect prediction. Its minimiser is the
    conditional mean, whatever y's distribution, and it weighs a large y's error by its size,
    not by its square, as squared error would."""
    # Past MAX_LOG_OUTPUT the mean grows linearly: no overflow, and still a gradient back down.
    top = math.exp(MAX_LOG_OUTPUT)
    mean = torch.where(log_mean > MAX_LOG_OUTPUT, top * (1 + log_mean - MAX_LOG_OUTPUT),
                       torch.exp(log_mean.clamp(max=MAX_LOG_OUTPUT)))
    return torch.special.xlogy(y, y) - y * log_mean - y + mean


def member_losses(task: str, out: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None,
                  label_smoothing: float = 0.0, log_link: bool = False) -> torch.Tensor:
    """[rows, k] loss of each row under each member of an ensemble's [rows, k, outputs]. A class
    weight weighs the rows of its class. (cross_entropy's own `weight` also weighs the smoothed
    share of every other class: with a rare class weighted 15 to 1, each majority row then
    pulls towards the rare class harder than towards its own, and the model predicts the rare
    class everywhere.)"""
    rows, k = out.shape[:2]
    if task == "classification":
        flat = F.cross_entropy(out.reshape(rows * k, -1), y.repeat_interleave(k), reduction="none",
                               label_smoothing=label_smoothing).view(rows, k)
        return flat if weight is None else flat * weight[y].unsqueeze(1)
    if log_link:
        return poisson_deviance(out, y.unsqueeze(1)).mean(dim=2)
    return ((out - y.unsqueeze(1)) ** 2).mean(dim=2)
