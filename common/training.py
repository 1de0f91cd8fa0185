"""The training loop, written once against `accelerate.Accelerator`.

The same code runs on one CPU process, one GPU, DDP over several GPUs or machines, and a
2-process gloo group on a CPU-only machine: the accelerate config alone decides.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import platform
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from accelerate.data_loader import DataLoaderStateMixin
from accelerate.state import GradientState

from common.artifacts import BEST_FILE, load_weights, save_weights
from common.batching import ShardedBatches, local_shard, loss_scale, steps_per_epoch
from common.config import TrainConfig, to_dict
from common.errors import UserError
from common.metrics import classification_figures, classification_stats, regression_figures, regression_stats

RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "classification": dict(epochs=101, batch_size=1024, lr=1e-3, optimizer="adam", hidden=[20], eval_every=5),
    "regression": dict(epochs=401, batch_size=512, lr=0.01, optimizer="sgd", hidden=[], eval_every=50),
}
EVAL_CHUNK = 1 << 16  # rows per forward pass in evaluation: bounds memory on large test sets


def resolve_train_config(cfg: TrainConfig, task: str) -> TrainConfig:
    """Fill every setting left at None with the recipe's value for `task`."""
    recipe = RECIPE_DEFAULTS[task]
    return dataclasses.replace(cfg, **{k: v for k, v in recipe.items() if getattr(cfg, k) is None})


