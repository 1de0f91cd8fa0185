"""The best evaluation so far, its weights, and early stopping on the validation loss."""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


class BestTracker:
    """The lowest monitored loss so far (validation loss where there are validation rows), its
    epoch and weights, and when to stop.

    Every process sees the same reduced loss, so every process takes the same decision.
    Registered with `accelerator.register_for_checkpointing`, it travels inside each checkpoint
    through `state_dict` / `load_state_dict`."""

    def __init__(self, patience: int, monitor: str = "val_loss"):
        self.patience, self.monitor = patience, monitor
        self.loss, self.epoch, self.bad_evals = math.inf, -1, 0
        self.weights: dict[str, torch.Tensor] | None = None
        self.record: dict[str, Any] = {}  # the best evaluation's figures
        self.last: dict[str, Any] = {}    # the latest evaluation's
        self.stopped = False              # patience ran out: a resumed run finishes, it does not train on

    def update(self, record: dict[str, Any], model: nn.Module) -> bool:
        """Record an evaluation of `model` (the unwrapped one); True when training should stop."""
        self.last = dict(record)
        if record[self.monitor] < self.loss:
            self.loss, self.epoch, self.bad_evals = record[self.monitor], record["epoch"], 0
            self.record = dict(record)
            if self.patience:  # keeping a copy costs a little memory; only early stopping needs it
                self.weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            return False
        self.bad_evals += 1
        self.stopped = bool(self.patience) and self.bad_evals >= self.patience
        return self.stopped

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "epoch": self.epoch, "bad_evals": self.bad_evals, "weights": self.weights,
                "record": self.record, "last": self.last, "stopped": self.stopped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss, self.epoch, self.bad_evals = state["loss"], state["epoch"], state["bad_evals"]
        self.weights, self.record, self.last, self.stopped = (state["weights"], state["record"], state["last"],
                                                              state["stopped"])

    def final_metrics(self) -> dict[str, Any]:
        """The figures of the weights that are saved: the best evaluation's where those are kept."""
        return self.record if self.weights is not None else self.last

    def summary(self) -> dict[str, Any]:
        """What the run record says of it."""
        return {"best_epoch": self.epoch if self.epoch >= 0 else None,
                f"best_{self.monitor}": self.loss if math.isfinite(self.loss) else None,
                "weights": "best" if self.weights is not None else "last"}
