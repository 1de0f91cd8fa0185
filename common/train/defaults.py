"""The defaults of any table but the recipes' (a user's file, a shipped data set): values sized
from the data set, resolved once by the run plan (common/train/run_plan.py).

A setting the user gives wins; the ones sized from it follow it (the steps from the batch, the
evaluations from the epochs). The recipes' synthetic data keeps the recipe's exact values
(common/config.py RECIPES, and `off` for what only tables use). The defaults and the
constants of the rule are common/config.py's TABLE_DEFAULTS.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from common.config import TABLE_DEFAULTS, TrainConfig, copied, recipe_value
from common.data.dataset import TabularData
from common.train.crossfit import table_folds

# The settings a data set decides when they are left unset: every field of TrainConfig marked `table`.
DATA_SIZED = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("table"))
SIZED = ("batch_size", "folds", "epochs", "eval_every", "extend_epochs")  # computed from the rows, not as they are


def resolved_settings(cfg: TrainConfig, data: TabularData, num_processes: int = 1) -> dict[str, Any]:
    """The settings the data set decides when left unset: the recipe's exact values for the
    recipes' synthetic data, values sized from the data for any other table."""
    given = {name: getattr(cfg, name) for name in DATA_SIZED if getattr(cfg, name) is not None}
    if data.is_recipe:
        return {name: given.get(name, recipe_value(data.task, name)) for name in DATA_SIZED}
    batches_per_step = 1 if cfg.split_batches else num_processes
    return table_settings(len(data.X_train), data.n_val > 0, data.task, given, batches_per_step)


def table_settings(n_train: int, has_val: bool, task: str, given: dict[str, Any],
                   batches_per_step: int = 1) -> dict[str, Any]:
    """Cross-fitting on every labelled row up to a size, one validation fold above it (or the
    data set's validation split where it has one); enough optimizer steps on a few hundred rows,
    few epochs on millions; the best evaluation's weights kept."""
    d = TABLE_DEFAULTS
    s = {name: copied(d[name]) for name in DATA_SIZED if name in d and name not in SIZED}
    if task != "classification":
        s["label_smoothing"] = 0.0
    batch = 2 ** round(math.log2(max(1.0, n_train / d["rows_per_step"])))
    s["batch_size"] = int(min(d["max_batch"], max(d["min_batch"], batch)))
    s["folds"] = table_folds(n_train, has_val, d["folds"], d["max_crossfit_rows"])
    s.update(given)
    steps = math.ceil(n_train / max(1, s["batch_size"] * batches_per_step))  # each process takes a batch
    by_steps = math.ceil(d["optimizer_steps"] / steps)
    by_time = d["max_row_passes"] // max(1, n_train * max(1, s["folds"]))  # what a planned run may cost
    if "epochs" not in s:
        # Past the budget's reach (a million rows: one epoch is 4000+ steps) it wins over the least
        # epochs a small table gets, where 8 epochs of 3M rows took 8-11 minutes for a best at the
        # first or third.
        least = min(d["min_epochs"], max(1, by_time))
        s["epochs"] = within_bounds(min(by_steps, by_time), least)
        # The planned epochs are the first leg: where the best evaluation still comes late, the run
        # goes on in legs of half as many, at most as many again (common/train/early_stopping.py `Legs`).
        s.setdefault("extend_epochs", within_bounds(2 * s["epochs"], least))
    s.setdefault("extend_epochs", 0)  # a length given is the length run
    s.setdefault("eval_every", max(1, round(s["epochs"] / d["evaluations"])))
    return s


def within_bounds(epochs: int, least: int | None = None) -> int:
    """Epochs within the table defaults' most and their least (or `least`)."""
    d = TABLE_DEFAULTS
    return int(min(d["max_epochs"], max(d["min_epochs"] if least is None else least, epochs)))
