"""Typed configs, the recipes' numbers, and the one function that turns a dataclass into a command line.

Each script has one dataclass; every field becomes a `--flag` with its type, its default
and its help text, so `--help` lists every setting. A setting whose default depends on the
task is `None` here (the user left it unset) and takes its value from `RECIPES`, the only
place the recipes' numbers are written: the run plan (common/train/run_plan.py) and make_data.py read
them from here, and `--help` shows them from here.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any, Literal, NoReturn, TypeVar

from common.errors import HelpPrinted, UserError
from common.importance import LABELLED_ROWS, RUN_ROWS

T = TypeVar("T")
PREDICT_BATCH_ROWS = 65_536  # rows read, predicted and written together: infer.py's and the Python API's
MISSING = object()
Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = typing.get_args(Task)

# The two recipes, per task: how make_data.py generates their data, and how train.py trains on
# it. A setting that only tables use (cross-fitting, periodic embeddings, ...) is off for the
# recipes: its field says so with `off=`.
RECIPES: dict[str, dict[str, Any]] = {
    "classification": {
        "n_samples": 100_000, "n_features": 10, "n_informative": 5,
        "epochs": 101, "batch_size": 1024, "lr": 1e-3, "optimizer": "adam", "hidden": [20], "eval_every": 5,
    },
    "regression": {
        "n_samples": 1000, "n_features": 5, "n_informative": 3,
        "epochs": 401, "batch_size": 512, "lr": 0.01, "optimizer": "sgd", "hidden": [], "eval_every": 50,
    },
}


# Any other table (a user's file, a shipped data set): settings sized from the data by
# common/train/defaults.py `table_settings`, from these values and constants.
TABLE_DEFAULTS: dict[str, Any] = {
    "hidden": [128, 128], "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-4,
    "lr_schedule": "cosine",      # to zero over the run: the last epochs settle instead of jumping around
    # No dropout: its masks are drawn per process, so a DDP run would no longer train the very
    # weights one process trains (--dropout is there for those who prefer it to that guarantee).
    "dropout": 0.0, "label_smoothing": 0.1,
    "periodic": 16,               # periodic embeddings of each numeric input: 16 frequencies -> 3 values
    "periodic_dim": 3,
    "folds": 5,                   # cross-fitting: k members, each validated on the fold it never trains on ...
    "max_crossfit_rows": 30_000,  # ... up to this many training rows; above, one member and a validation fold
    "holdout": 0.1,               # the validation fold's share of the rows above that size ...
    "max_holdout_rows": 25_000,   # ... up to this many rows: on plentiful data the rest train
    "rows_per_step": 32,          # batch ~ training rows / 32, a power of two in [min_batch, max_batch]
    "min_batch": 32, "max_batch": 256,
    "optimizer_steps": 3000,      # epochs enough for about this many steps ...
    "max_row_passes": 2_000_000,  # ... and no more than this many rows (times members) in the planned run,
                                  # which goes on in legs while its best evaluation comes late, to at most
                                  # twice its epochs (--extend-epochs) ...
    "min_epochs": 8, "max_epochs": 300,  # ... within these bounds (the least yields to the row budget past 250k rows)
    "evaluations": 60,            # about this many evaluations over the run (every epoch on small tables) ...
    "patience": 16,               # ... stopping after this many without a better validation figure, best weights
                                  # kept ...
    "min_patience": 8,            # ... or sooner, after as many as it took to reach the best (at least this many;
                                  # bench/README.md section 7, "Stopping after an early best")
    "class_weight": "none",       # imbalance: weighting moved predictions onto rare classes and cost macro-F1 ...
    "decision": "threshold",      # ... a threshold fitted out of fold (two classes) lifted it (common/decision.py)
}


def recipe_value(task: str, name: str) -> Any:
    """The recipe's value of a setting: its own number, or the `off` of a setting only tables use."""
    value = RECIPES[task].get(name, MISSING)
    if value is MISSING:
        value = next(f.metadata["off"] for f in dataclasses.fields(TrainConfig) if f.name == name)
    return copied(value)


def copied(value: Any) -> Any:
    """A list setting copied, so the recipes and the table defaults stay as written."""
    return list(value) if isinstance(value, list) else value


