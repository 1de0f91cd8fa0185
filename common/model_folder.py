"""The model folder that train.py writes and infer.py reads: its file names, config.json's one
schema (`ModelRecord`, parsed once into typed parts), and loading the model it describes."""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from common.decision import ThresholdFit
from common.errors import UserError
from common.files import lock_holder, read_json
from common.model import ModelSpec
from common.schema import Fields
from common.steps import Preprocessor, TargetStep, read_target

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"  # held by the run training in the folder (common/train/run_folder.run_lock)
IMPORTANCE_FILE = "importance.json"  # what a finished run writes beside the model, for a person
CARD_FILE = "README.md"              # (common/train/run_report.py)
PICTURES = ("curves.png", "importance.png", "confusion.png")
STATE_FILE = "trainer_state.json"    # a checkpoint folder's (common/train/checkpoints.py)

# config.json's format; 4: the target's modelling is one `target` object and the run's outcome
# sits under "outcome", where format 3 spread both over the top level (still read); 5: its steps
# may hold a date's (see dataset.json's format 6), which a reader of format 4 would misread; 6:
# a two-class model may decide by a threshold (`decision`), which a reader of format 5 would ignore,
# and its steps' views as codes may hold fractions (dataset.json's format 7).
CONFIG_FORMAT = 6
OLDEST_READ = 3
TASKS = ("classification", "regression")
CONFIG_FIX = "use the config.json that train.py wrote with these weights"
OUTCOME_KEYS = ("final_metrics", "epochs_run", "startup_seconds", "train_seconds", "weights", "legs")


@dataclasses.dataclass
class RunOutcome:
    """How the run went: the saved weights' figures, the best evaluation, epochs and timings."""

    final_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    epochs_run: int = 0
    startup_seconds: float = 0.0
    train_seconds: float = 0.0
    weights: str = "last"                  # "best": the best evaluation's weights were saved
    monitor: str = ""                      # what picked the best evaluation
    best_value: float | None = None
    best_epoch: int | None = None
    legs: list[int] = dataclasses.field(default_factory=list)  # epochs of each leg after the planned ones
    # The test split's figures as the model decides, where a two-class threshold decides (final_metrics
    # holds the kept evaluation's, by the most probable class, named alike): what infer.py reports.
    test_by_decision: dict[str, float] = dataclasses.field(default_factory=dict)
    # The same on the rows the threshold was fitted on (out of fold, or the validation rows): the
    # card's headline figures, where final_metrics' `val_*` are the most probable class's.
    val_by_decision: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        outcome = {k: getattr(self, k) for k in OUTCOME_KEYS}
        decided = {key: getattr(self, key) for key in ("test_by_decision", "val_by_decision") if getattr(self, key)}
        return {**outcome, **decided,
                "best": {"monitor": self.monitor, "value": self.best_value, "epoch": self.best_epoch}}

    @classmethod
    def read(cls, f: Fields) -> RunOutcome:
        o = f.nested("outcome", f.obj_of("outcome"))
        best = o.nested("best", o.obj_of("best"))
        return cls(o.obj_of("final_metrics"), o.integer("epochs_run"), o.number("startup_seconds"),
                   o.number("train_seconds"), o.text("weights", ("best", "last")), best.text("monitor"),
                   best.number("value", default=None), best.integer("epoch", default=None),
                   list(o.checked("legs", lambda v: isinstance(v, list) and all(type(n) is int and n > 0 for n in v),
                                  "a list of whole numbers above 0", default=[])),
                   o.obj_of("test_by_decision", default={}), o.obj_of("val_by_decision", default={}))

    @classmethod
    def read_flat(cls, f: Fields, monitor: str) -> RunOutcome:
        """Format 3's outcome: its keys at the top level, the best figure under `best_<monitor>`."""
        return cls(f.obj_of("final_metrics", default={}), f.integer("epochs_run", default=0),
                   f.number("startup_seconds", default=0.0), f.number("train_seconds", default=0.0),
                   f.text("weights", ("best", "last"), default="last"), monitor,
                   f.number(f"best_{monitor}", default=None), f.integer("best_epoch", default=None))


