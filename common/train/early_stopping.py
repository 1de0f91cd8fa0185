"""The best evaluation so far, its weights, and early stopping on the validation loss."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from common.model_folder import RunOutcome

MAXIMISED = ("f1_macro",)  # monitored figures where higher is better (the others are losses)


def is_maximised(monitor: str) -> bool:
    return monitor.endswith(MAXIMISED)


MIN_LEG = 2  # epochs: a shorter leg would restart the rate only to take it down again at once


class Legs:
    """The epochs a run plans so far: the planned epochs, then, where the validation figure was
    still improving at their end (its best in their last quarter), a leg of half as many epochs,
    its learning rate a cosine from half the last leg's peak to zero, and again after each leg
    whose best lies in its last quarter, up to `limit` epochs in all (0: no legs).

    A table's planned epochs come from a budget of steps and rows; most runs stop early well
    inside it, and a longer cosine from the start would change every one of them. Legs lengthen
    only the runs whose validation figure asks for it, and leave the others as they were to the
    last bit (bench/README.md section 7, "Training on while it helps")."""

    def __init__(self, epochs: int, limit: int):
        self.start, self.end, self.count, self.limit = 0, epochs, 0, limit
        self.planned = epochs

    def next_leg(self, best_epoch: int) -> int:
        """After the last epoch of a leg: the epochs of the leg that follows (and it begins), or 0
        where the run ends there."""
        length = self.end - self.start
        still_improving = best_epoch >= self.end - max(1, length // 4)
        following = min(math.ceil(length / 2), self.limit - self.end)
        if not self.limit or not still_improving or following < MIN_LEG:
            return 0
        self.start, self.end, self.count = self.end, self.end + following, self.count + 1
        return following

    @staticmethod
    def reach(epochs: int) -> int:
        """The most epochs legs can take a run of `epochs` planned to: every leg's best late."""
        legs = Legs(epochs, 3 * epochs + MIN_LEG)  # halving legs add under epochs + their count
        while legs.next_leg(legs.end - 1):
            pass
        return legs.end

    @property
    def added(self) -> list[int]:
        """The epochs of each leg begun after the planned ones. Each follows from the one before,
        so a checkpoint carries only their count, and they are replayed here."""
        replay = Legs(self.planned, self.limit)
        lengths: list[int] = []
        while len(lengths) < self.count and (length := replay.next_leg(replay.end - 1)):
            lengths.append(length)
        return lengths

    @property
    def peak(self) -> float:
        """The current leg's peak learning rate, as a share of the planned one."""
        return 0.5 ** self.count

    def state_dict(self) -> list[int]:
        return [self.start, self.end, self.count]

    def load_state_dict(self, state: list[int]) -> None:
        self.start, self.end, self.count = state


class BestTracker:
    """The lowest monitored loss so far (validation loss where there are validation rows), its
    epoch and weights, and when to stop.

    Every process sees the same reduced loss, so every process takes the same decision.
    Registered with `accelerator.register_for_checkpointing`, it travels inside each checkpoint
    through `state_dict` / `load_state_dict`."""

    def __init__(self, patience: int, monitor: str = "val_loss", keep_best: bool = False, min_patience: int = 0,
                 legs: Legs | None = None):
        self.patience, self.monitor, self.keep_best = patience, monitor, keep_best or bool(patience)
        self.min_patience = min_patience
        self.legs = legs or Legs(0, 0)
        self.evaluations = 0
        self.loss, self.epoch, self.bad_evals = math.inf, -1, 0
        self.weights: dict[str, torch.Tensor] | None = None
        self.record: dict[str, Any] = {}  # the best evaluation's figures
        self.last: dict[str, Any] = {}    # the latest evaluation's
        self.stopped = False              # patience ran out: a resumed run finishes, it does not train on

    def update(self, record: dict[str, Any], model: nn.Module) -> bool:
        """Record an evaluation of `model` (the unwrapped one); True when training should stop."""
        self.last = dict(record)
        self.evaluations += 1
        value = -record[self.monitor] if is_maximised(self.monitor) else record[self.monitor]
        if value < self.loss:  # the loss, or the negated figure: lower is better
            self.loss, self.epoch, self.bad_evals = value, record["epoch"], 0
            self.record = dict(record)
            if self.keep_best:  # a copy costs a little memory; kept with early stopping or where asked
                self.weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        self.bad_evals += 1
        # A leg's raised rate first costs what its end regains: the leg runs whole, and decides at its end.
        self.stopped = bool(self.patience) and not self.legs.count and self.bad_evals >= self.waiting_limit()
        return self.stopped

    def next_leg(self) -> int:
        """At the end of the epochs planned so far: the epochs of another leg (Legs.next_leg), or 0;
        none after an early stop."""
        return 0 if self.stopped else self.legs.next_leg(self.epoch)

    def waiting_limit(self) -> int:
        """Evaluations without a better figure before the run stops: `patience`, or with
        `min_patience`, as many as it took to reach the best (at least min_patience, at most
        patience). A best found early is rarely beaten much later, and a fixed wait after it
        took most of a small table's run (bench/README.md section 7, "Stopping after an early
        best"); a late best, or one after a plateau, still gets the whole patience."""
        to_best = self.evaluations - self.bad_evals  # evaluations up to and including the best
        if not self.min_patience or to_best <= 0:  # <= 0: a state saved before evaluations were counted
            return self.patience
        return min(self.patience, max(self.min_patience, to_best))

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "epoch": self.epoch, "bad_evals": self.bad_evals, "weights": self.weights,
                "record": self.record, "last": self.last, "stopped": self.stopped, "evaluations": self.evaluations,
                "legs": self.legs.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss, self.epoch, self.bad_evals = state["loss"], state["epoch"], state["bad_evals"]
        self.weights, self.record, self.last, self.stopped = (state["weights"], state["record"], state["last"],
                                                              state["stopped"])
        self.evaluations = state.get("evaluations", 0)
        if "legs" in state:  # a checkpoint saved before legs: the planned epochs, as it was
            self.legs.load_state_dict(state["legs"])

    def best_value(self) -> float:
        """The best evaluation's monitored figure, as recorded."""
        return -self.loss if is_maximised(self.monitor) else self.loss

    def best_was_first(self) -> bool:
        """Several evaluations, and none beat the first: the kept weights barely trained."""
        return self.evaluations > 1 and self.record.get("epoch") == self.first_epoch

    first_epoch = 0

    def final_weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """What the run saves: the best evaluation's weights where those are kept, else the last."""
        return self.weights if self.weights is not None else model.state_dict()

    def final_metrics(self) -> dict[str, Any]:
        """The figures of the weights that are saved: the best evaluation's where those are kept."""
        return self.record if self.weights is not None else self.last

    def outcome(self, epochs_run: int, startup_seconds: float, train_seconds: float) -> RunOutcome:
        """What the run record says of the run."""
        return RunOutcome(self.final_metrics(), epochs_run, startup_seconds, train_seconds,
                          "best" if self.weights is not None else "last", self.monitor,
                          self.best_value() if math.isfinite(self.loss) else None,
                          self.epoch if self.epoch >= 0 else None, self.legs.added)