def field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field that carries its help text for the command line."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help, **kwargs})
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def recipe_field(help: str, table: bool = False, **kwargs: Any) -> Any:
    """A setting left unset (None) takes the recipe's value for the data set's task, or, with
    `table`, a value sized from the data set for tables other than the recipes'."""
    return field(None, help, recipe=True, table=table, **kwargs)


def as_flag(name: str, value: Any) -> str:
    """A setting as the command line gives it: `--hidden 128 128`, `--no-split-batches`."""
    if isinstance(value, bool):
        return flag_name(name) if value else flag_name(name).replace("--", "--no-", 1)
    return f"{flag_name(name)} {shown_setting(value)}"


def shown_setting(value: Any) -> str:
    """A setting's value as the command line takes it (an empty list: none)."""
    if isinstance(value, list):
        return " ".join(map(str, value)) or "none"
    return str(value)


def table_default_text(name: str) -> str:
    """A table setting's default on tables other than the recipes', as --help states it."""
    d = TABLE_DEFAULTS
    depends = {"folds": f"{d['folds']} up to {d['max_crossfit_rows']:,} training rows, else 1, and 0 where the data "
                        "set has a validation split",
               "label_smoothing": f"{d['label_smoothing']} for classes, 0 for a regression",
               "decision": f"{d['decision']} for two classes with rows held out (out of fold), else argmax",
               "extend_epochs": f"twice the planned epochs (at most {d['max_epochs']}); 0 where --epochs is given"}
    if name in depends:
        return f"other tables: {depends[name]}"
    return f"{shown_setting(d[name])} on other tables" if name in d else "sized from the data for other tables"


def _default_text(f: dataclasses.Field, default: Any) -> str:
    if f.metadata.get("recipe"):
        values = " / ".join(shown_setting(recipe_value(task, f.name)) for task in TASKS)
        suffix = f"; {table_default_text(f.name)}" if f.metadata.get("table") else ""
        return f"{values} ({' / '.join(TASKS)} recipes{suffix})"
    return str(f.metadata.get("default_help", default))


