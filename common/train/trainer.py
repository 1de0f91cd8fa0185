"""The training step and the evaluations, written once against `accelerate.Accelerator`.

The same code runs on one CPU process, one GPU, DDP over several GPUs or machines, and a
gloo group on a CPU-only machine: the accelerate config alone decides. `Trainer._run_batch`
is one optimizer step's whole story: forward, loss, backward (autograd's, or on one CPU
process a plain MLP's written out by hand: common/train/hand_step.py), and at the end of an
accumulation group the optimizer, the schedule and the zeroing (`Stepper`, which takes
Accelerate's fast paths where common/train/leans.py says they hold). The Trainer
reads the run plan and knows nothing of files or the console.
"""
from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch
from torch import nn

from common.data.dataset import SPLITS, RowCheck, TabularData
from common.errors import UserError
from common.metrics import classification_figures, classification_stats, regression_figures, regression_stats
from common.model import combine_members
from common.steps import has_link
from common.train.batching import RowSource, ShardedBatches, fits_on_device, local_shard
from common.train.crossfit import out_of_fold
from common.train.hand_step import hand_step_for
from common.train.leans import (
    backward_is_plain,
    cache_lomo_check,
    direct_backward_missing,
    direct_step_missing,
    epoch_signal_class,
    epoch_signal_missing,
    lomo_check_missing,
    step_is_plain,
    unwrapped_model,
)
from common.train.optim import balanced_class_weights, member_losses, summed_loss
from common.train.run_plan import TrainPlan
from common.train.stop_signal import StopSignal

EVAL_CHUNK = 1 << 16  # rows per read and forward pass in evaluation: bounds memory on large splits


