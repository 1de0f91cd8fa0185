"""The run plan: train.py's settings, resolved once, right after the data set is loaded.

`make_plan` applies the recipe's value to every setting left unset, checks every value,
and works out what the settings imply for this data set and process count: the global
batch, the steps per epoch, the optimizer steps in total, the threads per process. The
trainer, the batches, the scheduler, the run record and the resume check all read the plan;
none of them recomputes any of it, and no field is left to mean "the default".
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

from common.config import TABLE_DEFAULTS, TrainConfig, check_setting, recipe_value
from common.data.dataset import TabularData
from common.data.preprocess import embedding_size
from common.errors import UserError
from common.model import ModelSpec
from common.train.batching import (
    default_chunk_rows,
    optimizer_steps_per_epoch,
    order_geometry,
    resolve_shuffle,
    steps_per_epoch,
)
from common.train.run_context import RunContext

SMALL_STEP_MACS = 1 << 28  # below this many multiply-adds per step, extra threads only cost


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    # What the run computes. --resume refuses a plan that differs in any of these.
    task: str
    data_identity: str            # the data set's content (arrays and description): what resume compares
    defaults: str                 # where unset settings came from: "recipe", or "table" (sized from the data)
    in_features: int              # numeric inputs (missing indicators included)
    embeddings: tuple[tuple[int, int], ...]  # (cardinality, width) per categorical column
    out_features: int
    hidden: tuple[int, ...]
    activation: str
    init: str                     # "random" (from the seed), or the weights file it starts from
    optimizer: str
    lr: float
    lr_schedule: str
    weight_decay: float
    class_weight: str
    folds: int                    # 0: none; 1: one member and a validation fold; k >= 2: cross-fitting
    holdout: float                # with folds 1: the share of training rows in the validation fold
    members: int                  # networks in the ensemble (0: a plain network, the recipes')
    periodic: tuple[int, int]     # (frequencies, width) of the numeric inputs' periodic embeddings; (0, 0): none
    dropout: float
    label_smoothing: float
    epochs: int
    eval_every: int
    patience: int
    monitor: str                  # what picks the best weights and stops early: val_loss, test_loss, val_f1_macro
    seed: int
    batch_size: int               # as given: per process, or per step with split_batches
    split_batches: bool
    grad_accum: int
    shuffle: str                  # "rows" or "blocks" (common/train/batching.py)
    order_geometry: str           # for blocks: rows per block x blocks per window; "" for rows
    num_processes: int
    global_batch: int             # rows per step over all processes
    steps_per_epoch: int
    optimizer_steps: int          # in the whole run: what the schedule spans
    # How the run is carried out: free to change on --resume (RUN_ONLY).
    data: str                     # the data set, as an absolute path: where it is now, not what it is
    ckpt_dir: str
    checkpoint_every: int
    save_on_signal: bool
    keep_checkpoints: int
    log_with: tuple[str, ...]
    threads: int                  # intra-op threads per process
    timeout: int                  # seconds a process waits for the others before giving up
    chunk_rows: int               # training rows a process gathers at once: memory, not results
    resume: str                   # the checkpoint folder to continue from; "" for a fresh run

    def model_spec(self) -> ModelSpec:
        return ModelSpec(self.in_features, self.hidden, self.out_features, self.activation, self.embeddings,
                         self.members, self.dropout if self.members else 0.0, self.periodic)

    def describe(self) -> str:
        """The resolved settings in one line, as train.py prints them."""
        model = " ".join(map(str, self.hidden)) or "none (linear)"
        stop = f", stop after {self.patience} evaluations without a better {self.monitor}" if self.patience else ""
        return (f"{self.defaults} settings: {self.ensemble_text()}hidden {model}, {self.optimizer} lr {self.lr:g}, "
                f"batch {self.batch_size} ({self.steps_per_epoch} steps/epoch), {self.epochs} epochs, "
                f"evaluate every {self.eval_every}{stop}")

    def ensemble_text(self) -> str:
        if self.folds >= 2:
            return f"{self.folds}-fold cross-fitting ({self.members} members, out-of-fold validation), "
        if self.folds == 1:
            return f"one member validated on {self.holdout:.0%} of the training rows, "
        return f"{self.members} members, " if self.members > 1 else ""

    def as_dict(self) -> dict[str, Any]:
        """The plan as JSON holds it (tuples become lists), for the run record and checkpoints."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# Default-deny: every other field, including any added later, must match to resume.
RUN_ONLY = frozenset({"data", "ckpt_dir", "checkpoint_every", "save_on_signal", "keep_checkpoints", "log_with",
                      "threads", "resume", "timeout", "chunk_rows"})
# Recorded by the previous version's checkpoints and compared no more: a hash of the data set's
# files, which data_identity (its content) replaced.
RETIRED = frozenset({"data_fingerprint"})