def validate_train_config(cfg: TrainConfig, n_train: int, num_processes: int) -> None:
    for name in ("epochs", "batch_size", "eval_every", "grad_accum", "keep_checkpoints"):
        value = getattr(cfg, name)
        if value <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    for name in ("patience", "checkpoint_every"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be 0 (off) or positive, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise UserError(f"--lr must be positive, got {cfg.lr}")
    if num_processes > n_train:
        raise UserError(f"{num_processes} processes but only {n_train} training rows: launch fewer processes")
    if cfg.split_batches and cfg.batch_size < num_processes:
        raise UserError(f"--split-batches needs --batch-size >= {num_processes} (one row per process)")


SMALL_STEP_MACS = 1 << 24  # below this many multiply-adds per step, extra threads only cost


def cpu_threads(requested: int, local_processes: int, step_macs: int) -> int:
    """Intra-op threads per process.

    Processes on one machine share its cores: each gets cores / local processes, never all of
    them. A step as small as the recipe's (1024 rows x 300 weights) gains ~10% from a second
    thread on an idle machine but becomes many times slower as soon as anything else runs,
    because the threads spin waiting for each other; such steps get one thread.
    """
    if requested > 0:
        return requested
    if step_macs < SMALL_STEP_MACS:
        return 1
    return max(1, (os.cpu_count() or 1) // max(1, local_processes))


def lighten_accelerate_step() -> None:
    """Cache Accelerate's per-step check for the optional `lomo_optim` package.

    AcceleratedOptimizer.step calls `is_lomo_available()` twice per step, and each call searches
    the import path (~25 us). On models this small that is a third of the step. Whether a
    package is installed cannot change during a run, so caching the answer changes nothing else.
    """
    import functools

    import accelerate.optimizer as accelerate_optimizer

    check = accelerate_optimizer.is_lomo_available
    if not hasattr(check, "cache_info"):
        accelerate_optimizer.is_lomo_available = functools.cache(check)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """Adam or SGD on their fused kernels where this torch has them, else the foreach path."""
    cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[name]
    params = list(params)
    try:
        return cls(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, lr=lr, foreach=True)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, total_steps: int):
    """None for a constant rate; else a scheduler stepped once per optimizer step."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps))
    if name == "step":
        milestones = sorted({max(1, total_steps // 2), max(1, total_steps * 3 // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return None


def optimizer_steps_per_epoch(n_train: int, cfg: TrainConfig, num_processes: int) -> int:
    """Batches per epoch over --grad-accum: an accumulation group never spans two epochs."""
    return math.ceil(steps_per_epoch(n_train, cfg.batch_size, num_processes, cfg.split_batches) / cfg.grad_accum)


@dataclasses.dataclass
class AcceleratedBatches(ShardedBatches, DataLoaderStateMixin):
    """ShardedBatches that tell Accelerate where each epoch ends, as its own loaders do, so that
    `accelerator.accumulate` steps the optimizer on the last batch of every epoch and an
    accumulation group never spans two epochs (a resumed run then matches an uninterrupted one)."""

    def __post_init__(self) -> None:
        self.gradient_state = GradientState()

    def epoch(self, epoch: int):
        self.begin()
        try:
            last = len(self) - 1
            for step, batch in enumerate(super().epoch(epoch)):
                self.end_of_dataloader = step == last
                yield batch
        finally:
            self.end()


class BestTracker:
    """The lowest test loss so far, its epoch and weights, and early stopping on it.

    Every process sees the same reduced test loss, so every process takes the same decision."""

    def __init__(self, patience: int):
        self.patience = patience
        self.loss, self.epoch, self.bad_evals = math.inf, -1, 0
        self.weights: dict[str, torch.Tensor] | None = None

    def update(self, record: dict[str, Any], model: nn.Module) -> bool:
        """Record an evaluation; True when training should stop."""
        if record["test_loss"] < self.loss:
            self.loss, self.epoch, self.bad_evals = record["test_loss"], record["epoch"], 0
            if self.patience:  # keeping a copy costs a little memory; only early stopping needs it
                self.weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        self.bad_evals += 1
        return bool(self.patience) and self.bad_evals >= self.patience

    def state(self) -> dict[str, Any]:
        return {"loss": self.loss, "epoch": self.epoch, "bad_evals": self.bad_evals}

    def save(self, folder) -> None:
        if self.weights is not None:
            save_weights(folder / BEST_FILE, self.weights)

    def load(self, state: dict[str, Any], folder) -> None:
        self.loss, self.epoch, self.bad_evals = state["loss"], state["epoch"], state["bad_evals"]
        if self.patience and (folder / BEST_FILE).is_file():
            self.weights = load_weights(folder / BEST_FILE)


def balanced_class_weights(y_train: np.ndarray, num_classes: int) -> torch.Tensor:
    """n / (K * rows of class k): every class weighs the same in the loss, as in sklearn."""
    counts = np.bincount(y_train, minlength=num_classes).astype(np.float64)
    weights = np.divide(len(y_train), num_classes * counts, out=np.zeros_like(counts), where=counts > 0)
    return torch.tensor(weights, dtype=torch.float32)


def summed_loss(task: str, weight: torch.Tensor | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Loss summed over rows (per-row loss as the recipe's mean loss counts it)."""
    if task == "classification":
        return lambda out, y: F.cross_entropy(out, y, weight=weight, reduction="sum")
    return lambda out, y: F.mse_loss(out, y, reduction="sum") / out.shape[1]


def library_versions() -> dict[str, str]:
    import accelerate
    import safetensors
    import sklearn

    return {"python": platform.python_version(), "torch": torch.__version__, "accelerate": accelerate.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__, "safetensors": safetensors.__version__}


class Trainer:
    """Runs epochs and evaluations; knows nothing of files or the console."""

    def __init__(self, accelerator, model: nn.Module, optimizer, scheduler, data, cfg: TrainConfig):
        self.accelerator = accelerator
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.task = data.task
        self.num_classes = len(data.meta["class_labels"] or [])
        self.y_mean, self.y_scale = data.meta["y_mean"], data.meta["y_scale"]
        device, P, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
        weight = None
        if self.task == "classification" and cfg.class_weight == "balanced":
            weight = balanced_class_weights(data.y_train, self.num_classes).to(device)
        self.loss_fn = summed_loss(self.task, weight)
        X_train, y_train = torch.from_numpy(data.X_train).to(device), torch.from_numpy(data.y_train).to(device)
        self.batches = AcceleratedBatches(X_train, y_train, cfg.batch_size, P, rank, cfg.split_batches, cfg.seed)
        # Each process scores one contiguous shard of each evaluation set: no row twice, none missing.
        self.eval_sets = {"test": self._shard(data.X_test, data.y_test)}
        if self.task == "regression":  # the recipe reports train figures too
            self.eval_sets["train"] = self._shard(data.X_train, data.y_train)
        self.loss_sum = torch.zeros((), device=device)
        self.rows_seen = 0

    def _shard(self, X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        part = local_shard(X, self.accelerator.num_processes, self.accelerator.process_index)
        device = self.accelerator.device
        return torch.from_numpy(X[part]).to(device), torch.from_numpy(y[part]).to(device)

    def _accumulate(self):
        # accumulate() costs ~30 us a step, 10% of the recipe's step; with nothing to
        # accumulate, every step syncs and steps anyway.
        if self.accelerator.gradient_accumulation_steps > 1:
            return self.accelerator.accumulate(self.model)
        return contextlib.nullcontext()

    def _run_batch(self, x: torch.Tensor, y: torch.Tensor, global_rows: int) -> None:
        with self._accumulate():
            loss_sum = self.loss_fn(self.model(x).float(), y)
            self.accelerator.backward(loss_sum * loss_scale(self.accelerator.num_processes, global_rows))
            self.optimizer.step()  # a no-op inside an accumulation group
            if self.accelerator.sync_gradients:
                if self.scheduler is not None:
                    self.scheduler.step()
                # The optimizer holds exactly the model's parameters; zeroing them through the model
                # skips the signature inspection AcceleratedOptimizer.zero_grad does on every call.
                self.model.zero_grad(set_to_none=True)
        # Accumulated on the device: no host sync per step.
        self.loss_sum += loss_sum.detach()
        self.rows_seen += len(x)

    def run_epoch(self, epoch: int) -> float:
        """Train one epoch; returns its mean loss over all processes (one small all-reduce)."""
        self.model.train()
        self.loss_sum.zero_()
        self.rows_seen = 0
        for x, y, global_rows in self.batches.epoch(epoch):
            self._run_batch(x, y, global_rows)
        return self.train_loss()

    def train_loss(self) -> float:
        """Mean loss of the last epoch over every row seen on every process."""
        t = torch.stack([self.loss_sum.double(), torch.tensor(float(self.rows_seen), dtype=torch.float64,
                                                               device=self.loss_sum.device)])
        total = self.accelerator.reduce(t, reduction="sum").cpu().numpy()
        return float(total[0] / total[1])

    @torch.no_grad()
    def _split_stats(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        outs = [self.model(X[i:i + EVAL_CHUNK]).float() for i in range(0, len(X), EVAL_CHUNK)]
        out = torch.cat(outs) if outs else self.model(X).float()
        loss_sum = self.loss_fn(out, y).detach()
        if self.task == "classification":
            stats = classification_stats(out, y, self.num_classes, loss_sum)
        else:
            stats = regression_stats(out, y, self.y_mean, self.y_scale, loss_sum)
        return self.accelerator.reduce(stats, reduction="sum")

    def evaluate(self, epoch: int, train_loss: float) -> dict[str, Any]:
        """Figures of every evaluation set, reduced over all processes (every process calls this)."""
        self.model.eval()
        record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
        for split, (X, y) in self.eval_sets.items():
            stats = self._split_stats(X, y).cpu().numpy()
            if self.task == "classification":
                figures = classification_figures(stats, self.num_classes)
                figures.pop("confusion_matrix")
            else:
                figures = regression_figures(stats)
            if split == "train":
                figures.pop("loss")
            for key, value in figures.items():
                record[f"{split}_{key}" if key in ("loss", "n", "mae", "rmse", "r2") else key] = value
        self.model.train()
        return record


def scalar_settings(values: dict) -> dict:
    """TensorBoard's hyperparameter view takes numbers and strings only."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}


def check_finite(loss: float, epoch: int) -> None:
    if not math.isfinite(loss):
        raise UserError(f"training diverged: the loss became {loss} in epoch {epoch}; lower --lr "
                        "(the last checkpoint and model.safetensors were left untouched)")


def run_record(cfg: TrainConfig, spec: dict, data, accelerator, last: dict, best: BestTracker, timing: dict) -> dict:
    """Everything needed to rebuild and use the model, and to trace it to its settings."""
    keys = ("feature_names", "class_labels", "x_mean", "x_scale", "y_mean", "y_scale")
    return {
        "task": data.task, "model": spec, **{k: data.meta[k] for k in keys},
        "data": str(Path(cfg.data).resolve()), "training": to_dict(cfg),
        "num_processes": accelerator.num_processes, "distributed_type": str(accelerator.distributed_type),
        "mixed_precision": accelerator.mixed_precision, "device": str(accelerator.device),
        "final_metrics": last, "best_epoch": best.epoch if best.epoch >= 0 else None,
        "best_test_loss": best.loss if math.isfinite(best.loss) else None,
        "weights": "best" if best.weights is not None else "last", **timing, "versions": library_versions(),
    }