class Trainer:
    """Runs epochs and evaluations of the plan's model over the plan's batches. Its position in
    the run (`epoch`, `steps_done`) and the epoch's loss so far (`partial`) are its own: the run
    folder saves them in a checkpoint and gives them back on --resume."""

    def __init__(self, accelerator: Any, model: nn.Module, optimizer: Any, scheduler: Any, data: TabularData,
                 plan: TrainPlan, stepper: Stepper | None = None, by_hand: bool = True):
        self.accelerator, self.model, self.plan, self.task = accelerator, model, plan, plan.task
        self.num_classes = len(data.description.class_labels or [])
        self.target = data.description.target  # regression: for figures on the original y scale
        self.stepper = stepper or Stepper(accelerator, model, optimizer, scheduler, plan.batches.grad_accum)
        self.weight = None
        if self.task == "classification" and plan.optim.class_weight == "balanced":
            self.weight = balanced_class_weights(data.y_train, self.num_classes).to(accelerator.device)
        self.log_link = has_link(self.target)  # outputs are log E[y]: Poisson deviance
        self.loss_fn = summed_loss(self.task, self.weight, self.log_link)
        self.training_loss_fn = summed_loss(self.task, self.weight, self.log_link, plan.optim.label_smoothing)
        # A plain MLP's forward and backward written out where they apply (common/train/hand_step.py),
        # else autograd's; the accumulation context and the optimizer step are the same either way.
        self.hand = hand_step_for(model, accelerator, plan, self.weight is not None, self.log_link) if by_hand \
            else None
        # Cross-fitting: each training row's fold, a tag of each batch (common/train/crossfit.py).
        self.folds = plan.crossfit.fold_of_each_row(data.y_train, self.task == "classification", plan.seed)
        self.batches, self.eval_sets = self._data(data)
        self.loss_sum = torch.zeros((), device=accelerator.device)
        self.rows_seen = self.steps_done = 0
        self.epoch = 0

    def _data(self, data: TabularData) -> tuple[ShardedBatches, dict[str, tuple[RowSource, torch.Tensor | None]]]:
        """This process's training batches and its shard of each evaluation set: on a GPU, all it
        reads stays there when it fits; else all is streamed."""
        plan, acc, device = self.plan, self.accelerator, self.accelerator.device
        shards = evaluation_shards(data, acc.num_processes, acc.process_index, plan.crossfit.validates)
        resident = fits_on_device(bytes_read(data, shards), device)
        checks = {name: RowCheck(f"the {name} split of {plan.run.data}", self.num_classes) for name in SPLITS}
        train_rows = RowSource(data.X_train, data.y_train, device, resident, checks["train"])
        b = plan.batches
        batches = ShardedBatches(train_rows, b.global_batch, b.steps_per_epoch, acc.num_processes, acc.process_index,
                                 plan.seed, b.grad_accum, b.shuffle, plan.run.chunk_rows, tags=self.folds)
        eval_sets: dict[str, tuple[RowSource, torch.Tensor | None]] = {}
        for name, part in shards.items():
            if name == "train":
                eval_sets[name] = (train_rows.part(part), None)
            elif name == "val" and self.folds is not None:  # out of fold, over the training rows
                fold = torch.from_numpy(self.folds[part]).to(device)  # int8, a view: 8 bytes a row less than int64
                eval_sets[name] = (train_rows.part(part), fold)
            else:
                X, y = data.split(name)
                eval_sets[name] = (RowSource(X[part], y[part], device, resident, checks[name]), None)
        return batches, eval_sets

    def _run_batch(self, x: torch.Tensor, y: torch.Tensor, group_rows: int, ends_group: bool,
                   fold: torch.Tensor | None = None) -> None:
        """One batch: forward, the summed loss (an ensemble's members each on the rows outside
        their fold), backward scaled so the step's gradient is the mean over its group's rows,
        and at the end of the group the optimizer step."""
        scale = loss_scale(self.accelerator.num_processes, group_rows, self.plan.batches.grad_accum)
        with self.stepper.accumulate(ends_group):
            loss_sum = self.hand(x, y, scale) if self.hand is not None else self._autograd_loss(x, y, scale, fold)
            if ends_group:
                self.stepper.step()
        # Accumulated on the device: no host sync per step.
        self.loss_sum += loss_sum
        self.rows_seen += len(x)

    def _autograd_loss(self, x: torch.Tensor, y: torch.Tensor, scale: float, fold: torch.Tensor | None) -> torch.Tensor:
        """The batch's summed loss, its gradient times `scale` added to the parameters' by autograd."""
        out = self.model(x).float()
        if out.dim() == 2:  # one network
            loss_sum = self.training_loss_fn(out, y)
        else:
            losses = member_losses(self.task, out, y, self.weight, self.plan.optim.label_smoothing, self.log_link)
            loss_sum = self.plan.crossfit.training_loss(losses, fold)
        self.stepper.backward(loss_sum * scale)
        return loss_sum.detach()

    def run_epoch(self, epoch: int, first_step: int = 0, stop: StopSignal | None = None) -> float | None:
        """Train `epoch` from `first_step` on (0, or where a checkpoint taken mid-epoch stopped);
        returns the epoch's mean loss over all processes (one small all-reduce). Returns None
        where `stop` ended the epoch early, after a whole optimizer step: `position()` says
        where, and `partial()` holds what the epoch's loss needs to go on from there."""
        self.model.train()
        self.epoch = epoch
        if first_step == 0:
            self.loss_sum.zero_()
            self.rows_seen = 0
        steps, accum = self.plan.batches.steps_per_epoch, self.plan.batches.grad_accum
        batches = self.stepper.epoch(self.batches, epoch, first_step)
        for step, (x, y, group_rows, *fold) in enumerate(batches, start=first_step):
            ends_group = ends_accumulation_group(step, steps, accum)
            self._run_batch(x, y, group_rows, ends_group, *fold)
            self.steps_done = step + 1
            if ends_group and stop is not None and self.steps_done < steps and stop.agreed(step // accum):
                return None
        return self.train_loss()

    def position(self) -> tuple[int, int | None]:
        """(epoch, steps done in it), the steps None once the epoch is complete."""
        whole = self.steps_done >= self.plan.batches.steps_per_epoch
        return self.epoch, None if whole else self.steps_done

    def partial(self) -> dict[str, Any]:
        """What a checkpoint taken mid-epoch needs to finish the epoch's mean loss."""
        return {"loss_sum": float(self.loss_sum.item()), "rows_seen": self.rows_seen}

    def load_partial(self, partial: dict[str, Any]) -> None:
        self.loss_sum.fill_(partial["loss_sum"])  # a float32 value, held exactly by the float JSON wrote
        self.rows_seen = int(partial["rows_seen"])

    @property
    def net(self) -> nn.Module:
        """The model without its DDP wrapper: what is evaluated out of fold and saved."""
        return unwrapped_model(self.accelerator, self.model)

    def train_loss(self) -> float:
        """Mean loss of the last epoch over every row seen on every process."""
        t = torch.stack([self.loss_sum.double(), torch.tensor(float(self.rows_seen), dtype=torch.float64,
                                                               device=self.loss_sum.device)])
        total = self.accelerator.reduce(t, reduction="sum").cpu().numpy()
        return float(total[0] / total[1])

    def _stats(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss_sum = self.loss_fn(out, y).detach()
        if self.task == "classification":
            return classification_stats(out, y, self.num_classes, loss_sum)
        assert self.target is not None
        return regression_stats(*self.target.for_figures(out, y), loss_sum)

    @torch.no_grad()
    def _split_stats(self, rows: RowSource, folds: torch.Tensor | None) -> torch.Tensor:
        """The split's summed statistics, read and scored a chunk at a time, then summed over
        processes: one row of them, or with `folds` one per member, each over the rows of its
        fold scored by it (rows of no fold are left out); else an ensemble's members are combined."""
        total = None
        # At least one pass, also over an empty shard: every process must bring a tensor to the reduce.
        for start in range(0, max(len(rows), 1), EVAL_CHUNK):
            X, y = rows.slice(start, start + EVAL_CHUNK)
            if folds is None:
                stats = self._stats(combine_members(self.model(X).float(), self.task, self.log_link), y).unsqueeze(0)
            else:
                parts = out_of_fold(self.net, X, folds[start:start + EVAL_CHUNK], self.plan.model.members)
                stats = torch.stack([self._stats(out, y[member_rows]) for member_rows, out in parts])
            total = stats if total is None else total + stats
        assert total is not None
        return self.accelerator.reduce(total, reduction="sum")

    def _figures(self, stats: np.ndarray) -> dict[str, Any]:
        if self.task == "classification":
            figures = classification_figures(stats, self.num_classes)
            figures.pop("confusion_matrix")
            return figures
        return regression_figures(stats)

    def evaluate(self, epoch: int, train_loss: float) -> dict[str, Any]:
        """Figures of every evaluation set, reduced over all processes (every process calls this).
        Out of fold, each member's own figure on its fold too (`val_members`: the curves' spread)."""
        self.model.eval()
        record: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss}
        for split, (rows, folds) in self.eval_sets.items():
            stats = self._split_stats(rows, folds).cpu().numpy()
            figures = self._figures(stats.sum(axis=0))
            if split == "train":
                figures.pop("loss")
            record.update({record_key(split, key): value for key, value in figures.items()})
            if folds is not None and len(stats) > 1:
                monitored = self.plan.loop.monitor.removeprefix(f"{split}_")
                scored = 1  # the stats' second entry: the rows a member scored (none: no figure)
                record[f"{split}_members"] = [self._figures(member)[monitored] if member[scored] else None
                                              for member in stats]
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


class Stepper:
    """The Accelerate calls around one batch: the accumulation context, then the optimizer
    step, the scheduler step and the zeroing of gradients at the end of each group."""

    def __init__(self, accelerator: Any, model: nn.Module, optimizer: Any, scheduler: Any, grad_accum: int,
                 missing: dict[str, str | None] | None = None):
        self.accelerator, self.model, self.optimizer, self.scheduler = accelerator, model, optimizer, scheduler
        self.grad_accum = grad_accum
        self.signal: Any = None
        missing = missing if missing is not None else self.probe()
        self.fallbacks = {name: why for name, why in missing.items() if why}
        for name, why in self.fallbacks.items():
            accelerator.print(f"note: {why}: {name} takes Accelerate's public path (slower, the same results)")
        if "lomo_cache" not in self.fallbacks:
            cache_lomo_check()
        self.parameters = list(model.parameters())
        self.zero_grad: Callable[[], None] = (
            functools.partial(optimizer.zero_grad, set_to_none=True) if "zero_through_model" in self.fallbacks
            else self.forget_gradients)
        self.optimizer_step: Callable[[], Any] = (
            optimizer.optimizer.step if "direct_step" not in self.fallbacks
            and step_is_plain(accelerator, optimizer, grad_accum) else optimizer.step)
        self.backward: Callable[[torch.Tensor], None] = (
            torch.Tensor.backward if "direct_backward" not in self.fallbacks and backward_is_plain(accelerator)
            else accelerator.backward)

    def probe(self) -> dict[str, str | None]:
        """For each lean, None where it applies here, else why not."""
        held = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        return {
            "lomo_cache": lomo_check_missing(),
            "epoch_signal": epoch_signal_missing(),
            "skip_accumulate": None if self.accelerator.sync_gradients is True
            else "accelerator.sync_gradients is not True outside accumulate()",
            "zero_through_model": None if held == {id(p) for p in self.model.parameters()}
            else "the optimizer does not hold exactly the model's parameters",
            "direct_backward": direct_backward_missing(),
            "direct_step": direct_step_missing(),
        }

    def forget_gradients(self) -> None:
        """`model.zero_grad(set_to_none=True)` without walking the module tree each step (lean 4)."""
        for parameter in self.parameters:
            parameter.grad = None

    def epoch(self, batches: ShardedBatches, epoch: int, first_step: int = 0) -> Iterator[Any]:
        """The epoch's batches from `first_step` on, with Accelerate told where the epoch ends (lean 2)."""
        if "epoch_signal" in self.fallbacks:
            return batches.epoch(epoch, first_step)
        if self.signal is None:
            self.signal = epoch_signal_class()()
        return self.signal.around(batches.epoch(epoch, first_step), len(batches) - first_step)

    def accumulate(self, ends_group: bool) -> AbstractContextManager[Any]:
        if self.grad_accum == 1 and "skip_accumulate" not in self.fallbacks:
            return contextlib.nullcontext()
        if "epoch_signal" not in self.fallbacks:
            return self.accelerator.accumulate(self.model)
        return contextlib.nullcontext() if ends_group else self.accelerator.no_sync(self.model)

    def step(self) -> None:
        """At the end of an accumulation group (every batch without accumulation)."""
        self.optimizer_step()
        if self.scheduler is not None:
            self.scheduler.step()
        self.zero_grad()


def loss_scale(num_processes: int, group_rows: int, grad_accum: int = 1) -> float:
    """Factor for a chunk's summed loss so that the gradient of an optimizer step is the exact
    mean over the rows of its accumulation group: DDP averages over processes (hence the
    process count), `accelerator.backward` divides by --grad-accum (hence the undoing), and
    neither knows that a group or a batch may be short at the end of an epoch."""
    return num_processes * grad_accum / group_rows


def ends_accumulation_group(step: int, steps: int, grad_accum: int) -> bool:
    """Whether batch `step` of an epoch of `steps` batches is the last of its accumulation group."""
    return (step + 1) % grad_accum == 0 or step == steps - 1