def plan_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'name: saved -> current' for each compared field that differs (or exists on one side only)."""
    compared = (saved.keys() | current.keys()) - RUN_ONLY - RETIRED
    return [f"{k}: {saved.get(k, '(absent)')!r} -> {current.get(k, '(absent)')!r}"
            for k in sorted(compared) if saved.get(k) != current.get(k)]


def check_resumable(saved: dict[str, Any], plan: TrainPlan, checkpoint: str) -> None:
    """A resumed run continues the same trajectory only with the same plan."""
    changed = plan_differences(saved, plan.as_dict())
    if any(line.startswith("data_identity:") for line in changed):
        raise UserError(f"cannot resume {checkpoint} on other data: the arrays or the description of {plan.data} "
                        "differ from those the checkpoint trained on; pass --data the data set it trained on "
                        "(it may have moved: its content is what counts)")
    if changed:
        raise UserError(f"cannot resume {checkpoint} with other settings ({', '.join(changed)}): "
                        "rerun with the checkpoint's settings")


DATA_SIZED = ("epochs", "batch_size", "lr", "optimizer", "hidden", "eval_every", "patience", "class_weight",
              "folds", "dropout", "weight_decay", "label_smoothing", "periodic", "lr_schedule")


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
    few epochs on millions; the best evaluation's weights kept. Given settings win; the ones
    sized from them (steps from the batch, evaluations from the epochs) follow them."""
    d = TABLE_DEFAULTS
    batch = 2 ** round(math.log2(max(1.0, n_train / d["rows_per_step"])))
    s = {"hidden": list(d["hidden"]), "optimizer": d["optimizer"], "lr": d["lr"], "weight_decay": d["weight_decay"],
         "lr_schedule": d["lr_schedule"], "dropout": d["dropout"], "periodic": d["periodic"],
         "label_smoothing": d["label_smoothing"] if task == "classification" else 0.0,
         "batch_size": int(min(d["max_batch"], max(d["min_batch"], batch))),
         "folds": 0 if has_val else min(d["folds"], max(2, n_train)) if n_train <= d["max_crossfit_rows"] else 1,
         **given}
    steps = math.ceil(n_train / max(1, s["batch_size"] * batches_per_step))  # each process takes a batch
    by_steps = math.ceil(d["optimizer_steps"] / steps)
    by_time = d["max_row_passes"] // max(1, n_train * max(1, s["folds"]))  # what a run may cost
    s.setdefault("epochs", int(min(d["max_epochs"], max(d["min_epochs"], min(by_steps, by_time)))))
    s.setdefault("eval_every", max(1, round(s["epochs"] / d["evaluations"])))
    s.setdefault("patience", d["patience"])
    s.setdefault("class_weight", d["class_weight"])
    return s


def make_plan(cfg: TrainConfig, data: TabularData, context: RunContext) -> TrainPlan:
    """Every setting resolved and checked against the data set and the process count. Reads no file."""
    check_settings(cfg)
    num_processes = context.num_processes
    settings = resolved_settings(cfg, data, num_processes)
    batch_size, hidden = settings["batch_size"], tuple(settings["hidden"])
    check_resolved(settings, len(data.X_train), data.n_val, num_processes, cfg.split_batches)
    if settings["class_weight"] != "none" and data.task != "classification":
        raise UserError(f"--class-weight {settings['class_weight']} weighs classes, and this is a {data.task} "
                        "data set: drop it")
    global_batch = batch_size if cfg.split_batches else batch_size * num_processes
    shuffle = resolve_shuffle(cfg.shuffle, len(data.X_train))
    steps = steps_per_epoch(len(data.X_train), global_batch)
    pre = data.preprocessor
    embeddings = tuple((c.cardinality, embedding_size(c.cardinality)) for c in pre.categorical)
    folds = settings["folds"]
    members = 0 if data.is_recipe and not folds else max(1, folds)
    periodic = (settings["periodic"], TABLE_DEFAULTS["periodic_dim"]) if settings["periodic"] and members else (0, 0)
    spec = ModelSpec(pre.numeric_inputs, hidden, data.num_outputs, cfg.activation, embeddings, members,
                     settings["dropout"], periodic)
    step_macs = batch_size * spec.multiply_adds_per_row
    return TrainPlan(
        task=data.task, data_identity=data.identity,
        defaults="recipe" if data.is_recipe else "table",
        in_features=spec.in_features, embeddings=embeddings,
        out_features=spec.out_features, hidden=hidden, activation=cfg.activation, init=context.init,
        optimizer=settings["optimizer"], lr=settings["lr"], lr_schedule=settings["lr_schedule"],
        weight_decay=settings["weight_decay"], class_weight=settings["class_weight"], folds=folds,
        holdout=TABLE_DEFAULTS["holdout"] if folds == 1 else 0.0, members=members, periodic=periodic,
        dropout=settings["dropout"], label_smoothing=settings["label_smoothing"],
        epochs=settings["epochs"], eval_every=settings["eval_every"],
        patience=settings["patience"], monitor=monitor(data, folds), seed=cfg.seed,
        batch_size=batch_size, split_batches=cfg.split_batches,
        grad_accum=cfg.grad_accum, shuffle=shuffle, order_geometry=order_geometry(shuffle),
        num_processes=num_processes, global_batch=global_batch,
        steps_per_epoch=steps, optimizer_steps=settings["epochs"] * optimizer_steps_per_epoch(steps, cfg.grad_accum),
        data=context.data, ckpt_dir=cfg.ckpt_dir,
        checkpoint_every=cfg.checkpoint_every, save_on_signal=cfg.save_on_signal,
        keep_checkpoints=cfg.keep_checkpoints,
        log_with=tuple(cfg.log_with), chunk_rows=cfg.chunk_rows or default_chunk_rows(data.X_train.shape[1]),
        threads=cpu_threads(cfg.threads, context.local_processes, context.cpu_count, step_macs),
        timeout=cfg.timeout, resume=context.resume,
    )


