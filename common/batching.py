"""Whole-batch iteration over in-memory tensors, sharded across processes.

Why not a DataLoader: fetching rows one by one and collating them costs ~20x the arithmetic
of a small MLP. Here each epoch draws one permutation (the same on every process, from
the seed and the epoch alone, so a resumed run sees the same order), gathers each process's
rows once, and hands out slices.

Sharding: step s takes the global batch perm[s*G:(s+1)*G] and splits it into one near-equal
contiguous chunk per process. Every row is used exactly once per epoch, none is padded or
dropped, and every process runs the same number of steps, so DDP never waits on a rank that
ran out of batches. The loss of a chunk is scaled so that DDP's gradient average is the mean
over the global batch (see `loss_scale`). The global batch G and the steps per epoch come
from the run plan (common/plan.py), which is the only place they are worked out.
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

    def __len__(self) -> int:
        return self.steps

    def local_plan(self, epoch: int) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
        """This process's row indices for the epoch, and per step (local start, local stop, global rows)."""
        perm = epoch_permutation(len(self.X), self.seed, epoch)
        pieces, plan, offset = [], [], 0
        for step in range(self.steps):
            lo = step * self.global_batch
            rows = min(self.global_batch, len(perm) - lo)
            a, b = shard_bounds(rows, self.num_processes, self.process_index)
            pieces.append(perm[lo + a: lo + b])
            plan.append((offset, offset + b - a, rows))
            offset += b - a
        return np.concatenate(pieces), plan

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """Yield (x, y, rows in the global batch) for each step of `epoch`."""
        idx, plan = self.local_plan(epoch)
        index = torch.from_numpy(idx).to(self.X.device)
        # One gather per epoch; the per-step slices below are free views.
        X, y = self.X.index_select(0, index), self.y.index_select(0, index)
        for start, stop, rows in plan:
            yield X[start:stop], y[start:stop], rows


def loss_scale(num_processes: int, global_rows: int) -> float:
    """Factor for a chunk's summed loss so that DDP's mean of gradients over processes is the
    exact mean over the global batch, also when the global batch does not split evenly."""
    return num_processes / global_rows


def local_shard(n_rows: int, num_processes: int, process_index: int) -> slice:
    """The contiguous slice of an evaluation set that this process scores (no padding)."""
    return slice(*shard_bounds(n_rows, num_processes, process_index))


def optimizer_steps_per_epoch(steps: int, grad_accum: int) -> int:
    """An accumulation group never spans two epochs: the last one of an epoch may be short."""
    return math.ceil(steps / grad_accum)


def ends_accumulation_group(step: int, steps: int, grad_accum: int) -> bool:
    """Whether batch `step` of an epoch of `steps` batches is the last of its accumulation group."""
    return (step + 1) % grad_accum == 0 or step == steps - 1
