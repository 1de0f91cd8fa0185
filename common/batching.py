"""Whole-batch iteration over in-memory tensors, sharded across processes.

Why not a DataLoader: fetching rows one by one and collating them costs ~20x the arithmetic
of a small MLP. Here each epoch draws one permutation (the same on every process, from
the seed and the epoch alone, so a resumed run sees the same order), gathers each process's
rows once, and hands out slices.

Sharding: step s takes the global batch perm[s*G:(s+1)*G] and splits it into one near-equal
contiguous chunk per process. Every row is used exactly once per epoch, none is padded or
dropped, and every process runs the same number of steps, so DDP never waits on a rank that
ran out of batches. The loss of a chunk is scaled so that DDP's gradient average, summed over
an accumulation group, is the mean over the group's rows (see `loss_scale`). The global batch
G and the steps per epoch come from the run plan (common/plan.py), the only place they are
worked out.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch


def epoch_permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of epoch `epoch`: a pure function of (seed, epoch), independent of the rank."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def shard_bounds(n: int, num_shards: int, index: int) -> tuple[int, int]:
    """[start, stop) of shard `index` when n rows are cut into near-equal contiguous shards."""
    base, extra = divmod(n, num_shards)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def steps_per_epoch(n_rows: int, global_batch: int) -> int:
    return math.ceil(n_rows / global_batch)


@dataclass
class ShardedBatches:
    X: torch.Tensor
    y: torch.Tensor
    global_batch: int   # rows per step over all processes
    steps: int          # steps per epoch: steps_per_epoch(len(X), global_batch)
    num_processes: int = 1
    process_index: int = 0
    seed: int = 0
    grad_accum: int = 1  # batches per optimizer step

    def __len__(self) -> int:
        return self.steps

    def group_rows(self, n_rows: int) -> list[int]:
        """Per step, the rows of all processes in its accumulation group (the last group of an
        epoch may hold fewer batches, and the last batch fewer rows)."""
        rows = [min(self.global_batch, n_rows - step * self.global_batch) for step in range(self.steps)]
        groups = [sum(rows[g:g + self.grad_accum]) for g in range(0, self.steps, self.grad_accum)]
        return [groups[step // self.grad_accum] for step in range(self.steps)]

    def local_plan(self, epoch: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """This process's row indices for the epoch, and per step (local start, local stop, group rows)."""
        perm = epoch_permutation(len(self.X), self.seed, epoch)
        pieces, plan, offset = [], [], 0
        for step, group in enumerate(self.group_rows(len(perm))):
            lo = step * self.global_batch
            a, b = shard_bounds(min(self.global_batch, len(perm) - lo), self.num_processes, self.process_index)
            pieces.append(perm[lo + a: lo + b])
            plan.append((offset, offset + b - a, group))
            offset += b - a
        return np.concatenate(pieces), plan

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """Yield (x, y, rows of all processes in this step's accumulation group) for each step."""
        idx, plan = self.local_plan(epoch)
        index = torch.from_numpy(idx).to(self.X.device)
        # One gather per epoch; the per-step slices below are free views.
        X, y = self.X.index_select(0, index), self.y.index_select(0, index)
        for start, stop, rows in plan:
            yield X[start:stop], y[start:stop], rows


def loss_scale(num_processes: int, group_rows: int, grad_accum: int = 1) -> float:
    """Factor for a chunk's summed loss so that the gradient of an optimizer step is the exact
    mean over the rows of its accumulation group: DDP averages over processes (hence the
    process count), `accelerator.backward` divides by --grad-accum (hence the undoing), and
    neither knows that a group or a batch may be short at the end of an epoch."""
    return num_processes * grad_accum / group_rows


def local_shard(n_rows: int, num_processes: int, process_index: int) -> slice:
    """The contiguous slice of an evaluation set that this process scores (no padding)."""
    return slice(*shard_bounds(n_rows, num_processes, process_index))


def optimizer_steps_per_epoch(steps: int, grad_accum: int) -> int:
    """An accumulation group never spans two epochs: the last one of an epoch may be short."""
    return math.ceil(steps / grad_accum)


def ends_accumulation_group(step: int, steps: int, grad_accum: int) -> bool:
    """Whether batch `step` of an epoch of `steps` batches is the last of its accumulation group."""
    return (step + 1) % grad_accum == 0 or step == steps - 1
