"""The training loop, written once against `accelerate.Accelerator`.

The same code runs on one CPU process, one GPU, DDP over several GPUs or machines, and a
gloo group on a CPU-only machine: the accelerate config alone decides. The Trainer reads
the run plan and knows nothing of files or the console.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from common.data.dataset import SPLITS, TabularData
from common.data.splits import fold_ids
from common.errors import UserError
from common.metrics import classification_figures, classification_stats, regression_figures, regression_stats
from common.model import combine_members
from common.steps import has_link
from common.train.accelerate_leans import Stepper
from common.train.batching import (
    RowCheck,
    RowSource,
    ShardedBatches,
    ends_accumulation_group,
    fits_on_device,
    local_shard,
    loss_scale,
)
from common.train.optim import balanced_class_weights, member_losses, summed_loss
from common.train.run_plan import TrainPlan
from common.train.stop_signal import StopSignal

EVAL_CHUNK = 1 << 16  # rows per read and forward pass in evaluation: bounds memory on large splits


class Trainer:
    """Runs epochs and evaluations of the plan's model over the plan's batches."""

    def __init__(self, accelerator: Any, model: nn.Module, optimizer: Any, scheduler: Any, data: TabularData,
                 plan: TrainPlan, stepper: Stepper | None = None):
        self.accelerator, self.model = accelerator, model
        self.plan, self.task = plan, plan.task
        self.num_classes = len(data.description.class_labels or [])
        self.target = data.description.target  # regression: for figures on the original y scale
        self.stepper = stepper or Stepper(accelerator, model, optimizer, scheduler, plan.grad_accum)
        device, P, rank = accelerator.device, accelerator.num_processes, accelerator.process_index
        self.weight = None
        if self.task == "classification" and plan.class_weight == "balanced":
            self.weight = balanced_class_weights(data.y_train, self.num_classes).to(device)
        self.log_link = has_link(self.target)  # outputs are log E[y]: Poisson deviance
        self.loss_fn = summed_loss(self.task, self.weight, self.log_link)
        # Cross-fitting: each training row's fold. Member i trains on the rows of the other folds,
        # and the validation figures are each row's under the member that never trained on it.
        self.folds = (fold_ids(np.asarray(data.y_train) if self.task == "classification" else None, plan.folds,
                               plan.holdout, plan.seed, len(data.y_train)) if plan.folds else None)
        shards = evaluation_shards(data, P, rank, bool(plan.folds))
        # On a GPU, everything this process reads stays there when it fits; else all is streamed.
        self.resident = fits_on_device(bytes_read(data, shards), device)
        checks = {name: RowCheck(f"the {name} split of {plan.data}", self.num_classes) for name in SPLITS}
        train_rows = RowSource(data.X_train, data.y_train, device, self.resident, checks["train"])
        self.batches = ShardedBatches(train_rows, plan.global_batch, plan.steps_per_epoch, P, rank, plan.seed,
                                      plan.grad_accum, plan.shuffle, plan.chunk_rows, tags=self.folds)
        self.eval_sets: dict[str, tuple[RowSource, torch.Tensor | None]] = {}
        for name, part in shards.items():
            if name == "train":
                self.eval_sets[name] = (train_rows.part(part), None)
            elif name == "val" and self.folds is not None:  # out of fold, over the training rows
                folds = torch.from_numpy(self.folds[part].astype(np.int64)).to(device)
                self.eval_sets[name] = (train_rows.part(part), folds)
            else:
                X, y = data.split(name)
                self.eval_sets[name] = (RowSource(X[part], y[part], device, self.resident, checks[name]), None)
        self.loss_sum = torch.zeros((), device=device)
        self.rows_seen = self.steps_done = 0

    def _training_loss(self, x: torch.Tensor, y: torch.Tensor, fold: torch.Tensor | None) -> torch.Tensor:
        """The batch's summed loss: an ensemble's members each on the rows outside their fold,
        averaged over the members that train on each row."""
        out = self.model(x).float()
        if out.dim() == 2:
            return self.loss_fn(out, y)
        losses = member_losses(self.task, out, y, self.weight, self.plan.label_smoothing, self.log_link)
        if fold is None:
            return losses.sum() / losses.shape[1]
        trains = fold.unsqueeze(1) != torch.arange(losses.shape[1], device=losses.device)
        return (losses * trains).sum() / max(1, losses.shape[1] - (1 if self.plan.folds >= 2 else 0))

    def _run_batch(self, x: torch.Tensor, y: torch.Tensor, group_rows: int, ends_group: bool,
                   fold: torch.Tensor | None = None) -> None:
        with self.stepper.accumulate(ends_group):
            loss_sum = self._training_loss(x, y, fold)
            scale = loss_scale(self.accelerator.num_processes, group_rows, self.plan.grad_accum)
            self.accelerator.backward(loss_sum * scale)
            if ends_group:
                self.stepper.step()
        # Accumulated on the device: no host sync per step.
        self.loss_sum += loss_sum.detach()
        self.rows_seen += len(x)

    def run_epoch(self, epoch: int, first_step: int = 0, stop: StopSignal | None = None) -> float | None:
        """Train `epoch` from `first_step` on (0, or where a checkpoint taken mid-epoch stopped);
        returns the epoch's mean loss over all processes (one small all-reduce). Returns None
        where `stop` ended the epoch early, after a whole optimizer step: `steps_done` says
        where, and `partial()` holds what the epoch's loss needs to go on from there."""
        self.model.train()
        if first_step == 0:
            self.loss_sum.zero_()
            self.rows_seen = 0
        steps, accum = self.plan.steps_per_epoch, self.plan.grad_accum
        batches = self.stepper.epoch(self.batches, epoch, first_step)
        for step, (x, y, group_rows, *fold) in enumerate(batches, start=first_step):
            ends_group = ends_accumulation_group(step, steps, accum)
            self._run_batch(x, y, group_rows, ends_group, *fold)
            self.steps_done = step + 1
            if ends_group and stop is not None and self.steps_done < steps and stop.agreed(step // accum):
                return None
        return self.train_loss()

    def partial(self) -> dict[str, Any]:
        """What a checkpoint taken mid-epoch needs to finish the epoch's mean loss."""
        return {"loss_sum": float(self.loss_sum.item()), "rows_seen": self.rows_seen}

    def restore_partial(self, partial: dict[str, Any]) -> None:
        self.loss_sum.fill_(partial["loss_sum"])  # a float32 value, held exactly by the float JSON wrote
        self.rows_seen = int(partial["rows_seen"])

    def train_loss(self) -> float:
        """Mean loss of the last epoch over every row seen on every process."""
        t = torch.stack([self.loss_sum.double(), torch.tensor(float(self.rows_seen), dtype=torch.float64,
                                                               device=self.loss_sum.device)])
        total = self.accelerator.reduce(t, reduction="sum").cpu().numpy()
        return float(total[0] / total[1])

    @torch.no_grad()
    def _split_stats(self, rows: RowSource, folds: torch.Tensor | None) -> torch.Tensor:
        """The split's summed statistics, read and scored a chunk at a time, then summed over
        processes. With `folds`, each row is scored by the member validated on its fold (rows
        of no fold are left out); else an ensemble's members are combined."""
        total = None
        # At least one pass, also over an empty shard: every process must bring a tensor to the reduce.
        for start in range(0, max(len(rows), 1), EVAL_CHUNK):
            X, y = rows.slice(start, start + EVAL_CHUNK)
            if folds is None:
                out = combine_members(self.model(X).float(), self.task, self.log_link)
            else:
                out, y = self._out_of_fold(X, y, folds[start:start + EVAL_CHUNK])
            loss_sum = self.loss_fn(out, y).detach()
            if self.task == "classification":
                stats = classification_stats(out, y, self.num_classes, loss_sum)
            else:
                assert self.target is not None
                stats = regression_stats(*self.target.for_figures(out, y), loss_sum)
            total = stats if total is None else total + stats
        assert total is not None
        return self.accelerator.reduce(total, reduction="sum")

    def _out_of_fold(self, X: torch.Tensor, y: torch.Tensor, fold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's output under the member validated on its fold, rows grouped by fold (the
        figures are sums, so their order does not matter); rows of no fold are left out."""
        net = self.accelerator.unwrap_model(self.model)
        outs, ys = [], []
        for member in range(self.plan.members):
            rows = torch.nonzero(fold == member).squeeze(1)
            outs.append(net(X[rows], member=member)[:, 0].float())
            ys.append(y[rows])
        return torch.cat(outs), torch.cat(ys)

    def evaluate(self, epoch: int, train_loss: float) -> dict[str, Any]:
        """Figures of every evaluation set, reduced over all processes (every process calls this)."""
        self.model.eval()
        record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
        for split, (rows, folds) in self.eval_sets.items():
            stats = self._split_stats(rows, folds).cpu().numpy()
            if self.task == "classification":
                figures = classification_figures(stats, self.num_classes)
                figures.pop("confusion_matrix")
            else:
                figures = regression_figures(stats)
            if split == "train":
                figures.pop("loss")
            record.update({record_key(split, key): value for key, value in figures.items()})
        self.model.train()
        return record


def evaluation_shards(data: TabularData, num_processes: int, rank: int, folds: bool = False) -> dict[str, slice]:
    """The contiguous shard of each evaluation set this process scores: over all processes, every
    row once. A regression reports the training split's figures too, as the recipe does; with
    `folds`, validation is out-of-fold over the training rows instead, and a second pass over
    them (as long as training's own epoch on small tables) would add nothing an out-of-fold
    figure does not say better."""
    names = (["val"] if data.n_val or folds else []) + (["test"] if len(data.y_test) else []) \
        + (["train"] if data.task == "regression" and not folds else [])
    return {name: local_shard(len(data.split("train" if name == "val" and folds else name)[0]), num_processes, rank)
            for name in names}


def bytes_read(data: TabularData, shards: dict[str, slice]) -> int:
    """What a process keeps on its device when it keeps everything: the training split and its
    evaluation shards (its shard of the training split is a view of the training split)."""
    held = [data.X_train, data.y_train] + [a[part] for name, part in shards.items() if name != "train"
                                           and not (name == "val" and not data.n_val) for a in data.split(name)]
    return sum(a.nbytes for a in held)


def record_key(split: str, figure: str) -> str:
    """`val_loss`, `test_r2`, `train_mae`, ...; the test split's classification figures keep the
    recipe's bare names (`accuracy`, `precision_macro`, ...)."""
    bare = split == "test" and figure not in ("loss", "n", "mae", "rmse", "r2")
    return figure if bare else f"{split}_{figure}"


def check_finite(loss: float, epoch: int) -> None:
    if not math.isfinite(loss):
        raise UserError(f"training diverged: the loss became {loss} in epoch {epoch}; lower --lr "
                        "(the last checkpoint and model.safetensors were left untouched)")
