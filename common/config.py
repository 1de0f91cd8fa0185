"""Typed configs and the one function that turns a dataclass into a command line.

Each script has one dataclass; every field becomes a `--flag` with its type, its
default and its help text, so `--help` lists every setting.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Literal, Optional, Sequence, TypeVar

T = TypeVar("T")


def field(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field that carries its help text for the command line."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help, **kwargs})
    return dataclasses.field(default=default, metadata={"help": help, **kwargs})


def _unwrap_optional(tp: Any) -> Any:
    """`Optional[X]` -> X; anything else unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _add_argument(parser: argparse.ArgumentParser, f: dataclasses.Field, tp: Any) -> None:
    flag = "--" + f.name.replace("_", "-")
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    shown = f.metadata.get("default_help", default)
    help_text = f"{f.metadata.get('help', '')} (default: {shown})".replace("%", "%%")  # argparse formats help
    tp = _unwrap_optional(tp)
    if tp is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
    elif typing.get_origin(tp) is Literal:
        choices = list(typing.get_args(tp))
        parser.add_argument(flag, choices=choices, type=type(choices[0]), default=default, help=help_text)
    elif typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        parser.add_argument(flag, nargs="*", type=item, default=default, metavar="N", help=help_text)
    elif "const" in f.metadata:  # a flag that may stand alone: `--resume` or `--resume PATH`
        parser.add_argument(flag, type=tp, nargs="?", const=f.metadata["const"], default=default, help=help_text)
    else:
        parser.add_argument(flag, type=tp, default=default, metavar=f.metadata.get("metavar"), help=help_text)


def build_parser(cls: type, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        _add_argument(parser, f, hints[f.name])
    return parser


def parse_config(cls: type[T], argv: Sequence[str] | None = None, description: str | None = None) -> T:
    """Parse `argv` into an instance of the dataclass `cls`."""
    args = build_parser(cls, description).parse_args(argv)
    return cls(**vars(args))


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


Task = Literal["classification", "regression"]


@dataclasses.dataclass
class MakeDataConfig:
    """make_data.py: generate a data set the way the recipes do; None means the task's recipe value."""

    task: Optional[Task] = field(None, "the task", default_help="classification for the synthetic recipe; "
                                 "inferred from the target for --csv; the data set's own for --dataset")
    csv: Optional[str] = field(None, "read a CSV file with a header instead of generating data")
    target: Optional[str] = field(None, "the CSV column to predict (with --csv)")
    dataset: Optional[Literal["iris", "wine", "breast_cancer", "digits", "diabetes"]] = field(
        None, "use a data set that scikit-learn ships (no download)")
    n_samples: Optional[int] = field(None, "rows to generate", default_help="100000 / 1000 (classification / regression)")
    n_features: Optional[int] = field(None, "feature columns", default_help="10 / 5")
    n_informative: Optional[int] = field(None, "informative features", default_help="5 / 3")
    n_redundant: int = field(2, "linear combinations of informative features (classification)")
    n_classes: int = field(3, "classes (classification)")
    n_clusters_per_class: int = field(1, "clusters per class (classification)")
    flip_y: float = field(0.05, "fraction of labels flipped at random, as noise (classification)")
    bias: float = field(1.0, "intercept of the linear target (regression)")
    noise: float = field(1.0, "standard deviation of the target noise (regression)")
    seed: int = field(42, "random seed of the generator and the split")
    test_size: float = field(0.2, "fraction of rows held out for testing")
    out_dir: str = field("data", "folder to write the data set to")


@dataclasses.dataclass
class TrainConfig:
    """train.py: None means the recipe value for the data set's task."""

    data: str = field("data/cls_data.npz", "data set written by make_data.py")
    ckpt_dir: str = field("ckpt", "folder for the model, its config and metrics")
    epochs: Optional[int] = field(None, "passes over the training set", default_help="101 / 401 (classification / regression)")
    batch_size: Optional[int] = field(None, "rows per batch and process (per step with --split-batches)", default_help="1024 / 512")
    lr: Optional[float] = field(None, "learning rate", default_help="1e-3 / 0.01")
    optimizer: Optional[Literal["adam", "sgd"]] = field(None, "optimizer", default_help="adam / sgd")
    hidden: Optional[list[int]] = field(None, "hidden layer widths; none for a linear model", default_help="20 / none")
    activation: Literal["relu", "sigmoid", "tanh", "gelu"] = field("relu", "activation between layers")
    eval_every: Optional[int] = field(None, "evaluate every N epochs (and after the last)", default_help="5 / 50")
    seed: int = field(42, "seed of the initial weights and the shuffling")
    split_batches: bool = field(False, "split each global batch of --batch-size rows across processes")
    init_from: Optional[str] = field(None, "start from these weights (a model.safetensors) instead of a random init")
    threads: int = field(0, "intra-op CPU threads per process; 0 picks cores / local processes")
    class_weight: Literal["none", "balanced"] = field(
        "none", "weigh each class's loss by n / (classes x its rows), against imbalance (classification)")
    log_with: Optional[Literal["tensorboard"]] = field(None, "also log metrics for TensorBoard, under <ckpt-dir>/tensorboard")
    lr_schedule: Literal["constant", "cosine", "step"] = field(
        "constant", "learning rate over the optimizer steps: constant, cosine to zero, or /10 at 50% and 75%")
    grad_accum: int = field(1, "accumulate gradients over N batches per optimizer step")
    patience: int = field(0, "stop after N evaluations without a lower test loss and keep the best weights; 0: off")
    checkpoint_every: int = field(0, "save the full training state every N epochs under <ckpt-dir>/checkpoints; 0: off")
    keep_checkpoints: int = field(2, "how many of the latest checkpoints to keep")
    resume: Optional[str] = field(None, "continue from the latest checkpoint, or from the checkpoint folder given",
                                  const="latest")


@dataclasses.dataclass
class InferConfig:
    """infer.py: evaluate a trained model on its test split, or predict rows from a file."""

    ckpt_dir: str = field("ckpt", "model folder written by train.py")
    data: Optional[str] = field(None, "data set to evaluate on", default_help="the one recorded in config.json")
    metrics_json: Optional[str] = field(None, "also write the evaluation figures to this JSON file")
    input: Optional[str] = field(None, "raw feature rows to predict (.csv with a header, or .npy)")
    output: Optional[str] = field(None, "where to write predictions: .csv, or .npz for speed",
                                  default_help="<input>.pred.csv")
    batch_size: int = field(65536, "rows per forward pass")