@dataclasses.dataclass
class ModelRecord:
    """config.json: what rebuilding and using the model takes (the network, task, inputs, labels,
    preprocessing, the target's modelling), and what traces it to its run (data, settings,
    processes, outcome, library versions). Written by train.py (common/train/run_record.py),
    read by infer.py."""

    task: str
    model: ModelSpec
    class_labels: list[Any] | None   # classification: label of output i
    preprocess: Preprocessor         # the fitted steps, replayed on new rows
    target: TargetStep | None        # regression: how y is modelled
    ids: list[str] = dataclasses.field(default_factory=list)  # id columns copied into predictions
    data: str | None = None          # the data set it was trained on
    training: dict[str, Any] = dataclasses.field(default_factory=dict)  # the run plan's settings
    num_processes: int = 1
    distributed_type: str = ""
    mixed_precision: str = ""
    device: str = ""                 # see common/train/run_record.device_name
    outcome: RunOutcome = dataclasses.field(default_factory=RunOutcome)
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    target_column: str | None = None  # the table column it predicts: a labelled input is scored on it
    decision: ThresholdFit | None = None  # two classes: the threshold that decides them (common/decision.py)
    weights_sha256: str | None = None  # the weights written with it (files.weights_digest); None: not kept
    target_boolean: bool = False     # classes of a true/false column: two words spelling false and true
    format: int = CONFIG_FORMAT  # the format it was read from; to_json writes today's

    @property
    def feature_names(self) -> list[str]:
        """The model's inputs, in order."""
        return self.preprocess.input_names

    @property
    def threshold(self) -> float | None:
        """The second class's probability above which it is predicted; None: the most probable class."""
        return self.decision.threshold if self.decision else None

    def to_json(self) -> dict[str, Any]:
        return {"format": CONFIG_FORMAT, "task": self.task, "model": self.model.to_json(),
                "feature_names": self.feature_names, "class_labels": self.class_labels,
                "preprocess": self.preprocess.to_json(), "target": self.target.to_json() if self.target else None,
                "ids": self.ids, "data": self.data, "training": self.training, "num_processes": self.num_processes,
                "distributed_type": self.distributed_type, "mixed_precision": self.mixed_precision,
                "device": self.device, "outcome": self.outcome.to_json(), "versions": self.versions,
                "target_column": self.target_column,
                "decision": self.decision.to_json() if self.decision else None,
                **({"weights_sha256": self.weights_sha256} if self.weights_sha256 else {}),
                **({"target_boolean": True} if self.target_boolean else {})}

    @classmethod
    def read(cls, obj: Any, path: str | Path) -> ModelRecord:
        """The record from parsed JSON (format 3 to 5), checked whole: a UserError naming `path`
        where a field is wrong or the parts disagree with each other."""
        f = Fields(obj, path, CONFIG_FIX)
        version = f.integer("format", minimum=1, default=1)
        if version > CONFIG_FORMAT:
            raise f.error(f"is of format {version}, newer than this code reads ({CONFIG_FORMAT})")
        if version < OLDEST_READ:
            raise f.error(f"was written by an older version of train.py (format {version}): retrain the model")
        task = f.text("task", TASKS)
        training = f.obj_of("training", default={})
        decision = f.obj_of("decision", default=None)
        outcome = RunOutcome.read(f) if version > OLDEST_READ else \
            RunOutcome.read_flat(f, str(training.get("monitor", "")))
        record = cls(task, ModelSpec.read(f), f.labels("class_labels") if task == "classification" else None,
                     Preprocessor.read(f), read_target(f, task, split_form=version == OLDEST_READ),
                     f.texts("ids", default=[]), f.text("data", default=None), training,
                     f.integer("num_processes", minimum=1, default=1), f.text("distributed_type", default=""),
                     f.text("mixed_precision", default=""), f.text("device", default=""), outcome,
                     f.obj_of("versions", default={}), f.text("target_column", default=None),
                     ThresholdFit.read(f.nested("decision", decision)) if decision else None,
                     f.text("weights_sha256", default=None),
                     f.checked("target_boolean", lambda v: isinstance(v, bool), "true or false", default=False),
                     version)
        problem = record.disagreement(f.texts("feature_names"))
        if problem:
            raise f.error(problem)
        return record

    def disagreement(self, names: list[str]) -> str | None:
        """Where the parts of a well-formed config.json disagree with each other, or None."""
        spec = self.model
        inputs = spec.in_features + len(spec.categorical)
        if not inputs:
            return f"describes a model without inputs ({spec.to_json()!r})"
        if len(names) != inputs:
            return f"names {len(names)} inputs but the model takes {inputs}"
        if len(self.preprocess.input_names) != inputs:
            return f"has preprocessing for {len(self.preprocess.input_names)} inputs but the model takes {inputs}"
        if self.class_labels is not None and len(self.class_labels) != spec.out_features:
            return f"names {len(self.class_labels)} classes but the model has {spec.out_features} outputs"
        if self.target_boolean and len(self.class_labels or []) != 2:
            return f"says its target is true/false but names {len(self.class_labels or [])} classes"
        if self.decision is not None and len(self.class_labels or []) != 2:
            return "decides by a threshold, which only a model of two classes does"
        return None