def monitor(data: TabularData, folds: int) -> str:
    """The validation loss (the test loss where there are no validation rows, as the recipes
    have it); a user's classification table is judged by its out-of-fold macro-F1 instead: on
    small imbalanced tables the loss is lowest while the model still predicts the majority
    class almost everywhere, and macro-F1 is the figure the table is compared by."""
    if not (data.n_val or folds):
        return "test_loss"
    return "val_f1_macro" if data.task == "classification" and not data.is_recipe else "val_loss"


def check_settings(cfg: TrainConfig) -> None:
    """The settings that need no data set: the same verdict on every process. The ranges of the
    integer settings were checked as they were parsed (common/config.py `check_setting`)."""
    if not 0 <= cfg.seed < 2**32:
        raise UserError(f"--seed must lie in [0, 2**32), got {cfg.seed}")
    check_trackers(cfg.log_with)


def check_resolved(settings: dict[str, Any], n_train: int, n_val: int, num_processes: int,
                   split_batches: bool) -> None:
    for name in ("epochs", "batch_size", "eval_every", "patience", "folds", "periodic"):  # what the data set sized
        check_setting(TrainConfig, name, settings[name])
    for name in ("dropout", "label_smoothing"):
        if not 0 <= settings[name] < 1:
            raise UserError(f"--{name.replace('_', '-')} must lie in [0, 1), got {settings[name]}")
    if not 0 <= settings["weight_decay"] < math.inf:
        raise UserError(f"--weight-decay must be a number >= 0, got {settings['weight_decay']}")
    if settings["folds"] and n_val:
        raise UserError("--folds validates on folds of the training rows, and this data set has a validation "
                        "split of its own: remake it with make_data.py --val-size 0, or give --folds 0")
    if settings["patience"] and not (n_val or settings["folds"]):
        raise UserError("--patience needs validation rows to stop on, and this data set has none: "
                        "remake it with make_data.py --val-size 0.1 (or drop --patience)")
    if not settings["lr"] > 0 or not math.isfinite(settings["lr"]):
        raise UserError(f"--lr must be a positive number, got {settings['lr']}")
    if num_processes > n_train:
        raise UserError(f"{num_processes} processes but only {n_train} training rows: launch fewer processes")
    if settings["folds"] > n_train:
        raise UserError(f"--folds {settings['folds']} needs as many training rows, and there are {n_train}: "
                        "choose fewer folds")
    if split_batches and settings["batch_size"] < num_processes:
        raise UserError(f"--split-batches needs --batch-size >= {num_processes} (one row per process)")


def check_trackers(names: list[str]) -> None:
    """Every tracker Accelerate supports is accepted, provided its package is installed."""
    if not names:
        return
    from accelerate.tracking import get_available_trackers
    from accelerate.utils import LoggerType

    known = [str(t.value) for t in LoggerType if t is not LoggerType.ALL]
    installed = {str(t.value) if isinstance(t, LoggerType) else str(t) for t in get_available_trackers()}
    for name in names:
        if name not in known:
            raise UserError(f"--log-with {name}: not a tracker Accelerate knows; choose from {', '.join(known)}")
        if name not in installed:
            raise UserError(f"--log-with {name} needs the {name} package: pip install {name}")


def cpu_threads(requested: int, local_processes: int, cpu_count: int, step_macs: int) -> int:
    """Intra-op threads per process.

    Processes on one machine share its cores: each gets cores / local processes, never all of
    them. A step as small as the recipe's (1024 rows x 300 weights) gains ~10% from a second
    thread on an idle machine but becomes many times slower as soon as anything else runs,
    because the threads spin waiting for each other; such steps get one thread. So do steps
    up to SMALL_STEP_MACS: two epochs of a 5-member ensemble (256 rows x 250k weights a step)
    took 22 s with two threads inside train.py on 2 cores, where its own display and heartbeat
    threads run beside it, and 2.8 s, start-up included, with one.
    """
    if requested > 0:
        return requested
    if step_macs < SMALL_STEP_MACS:
        return 1
    return max(1, cpu_count // max(1, local_processes))
