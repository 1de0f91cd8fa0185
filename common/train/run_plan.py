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

from common.config import TABLE_DEFAULTS, TrainConfig, as_flag, check_setting
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
from common.train.crossfit import CrossFit, holdout_share, monitor
from common.train.defaults import DATA_SIZED, resolved_settings
from common.train.early_stopping import Legs
from common.train.run_context import RunContext

SMALL_STEP_MACS = 1 << 28  # below this many multiply-adds per step, extra threads only cost


@dataclasses.dataclass(frozen=True)
class OptimPlan:
    optimizer: str
    lr: float
    lr_schedule: str
    weight_decay: float
    class_weight: str
    label_smoothing: float


@dataclasses.dataclass(frozen=True)
class LoopPlan:
    epochs: int
    eval_every: int
    patience: int
    min_patience: int             # 0: patience alone; else fewer than patience (BestTracker.waiting_limit)
    monitor: str                  # what picks the best weights and stops early: val_loss, test_loss, val_f1_macro,
                                  # train_loss
    extend_epochs: int            # 0: `epochs` is the run; else the most it may reach in legs (early_stopping.Legs)

    def evaluates(self, epoch: int, end: int) -> bool:
        """Every `eval_every` epochs, and after the last of the epochs planned so far (`end`)."""
        return epoch % self.eval_every == 0 or epoch == end - 1


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    batch_size: int               # as given: per process, or per step with split_batches
    split_batches: bool
    grad_accum: int
    shuffle: str                  # "rows" or "blocks" (common/train/batching.py)
    order_geometry: str           # for blocks: rows per block x blocks per window; "" for rows
    global_batch: int             # rows per step over all processes
    steps_per_epoch: int
    optimizer_steps: int          # in the planned epochs: what the schedule spans (a leg restarts it)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How the run is carried out, not what it computes: free to change on --resume."""
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
    pictures: bool                # draw the run's pictures (common/figures.py)
    importance_rows: int          # rows the end-of-run importance shuffles, at most; 0: none
    decision: str                 # how the final weights' probabilities become classes (common/decision.py):
                                  # decided after training, so a resumed run may choose anew


@dataclasses.dataclass(frozen=True)
class TrainPlan:
    """Every part but `run` is what the run computes: --resume refuses a plan that differs in any
    of their fields, including any added later (default-deny)."""
    task: str
    data_identity: str            # the data set's content (arrays and description): what resume compares
    defaults: str                 # where unset settings came from: "recipe", or "table" (sized from the data)
    init: str                     # "random" (from the seed), or the weights file it starts from
    seed: int
    num_processes: int
    model: ModelSpec
    optim: OptimPlan
    loop: LoopPlan
    batches: BatchPlan
    crossfit: CrossFit
    run: RunOptions

    def describe(self) -> str:
        """The resolved settings in one line, as train.py prints them."""
        m, o, loop, b = self.model, self.optim, self.loop, self.batches
        model = " ".join(map(str, m.hidden)) or "none (linear)"
        legs = f" (on to {loop.extend_epochs} while the best comes late)" if loop.extend_epochs else ""
        stop = f", stop after {loop.patience} evaluations without a better {loop.monitor}" if loop.patience else ""
        if loop.min_patience:
            stop += f" (or as many as the best took, at least {loop.min_patience})"
        return (f"{self.defaults} settings: {self.crossfit.describe(m.members)}hidden {model}, {o.optimizer} "
                f"lr {o.lr:g}, batch {b.batch_size} ({b.steps_per_epoch} steps/epoch), {loop.epochs} epochs{legs}, "
                f"evaluate every {loop.eval_every}{stop}")

    def as_dict(self) -> dict[str, Any]:
        """The plan as the run record and checkpoints hold it: one flat object of settings (each
        part's field names are unique), tuples as lists."""
        flat: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            is_part = dataclasses.is_dataclass(value) and not isinstance(value, type)
            flat.update(dataclasses.asdict(value) if is_part else {f.name: value})
        return json.loads(json.dumps(flat))


RUN_ONLY = frozenset(f.name for f in dataclasses.fields(RunOptions))
# Recorded by the previous version's checkpoints and compared no more: a hash of the data set's
# files, which data_identity (its content) replaced; and a field that has another name now.
RETIRED = frozenset({"data_fingerprint"})
RENAMED = {"embeddings": "categorical"}
# Fields added since, as a checkpoint saved before them ran: such a run resumes with them so.
BEFORE_ADDED = {"min_patience": 0, "extend_epochs": 0}


ABSENT = "(absent)"  # a field on one side only


