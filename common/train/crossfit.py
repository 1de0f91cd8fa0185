"""Cross-fitting: how the training rows validate the model, and the members that use them.

`CrossFit.folds` says it once:
- 0: none. Every training row trains every member; the data set's own validation split (if
  any) validates.
- 1: a holdout. One member trains on the rows outside a stratified share `holdout` of the
  training rows and is validated on that share.
- k >= 2: k folds. Member i of the ensemble (common/model.EnsembleNet) trains on every fold but
  i and is validated on fold i, so every training row is validated once, by a member that never
  saw it, and the prediction averages all k.

The folds are a pure function of (class codes, seed) (common/data/splits.fold_ids): every
process and every resumed run derives the same. Here: the rule that picks the folds for a
table, the figure that picks the best weights, each batch's training loss under the folds, and
the out-of-fold outputs that validation scores.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from common.data.splits import fold_ids


@dataclasses.dataclass(frozen=True)
class CrossFit:
    folds: int       # 0: none; 1: one member and a validation fold; k >= 2: k folds
    holdout: float   # with folds 1: the validation fold's share of the training rows

    @property
    def validates(self) -> bool:
        """Whether the training rows themselves validate (so no validation split may be given)."""
        return self.folds > 0

    def describe(self, members: int) -> str:
        if self.folds >= 2:
            return f"{self.folds}-fold cross-fitting ({members} members, out-of-fold validation), "
        if self.folds == 1:
            return f"one member validated on {self.holdout * 100:.2g}% of the training rows, "
        return f"{members} members, " if members > 1 else ""

    def fold_of_each_row(self, y_train: np.ndarray, classification: bool, seed: int) -> np.ndarray | None:
        """Each training row's fold (stratified by class), or None without cross-fitting."""
        if not self.folds:
            return None
        return fold_ids(np.asarray(y_train) if classification else None, self.folds, self.holdout, seed, len(y_train))

    def training_loss(self, losses: torch.Tensor, fold: torch.Tensor | None) -> torch.Tensor:
        """A batch's summed loss from [rows, k] member losses: each member on the rows outside its
        fold, averaged over the members that train on each row."""
        members = losses.shape[1]
        if fold is None:
            return losses.sum() / members
        trains = fold.unsqueeze(1) != torch.arange(members, device=losses.device)
        return (losses * trains).sum() / max(1, members - (1 if self.folds >= 2 else 0))


def out_of_fold(net: Any, X: torch.Tensor, fold: torch.Tensor, members: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Member by member, the rows of its validation fold (their indices into X) and their outputs
    under that member: each row scored by the member that never trained on it, one member's
    arithmetic per row, not k. Rows of no fold are left out."""
    found = []
    for member in range(members):
        rows = torch.nonzero(fold == member).squeeze(1)
        found.append((rows, net(X[rows], member=member)[:, 0].float()))
    return found


def out_of_fold_in_order(net: Any, X: torch.Tensor, fold: torch.Tensor, members: int) -> torch.Tensor:
    """out_of_fold's outputs in the rows' own order; every row of X must belong to a fold."""
    parts = out_of_fold(net, X, fold, members)
    out = torch.empty(len(X), parts[0][1].shape[1], dtype=torch.float32, device=X.device)
    for rows, outputs in parts:
        out[rows] = outputs
    return out


def table_folds(n_train: int, has_val: bool, most: int, max_rows: int) -> int:
    """The folds of a table left to the default: none where the data set has a validation split
    of its own; `most` (never more than the rows) up to `max_rows` training rows; above that one
    member and a validation fold, since k members would cost k times the arithmetic where one
    fold already holds plenty of rows."""
    if has_val:
        return 0
    return min(most, max(2, n_train)) if n_train <= max_rows else 1


def holdout_share(n_train: int, share: float, most_rows: int) -> float:
    """The one member's validation fold: `share` of the training rows, but no more than about
    `most_rows` of them. Past that many rows a figure's noise is far below the differences it
    decides, so on plentiful data each row more trains the member instead (and every
    evaluation reads fewer rows). One in a whole number of rows, the share fold_ids takes exactly."""
    if n_train * share <= most_rows:
        return share
    return 1 / math.ceil(n_train / most_rows)


def monitor(task: str, crossfit: CrossFit, *, is_recipe: bool, has_val: bool, has_test: bool) -> str:
    """What picks the best weights and stops early: the validation loss (the test loss where
    there are no validation rows, as the recipes have it; the training loss where there are no
    held-out rows at all, a data set made to train on every row). A user's classification table
    is judged by its out-of-fold macro-F1 instead: on small imbalanced tables the loss is lowest
    while the model still predicts the majority class almost everywhere, and macro-F1 is the
    figure the table is compared by."""
    if not (has_val or crossfit.validates):
        return "test_loss" if has_test else "train_loss"
    return "val_f1_macro" if task == "classification" and not is_recipe else "val_loss"