def _unwrap_optional(tp: Any) -> Any:
    """`X | None` -> X; anything else unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def flag_name(name: str) -> str:
    """The command-line spelling of a config field: `grad_accum` -> `--grad-accum`."""
    return "--" + name.replace("_", "-")


def _add_argument(parser: argparse.ArgumentParser, f: dataclasses.Field, tp: Any) -> None:
    flag = flag_name(f.name)
    default = f.default_factory() if callable(f.default_factory) else f.default
    zero = f"; 0: {f.metadata['zero']}" if "zero" in f.metadata else ""
    help_text = f"{f.metadata.get('help', '')} (default: {_default_text(f, default)}{zero})".replace("%", "%%")
    tp = _unwrap_optional(tp)
    if tp is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
    elif typing.get_origin(tp) is Literal:
        choices = list(typing.get_args(tp))
        parser.add_argument(flag, choices=choices, type=type(choices[0]), default=default, help=help_text)
    elif typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        parser.add_argument(flag, nargs="*", action=_ListAction, type=item, default=default,
                            metavar=f.metadata.get("metavar", "N"), help=help_text)
    elif "const" in f.metadata:  # a flag that may stand alone: `--resume` or `--resume PATH`
        parser.add_argument(flag, type=tp, nargs="?", const=f.metadata["const"], default=default, help=help_text)
    else:
        parser.add_argument(flag, type=tp, default=default, metavar=f.metadata.get("metavar"), help=help_text)


class _ListAction(argparse.Action):
    """`--drop a b` sets the list and replaces the default; `--drop a --drop b` drops both."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.given = False

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        before = list(getattr(namespace, self.dest) or []) if self.given else []
        setattr(namespace, self.dest, before + list(values))
        self.given = True


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line through run_cli like every other user error (and printed once, not by
        # every process of a multi-process run), instead of argparse's usage block.
        raise UserError(f"{message} (see --help)")


def build_parser(cls: type, description: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        _add_argument(parser, f, hints[f.name])
    return parser


def asks_for_help(argv: Sequence[str]) -> bool:
    """`-h` or `--help` (or a prefix argparse takes for it): the script prints its help and exits
    (train.py: once, without a group or a Painter)."""
    return any(arg == "-h" or (len(arg) > 3 and "--help".startswith(arg)) for arg in argv)


def parse_config(cls: type[T], argv: Sequence[str] | None = None, description: str | None = None) -> T:
    """Parse `argv` into an instance of the dataclass `cls`, every bounded setting checked."""
    try:
        parsed = build_parser(cls, description).parse_args(argv)
    except SystemExit as done:
        if done.code in (0, None):
            raise HelpPrinted(0) from None
        raise
    cfg = cls(**vars(parsed))
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        check_setting(cls, f.name, getattr(cfg, f.name))
    return cfg


def check_setting(cls: type, name: str, value: Any) -> None:
    """The one range check of a setting, from its field's `minimum` and `maximum` (and the meaning
    of 0 where 0 is allowed), or `seed` or `character`. The run plan calls it again for the
    integer values it resolves itself."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if isinstance(value, str) and not value.strip() and not f.metadata.get("character"):
        # `--ckpt-dir ''` wrote the model into the current folder, `--csv ''` made the recipe's data
        raise UserError(f"{flag_name(name)} was given no text (an unset shell variable?): give it a value or leave "
                        "it out")
    if f.metadata.get("seed") and not 0 <= value < SEED_LIMIT:
        raise UserError(f"{flag_name(name)} must lie in [0, 2**32), got {value}")
    if f.metadata.get("character") and value is not None and len(value) != 1:
        raise UserError(f"{flag_name(name)} must be one character (, ; | or a tab: $'\\t'), got {value!r}")
    maximum = f.metadata.get("maximum")
    if maximum is not None and value is not None and value > maximum:
        raise UserError(f"{flag_name(name)} must be at most {maximum}, got {value}")
    minimum = f.metadata.get("minimum")
    if minimum is None or value is None or value >= minimum:
        return
    if minimum == 1:
        raise UserError(f"{flag_name(name)} must be a positive integer, got {value}")
    if minimum > 1:
        raise UserError(f"{flag_name(name)} must be at least {minimum}, got {value}")
    raise UserError(f"{flag_name(name)} must be 0 ({f.metadata['zero']}) or positive, got {value}")


SEED_LIMIT = 2**32  # numpy's and torch's generators take seeds in [0, 2**32)
MAX_THREADS = 1024  # beyond the largest machines' cores; OpenMP fails to start ~20,000 (a crash, not an error)


def seed_setting(help: str) -> Any:
    """A seed, 42 by default, checked against SEED_LIMIT as it is parsed (check_setting)."""
    return field(42, help, seed=True)


def positive(default: Any, help: str, **kwargs: Any) -> Any:
    """An integer setting of at least 1."""
    return field(default, help, minimum=1, **kwargs)


def count(default: Any, help: str, zero: str, **kwargs: Any) -> Any:
    """An integer setting of at least 0, where 0 means `zero` ("off", "automatic")."""
    return field(default, help, minimum=0, zero=zero, **kwargs)


@dataclasses.dataclass
class MakeDataConfig:
    """make_data.py: generate a data set the way the recipes do, or read a user's table."""

    task: Task | None = field(None, "the task", default_help="classification for the synthetic recipe; "
                              "inferred from the target for --csv; the data set's own for --dataset")
    csv: str | None = field(None, "read a table instead of generating data: a CSV file with a header, or Parquet")
    target: str | None = field(None, "the column to predict (with --csv); rows without a value are dropped")
    sep: str | None = field(None, "the CSV delimiter", default_help="detected from the header: , ; tab or |",
                            character=True)
    categorical: list[str] = field([], "columns to treat as categorical (e.g. integer codes)", metavar="COL")
    numeric: list[str] = field([], "columns to treat as numeric", metavar="COL")
    drop: list[str] = field([], "columns to leave out", metavar="COL")
    id: list[str] = field([], "id columns: never features, copied into predictions", metavar="COL")
    date: list[str] = field([], "date columns (dates year first, 2012-01-31, with a time and zone or without): their "
                                "instant and their cycles (day of year, month and week, time of day)", metavar="COL")
    scaling: Literal["quantile", "standard"] | None = field(
        None, "a --csv table's numeric columns into the model: quantile (training quantiles mapped onto "
              "a normal: skew and outliers spread evenly) or standard (training mean and scale)",
        default_help="quantile (the recipes and shipped data sets: standard)")
    target_transform: Literal["auto", "log_link", "log1p", "none"] = field(
        "auto", "how a --csv table's regression target is modelled: log_link (the model predicts log E[y], "
                "trained on the Poisson deviance), log1p (squared error on log1p(y)) or none (squared error "
                "on y); auto: log_link for a skewed target that is never negative, else none")
    max_levels: int = positive(5000, "most frequent levels kept per categorical column; the rest share one code")
    min_level_rows: int = positive(2, "training rows a level needs to get its own code")
    integer_codes: bool = field(True, "also give a column of whole numbers that repeat like codes (12 or more "
                                "values, 50 or more training rows each on average, in a table of 5,000 or more, "
                                "whose neighbouring values do not move the target alike; fractions that repeat "
                                "exactly, 5 to 50 rows each) a view as categories beside its numeric one; "
                                "--numeric COL keeps one column a number only")
    dataset: Literal["iris", "wine", "breast_cancer", "digits", "diabetes"] | None = field(
        None, "use a data set that scikit-learn ships (no download)")
    n_samples: int | None = recipe_field("rows to generate", minimum=1)
    n_features: int | None = recipe_field("feature columns", minimum=1)
    n_informative: int | None = recipe_field("informative features")
    n_redundant: int = field(2, "linear combinations of informative features (classification)")
    n_classes: int = field(3, "classes (classification)", minimum=2)
    n_clusters_per_class: int = field(1, "clusters per class (classification)")
    flip_y: float = field(0.05, "fraction of labels flipped at random, as noise (classification)")
    bias: float = field(1.0, "intercept of the linear target (regression)")
    noise: float = field(1.0, "standard deviation of the target noise (regression)")
    seed: int = seed_setting("random seed of the generator and the split")
    test_size: float | None = field(None, "fraction of rows held out for testing (a locked test set)",
                                    default_help="0.2 for the recipes and shipped data sets; 0 for a --csv table, "
                                                 "whose every labelled row trains (train.py cross-fits)")
    val_size: float = field(0.0, "fraction of rows held out for validation (train.py then validates on them "
                                 "instead of cross-fitting)")
    out_dir: str = field("data", "folder to write the data set to")


@dataclasses.dataclass
class TrainConfig:
    """train.py's command line; common/train/run_plan.py resolves it into the run plan."""

    data: str = field("data/cls_data", "data set written by make_data.py")
    ckpt_dir: str = field("ckpt", "folder for the model, its config and metrics")
    epochs: int | None = recipe_field("passes over the training set", table=True, minimum=1)
    batch_size: int | None = recipe_field("rows per batch and process (per step with --split-batches)",
                                          table=True, minimum=1)
    lr: float | None = recipe_field("learning rate", table=True)
    optimizer: Literal["adam", "adamw", "sgd"] | None = recipe_field("optimizer", table=True)
    hidden: list[int] | None = recipe_field("hidden layer widths; a bare --hidden, no widths, for a linear model",
                                            table=True)
    activation: Literal["relu", "sigmoid", "tanh", "gelu", "silu"] = field("relu", "activation between layers")
    folds: int | None = recipe_field("cross-fitting: k members, member i validated on fold i of the training rows and "
                                     "trained on the others, predictions averaged; 1: one member, a validation fold",
                                     table=True, minimum=0, zero="every training row trains, validated on the "
                                     "validation split", off=0)
    dropout: float | None = recipe_field("dropout after each hidden layer (tables)", table=True, off=0.0)
    weight_decay: float | None = recipe_field("weight decay: decoupled with adamw, an L2 term added to the gradient "
                                              "with adam and sgd (torch's weight_decay)", table=True, off=0.0)
    label_smoothing: float | None = recipe_field("label smoothing of the training loss (classification)", table=True,
                                                 off=0.0)
    periodic: int | None = recipe_field("periodic embeddings of each numeric input with N frequencies",
                                        table=True, minimum=0, zero="off", off=0)
    eval_every: int | None = recipe_field("evaluate every N epochs (and after the last of each leg)", table=True,
                                          minimum=1)
    seed: int = seed_setting("seed of the initial weights and the shuffling")
    split_batches: bool = field(False, "split each global batch of --batch-size rows across processes")
    init_from: str | None = field(None, "start from these weights (a model folder, or its model.safetensors) "
                                        "instead of a random init")
    threads: int = count(0, "intra-op CPU threads per process", zero="one for small models, else cores / local "
                         "processes", maximum=MAX_THREADS)
    class_weight: Literal["none", "balanced"] | None = recipe_field(
        "weigh each class's loss by n / (classes x its rows), against imbalance (classification)", table=True,
        off="none")
    decision: Literal["argmax", "threshold"] | None = recipe_field(
        "how probabilities become classes: the most probable, or (two classes) a threshold on the second's "
        "probability, the one whose neighbourhood has the best macro-F1 on the rows the model never trained on, "
        "where it beats the most probable class there (classification)", table=True, off="argmax")
    log_with: list[str] = field([], "also log metrics to these trackers that Accelerate supports (tensorboard, "
                                    "wandb, mlflow, comet_ml, aim, clearml, dvclive, ...), under <ckpt-dir>",
                                metavar="TRACKER")
    lr_schedule: Literal["constant", "cosine", "step"] | None = recipe_field(
        "learning rate over the optimizer steps: constant, cosine to zero, or /10 at 50% and 75%", table=True,
        off="constant")
    grad_accum: int = positive(1, "accumulate gradients over N batches per optimizer step")
    patience: int | None = recipe_field("stop after N evaluations without a better validation figure (sooner with "
                                        "--min-patience; a leg of --extend-epochs runs whole) and keep the best "
                                        "weights", table=True, minimum=0,
                                        zero="off", off=0)
    extend_epochs: int | None = recipe_field(
        "where the validation figure is still improving at the end of the planned epochs (its best in their last "
        "quarter), train on in a leg of half as many epochs at half the peak learning rate, cosine to zero, and again "
        "after each leg whose best is in its last quarter, up to N epochs in all (cosine schedule)",
        table=True, minimum=0, zero="off", off=0)
    min_patience: int | None = recipe_field(
        "with --patience, stop sooner where the best came early: after as many evaluations without a better "
        "figure as it took to reach the best, at least N (and at most --patience)",
        table=True, minimum=0, zero="off, always --patience", off=0)
    checkpoint_every: int = count(0, "save the full training state every N epochs under <ckpt-dir>/checkpoints",
                                  zero="off")
    save_on_signal: bool = field(False, "on SIGTERM or Ctrl-C, save a checkpoint at the step where the run stops "
                                        "(always done with --checkpoint-every)")
    keep_checkpoints: int = positive(2, "how many of the latest checkpoints to keep")
    resume: str | None = field(None, "continue from the latest checkpoint, or from the checkpoint folder given",
                               const="latest")
    timeout: int = positive(600, "seconds a process waits for the others (to start, or in a step) before the run "
                              "stops with a message")
    shuffle: Literal["auto", "rows", "blocks"] = field(
        "auto", "the order of each epoch: one permutation of the rows, or blocks of 4096 rows permuted and "
                "shuffled within windows of ~1M rows (constant memory); auto: rows up to 4M training rows")
    chunk_rows: int = count(0, "training rows each process gathers from the data set at once (memory)",
                            zero="16 MiB of inputs")
    pictures: bool = field(True, "draw curves.png, importance.png and confusion.png into <ckpt-dir> (matplotlib)")
    importance_rows: int = count(RUN_ROWS, "rows on which each column's permutation importance is measured at the "
                                           "end (a sample where there are more; its time grows with rows x columns)",
                                 zero="no importance")


@dataclasses.dataclass
class InferConfig:
    """infer.py: evaluate a trained model on its test split, or predict rows from a file."""

    ckpt_dir: str = field("ckpt", "model folder written by train.py")
    data: str | None = field(None, "data set to evaluate on", default_help="the one recorded in config.json")
    metrics_json: str | None = field(None, "also write the evaluation figures to this JSON file")
    input: str | None = field(None, "raw rows to predict: a table (.csv with a header, or Parquet) or a .npy array")
    sep: str | None = field(None, "the input CSV's delimiter", default_help="detected from the header",
                            character=True)
    output: str | None = field(None, "where to write predictions: .csv, .parquet, or .npz for speed",
                               default_help="<input stem>.pred.csv beside the input")
    batch_size: int = positive(PREDICT_BATCH_ROWS, "rows read, predicted and written at a time")
    importance: bool = field(False, "with --input rows that carry the target: also each column's permutation "
                                    "importance there")
    importance_rows: int = positive(LABELLED_ROWS, "labelled rows --importance shuffles, at most (a uniform sample "
                                                   "of more)")