def changed_fields(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """(saved, current) of each compared field that differs (or exists on one side only)."""
    added = {k: v for k, v in BEFORE_ADDED.items() if k in current}
    saved = {**added, **{RENAMED.get(k, k): v for k, v in saved.items()}}
    compared = (saved.keys() | current.keys()) - RUN_ONLY - RETIRED
    return {k: (saved.get(k, ABSENT), current.get(k, ABSENT)) for k in sorted(compared)
            if saved.get(k) != current.get(k)}


def plan_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'name: saved -> current' for each compared field that differs."""
    return in_words(changed_fields(saved, current))


def in_words(changed: dict[str, tuple[Any, Any]]) -> list[str]:
    """changed_fields as 'name: saved -> current'."""
    return [f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items()]


# Sized from the data set with no flag of their own: a checkpoint that an earlier version sized
# otherwise cannot be matched by a flag.
UNFLAGGED_SIZES = frozenset({"holdout"})


def check_resumable(saved: dict[str, Any], plan: TrainPlan, checkpoint: str) -> None:
    """A resumed run continues the same trajectory only with the same plan."""
    changed = changed_fields(saved, plan.as_dict())
    listed = ", ".join(in_words(changed))
    if "data_identity" in changed:
        raise UserError(f"cannot resume {checkpoint} on other data: the arrays or the description of {plan.run.data} "
                        "differ from those the checkpoint trained on; pass --data the data set it trained on "
                        "(it may have moved: its content is what counts)")
    if changed.keys() & UNFLAGGED_SIZES:
        raise UserError(f"cannot resume {checkpoint}: an earlier version sized its run otherwise ({listed}), and no "
                        "flag sets that; start afresh (drop --resume)")
    if changed:
        flags = {f.name for f in dataclasses.fields(TrainConfig)}
        given = " ".join(as_flag(k, old) for k, (old, _) in changed.items() if k in flags and old != ABSENT)
        processes = changed.get("num_processes", (ABSENT, None))[0]
        if processes != ABSENT:  # a launch's, not a flag of train.py's
            launch = "plain `python train.py`" if processes == 1 else f"`accelerate launch --num_processes {processes}`"
            given = f"{given} under {launch}".strip()
        raise UserError(f"cannot resume {checkpoint} with other settings ({listed}): rerun with the checkpoint's "
                        f"settings{f' ({given})' if given else ''}")


def make_plan(cfg: TrainConfig, data: TabularData, context: RunContext) -> TrainPlan:
    """Every setting resolved and checked against the data set and the process count. Reads no file."""
    check_settings(cfg)
    P = context.num_processes
    settings = resolved_settings(cfg, data, P)
    check_resolved(settings, len(data.X_train), data.n_val, P, cfg.split_batches, cfg.patience is not None)
    if settings["class_weight"] != "none" and data.task != "classification":
        raise UserError(f"--class-weight {settings['class_weight']} weighs classes, and this is a {data.task} "
                        "data set: drop it")
    holdout = holdout_share(len(data.X_train), TABLE_DEFAULTS["holdout"], TABLE_DEFAULTS["max_holdout_rows"])
    crossfit = CrossFit(settings["folds"], holdout if settings["folds"] == 1 else 0.0)
    settings["decision"] = resolved_decision(cfg, settings["decision"], data, data.n_val > 0 or crossfit.validates)
    settings["min_patience"] = effective_min_patience(settings, cfg.min_patience is not None)
    settings["extend_epochs"] = effective_extension(settings, cfg.extend_epochs is not None, data.n_val > 0,
                                                    cfg.epochs is not None)
    model = model_of(cfg, settings, data, crossfit)
    check_fits(model, settings, context.memory, context.local_processes)
    batches = batch_plan(cfg, settings, len(data.X_train), P)
    return TrainPlan(
        task=data.task, data_identity=data.identity, defaults="recipe" if data.is_recipe else "table",
        init=context.init, seed=cfg.seed, num_processes=P, model=model,
        optim=part(OptimPlan, settings), loop=part(LoopPlan, settings, monitor=monitor(
            data.task, crossfit, is_recipe=data.is_recipe, has_val=data.n_val > 0, has_test=len(data.X_test) > 0)),
        batches=batches, crossfit=crossfit,
        run=RunOptions(
            data=context.data, ckpt_dir=cfg.ckpt_dir, checkpoint_every=cfg.checkpoint_every,
            save_on_signal=cfg.save_on_signal, keep_checkpoints=cfg.keep_checkpoints, log_with=tuple(cfg.log_with),
            threads=cpu_threads(cfg.threads, context.sharing, context.cores,
                                settings["batch_size"] * model.multiply_adds_per_row),
            timeout=cfg.timeout, chunk_rows=cfg.chunk_rows or default_chunk_rows(data.X_train.shape[1]),
            resume=context.resume, pictures=cfg.pictures, importance_rows=cfg.importance_rows,
            decision=settings["decision"]))


FAR_BEYOND_MEMORY = 2  # a model refused before it is built needs this many times the free memory, or more


def check_fits(model: ModelSpec, settings: dict[str, Any], memory: int | None, local_processes: int) -> None:
    """A model far too large for the machine (`--hidden 100000000`), refused before it is built:
    its weights granted, then touched, woke the kernel's OOM killer (exit 137, no word) where
    memory is overcommitted. The processes on a machine each hold a copy; `memory` is the same
    figure on every process (process_group.least_free_memory). Only far beyond: the estimate
    is rough."""
    need = local_processes * model.training_bytes(settings["batch_size"], 1 if settings["optimizer"] == "sgd" else 2)
    if memory is not None and need > FAR_BEYOND_MEMORY * memory:
        raise UserError(f"the model would need about {need / 1e9:,.1f} GB (its weights, gradients and optimizer "
                        f"states, and a batch's activations), far beyond the {memory / 1e9:,.1f} GB free here: ask for "
                        "less (narrower layers, smaller batches), or run where there is more memory")


def effective_min_patience(settings: dict[str, Any], given: bool) -> int:
    """The minimum patience where it can shorten the patience, else 0 (the patience alone), so the
    plan records what the run does and a minimum that changes nothing never blocks a resume."""
    minimum, patience = settings["min_patience"], settings["patience"]
    if given and minimum and not patience:
        raise UserError(f"--min-patience {minimum} shortens the wait of --patience, and --patience is 0 (no early "
                        "stop): give --patience N too, or drop --min-patience")
    if given and minimum >= patience > 0:
        raise UserError(f"--min-patience {minimum} is not below --patience {patience}, so it would change nothing: "
                        "give a smaller one, or drop it")
    return minimum if 0 < minimum < patience else 0


def resolved_decision(cfg: TrainConfig, decision: str, data: TabularData, held_out: bool) -> str:
    """The decision the model makes, recorded as such: a two-class threshold needs two classes and
    rows the final weights never trained on to be fitted on (out of fold, or a validation split);
    asked for without them it is refused, and as a default it falls back to the most probable class."""
    if decision != "threshold":
        return decision
    two_classes = data.task == "classification" and data.num_outputs == 2
    if not two_classes and cfg.decision == "threshold":
        kind = f"is a {data.task}" if data.task != "classification" else f"has {data.num_outputs} classes"
        raise UserError(f"--decision threshold decides between two classes, and this data set {kind}: drop it")
    if two_classes and not held_out and cfg.decision == "threshold":
        raise UserError("--decision threshold is fitted on rows the model never trained on, and this run has none "
                        "(no --folds, no validation split): drop it, or pass --folds 5")
    return "threshold" if two_classes and held_out else "argmax"


def effective_extension(settings: dict[str, Any], given: bool, has_val: bool, epochs_given: bool) -> int:
    """The epochs a run may extend to, or 0 where it cannot go on (so the plan records what the
    run does): the legs restart a cosine schedule and follow a validation figure, and halve
    each time, so they reach no further than Legs.reach."""
    extend, epochs = settings["extend_epochs"], settings["epochs"]
    why = ""
    if settings["lr_schedule"] != "cosine":
        why = f"it trains on in legs of a cosine schedule, and --lr-schedule is {settings['lr_schedule']}"
    elif not (settings["folds"] or has_val):
        why = "it follows the validation figure, and there are no validation rows (no --folds, no validation split)"
    elif extend <= epochs:
        planned = f"--epochs {epochs}" if epochs_given else f"the {epochs} planned epochs"
        why = f"it is not above {planned}, so it would change nothing"
    if not extend or (why and not given):
        return 0
    if why:
        raise UserError(f"--extend-epochs {extend}: {why}; drop it, or give --extend-epochs 0")
    return min(extend, Legs.reach(epochs))


def part(cls: Any, settings: dict[str, Any], **computed: Any) -> Any:
    """A part of the plan from the resolved settings of its fields' names (and those computed here)."""
    return cls(**{f.name: settings[f.name] for f in dataclasses.fields(cls) if f.name not in computed}, **computed)


def model_of(cfg: TrainConfig, settings: dict[str, Any], data: TabularData, crossfit: CrossFit) -> ModelSpec:
    """The network: an ensemble (EnsembleNet) of the folds' members on any table, a plain network
    for the recipes unless they cross-fit; periodic numeric embeddings for ensembles only."""
    pre = data.preprocessor
    members = 0 if data.is_recipe and not crossfit.folds else max(1, crossfit.folds)
    periodic = (settings["periodic"], TABLE_DEFAULTS["periodic_dim"]) if settings["periodic"] and members else (0, 0)
    return ModelSpec(pre.numeric_inputs, tuple(settings["hidden"]), data.num_outputs, cfg.activation,
                     tuple((c.cardinality, embedding_size(c.cardinality)) for c in pre.categorical), members,
                     settings["dropout"], periodic)


def batch_plan(cfg: TrainConfig, settings: dict[str, Any], n_train: int, num_processes: int) -> BatchPlan:
    batch_size = settings["batch_size"]
    global_batch = batch_size if cfg.split_batches else batch_size * num_processes
    shuffle = resolve_shuffle(cfg.shuffle, n_train)
    steps = steps_per_epoch(n_train, global_batch)
    return BatchPlan(batch_size, cfg.split_batches, cfg.grad_accum, shuffle, order_geometry(shuffle), global_batch,
                     steps, settings["epochs"] * optimizer_steps_per_epoch(steps, cfg.grad_accum))


def check_settings(cfg: TrainConfig) -> None:
    """The settings that need no data set: the same verdict on every process. The ranges of the
    integer settings were checked as they were parsed (common/config.py `check_setting`)."""
    check_trackers(cfg.log_with)


# The settings that are numbers but no counts: their ranges need no data set.
RANGED_SETTINGS = ("dropout", "label_smoothing", "weight_decay", "lr")


def check_given(cfg: TrainConfig) -> None:
    """The settings given that a data set does not size, checked before one exists: fit() makes
    its data set only once they pass, so that a setting it would refuse replaces nothing. What
    the data set sizes (the epochs' plan, the patience left unsaid) is checked against it after."""
    check_settings(cfg)
    check_values({name: getattr(cfg, name) for name in RANGED_SETTINGS if getattr(cfg, name) is not None})
    if cfg.hidden is not None:
        ModelSpec(1, tuple(cfg.hidden), 1, cfg.activation)  # the network's own check of its widths
    if cfg.min_patience is not None and cfg.patience is not None:
        effective_min_patience({"min_patience": cfg.min_patience, "patience": cfg.patience}, given=True)


def check_values(settings: dict[str, Any]) -> None:
    """The ranges of the settings that are numbers but no counts, as far as `settings` holds them."""
    for name in ("dropout", "label_smoothing"):
        if name in settings and not 0 <= settings[name] < 1:
            raise UserError(f"--{name.replace('_', '-')} must lie in [0, 1), got {settings[name]}")
    if "weight_decay" in settings and not 0 <= settings["weight_decay"] < math.inf:
        raise UserError(f"--weight-decay must be a number >= 0, got {settings['weight_decay']}")
    if "lr" in settings and (not settings["lr"] > 0 or not math.isfinite(settings["lr"])):
        raise UserError(f"--lr must be a positive number, got {settings['lr']}")


def check_resolved(settings: dict[str, Any], n_train: int, n_val: int, num_processes: int,
                   split_batches: bool, patience_given: bool = True) -> None:
    for name in DATA_SIZED:  # what the data set sized: the integer settings' ranges
        check_setting(TrainConfig, name, settings[name])
    check_values(settings)
    if settings["folds"] and n_val:
        raise UserError("--folds validates on folds of the training rows, and this data set has a validation "
                        "split of its own: remake it with make_data.py --val-size 0, or give --folds 0")
    if settings["patience"] and not (n_val or settings["folds"]) and not patience_given:
        raise UserError("--folds 0 leaves no rows to validate on, and this data set has no validation split: "
                        f"a table's training stops after {settings['patience']} evaluations without a lower "
                        "validation loss; keep --folds, remake the data set with make_data.py --val-size 0.1, "
                        "or pass --patience 0 to train every epoch")
    if settings["patience"] and not (n_val or settings["folds"]):
        raise UserError("--patience needs validation rows to stop on, and this data set has none: "
                        "remake it with make_data.py --val-size 0.1 (or drop --patience)")
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


def cpu_threads(requested: int, sharing: int, cores: int, step_macs: int) -> int:
    """Intra-op threads per process.

    Processes on one machine share its cores: each gets cores / the processes `sharing` them,
    never all of them (a process pinned to cores of its own shares them with none). A step as
    small as the recipe's (1024 rows x 300 weights) gains ~10% from a second thread on an idle
    machine but becomes many times slower as soon as anything else runs, because the threads
    spin waiting for each other; such steps get one thread. So do steps
    up to SMALL_STEP_MACS: two epochs of a 5-member ensemble (256 rows x 250k weights a step)
    took 22 s with two threads inside train.py on 2 cores, where its own display and heartbeat
    threads run beside it, and 2.8 s, start-up included, with one.
    """
    if requested > 0:
        return requested
    if step_macs < SMALL_STEP_MACS:
        return 1
    return max(1, cores // max(1, sharing))