def is_model_config(path: Path) -> bool:
    """Whether `path` holds a config.json train.py wrote, of any format (one this code no longer
    reads too): JSON of a task and the model's feature names, a format number where it has one."""
    try:
        found = json.loads(path.read_text(errors="replace"))
    except (OSError, ValueError):
        return False
    names = found.get("feature_names") if isinstance(found, dict) else None
    return isinstance(names, list) and all(isinstance(name, str) for name in names) \
        and found.get("task") in ("classification", "regression") and type(found.get("format", 1)) is int


def load_record(ckpt_dir: str | Path) -> ModelRecord:
    """A model folder's config.json, checked (a UserError naming the file where it does not fit)."""
    path = Path(ckpt_dir) / CONFIG_FILE
    if not path.is_file() and (Path(ckpt_dir) / "dataset.json").is_file():  # common/data/dataset.DATASET_FILE
        raise UserError(f"{ckpt_dir} is a data set (make_data.py's), not a model: pass the folder train.py wrote, "
                        "its --ckpt-dir")
    if not path.is_file() and (training := lock_holder(Path(ckpt_dir) / LOCK_FILE)):
        raise UserError(f"{ckpt_dir} holds no model yet: a run is training there ({training}); wait for it to end")
    if not path.is_file() and (Path(ckpt_dir) / LOCK_FILE).is_file():  # a run's folder: it stopped before it saved
        if {p.name for p in Path(ckpt_dir).iterdir()} == {LOCK_FILE}:  # a run killed before it wrote anything
            raise UserError(f"{ckpt_dir} holds no model: no run has saved one there")
        raise UserError(f"{ckpt_dir} holds no model: the run there ended before it saved one (train.py with the same "
                        "arguments and --resume goes on from its last checkpoint, where it kept one)")
    return ModelRecord.read(read_json(path, "model config"), path)


# config.json names the weights written with it by their digest (`weights_sha256`), so that a
# reader never pairs one run's steps with another's weights: a run swapping its files into a
# folder renames them one by one, and two models of the same shapes would load without a word.
PAIR_TRIES = 5  # reads of a folder whose two files do not match, while a run may be swapping them


def load_model_dir(ckpt_dir: str | Path) -> tuple[ModelRecord, Any]:
    """The record and the model it describes with its weights, in eval mode: safetensors and
    JSON only, never pickle."""
    import torch

    from common.model import build_model, load_state

    ckpt_dir = Path(ckpt_dir)
    record, weights, together = _written_together(ckpt_dir)
    model = build_model(record.model)
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UserError(f"{ckpt_dir / MODEL_FILE} holds NaN or infinite weights in {bad}: retrain the model")
    load_state(model, weights, str(ckpt_dir / MODEL_FILE))  # first: a mismatch of shapes is the plainer word
    if not together:
        raise UserError(f"{ckpt_dir}: {CONFIG_FILE} was not written with {MODEL_FILE} (a run still replacing them, "
                        "or a file copied or edited by hand): load it again once the run has saved, or restore both "
                        "files from one run")
    return record, model.eval()


def _written_together(ckpt_dir: Path) -> tuple[ModelRecord, dict[str, Any], bool]:
    """config.json and the weights, read again while they were not written together (a run
    swapping its files in as they were read), and whether they were at last. A config.json from
    before the digest was kept names none: it passes."""
    from common.files import load_weights, weights_digest

    for attempt in range(PAIR_TRIES):
        if attempt:
            time.sleep(0.05 * 2**attempt)
        record = load_record(ckpt_dir)
        weights = load_weights(ckpt_dir / MODEL_FILE)
        if record.weights_sha256 is None or weights_digest(weights) == record.weights_sha256:
            return record, weights, True
    return record, weights, False
