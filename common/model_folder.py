"""The model folder that train.py writes and infer.py reads: file names and the conventions
the weights and config.json share, and config.json's schema. No torch and no data code: both
sides import it."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from common.files import read_json
from common.schema import Fields, is_int

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
# A categorical column's code for a level unseen in training (or too rare to learn): its
# embedding row starts at zero, so such a level adds nothing the model did not learn.
UNKNOWN_CODE = 0

# config.json's format. 1: the records written before it had a version (no "format" key), some
# with `x_mean`/`x_scale` where later ones hold preprocessing steps; 3: quantile steps and the
# log link, which a reader of format 2 would silently get wrong.
CONFIG_FORMAT = 3
TASKS = ("classification", "regression")
TARGET_TRANSFORMS = ("none", "log1p", "log_link")  # how a regression's y is modelled (config.py's choices)
CONFIG_FIX = "use the config.json that train.py wrote with these weights"


@dataclasses.dataclass
class ModelRecord:
    """config.json: what rebuilding and using the model takes (the network, task, inputs, labels,
    scaling, preprocessing), and what traces it to its run (data, settings, processes, outcome,
    library versions). Written by train.py (common/train/run_record.py), read by infer.py."""

    task: str
    model: dict[str, Any]            # the network's plain description (common/model.model_spec)
    feature_names: list[str]         # the model's inputs, in order
    class_labels: list[Any] | None   # classification: label of output i
    y_mean: float | None             # regression: the target's scaling
    y_scale: float | None
    preprocess: dict[str, Any]       # the fitted steps as JSON (common/data/preprocess.Preprocessor.to_json)
    ids: list[str] = dataclasses.field(default_factory=list)  # id columns copied into predictions
    data: str | None = None          # the data set it was trained on
    training: dict[str, Any] = dataclasses.field(default_factory=dict)  # the run plan's settings
    num_processes: int = 1
    distributed_type: str = ""
    mixed_precision: str = ""
    device: str = ""                 # see common/train/run_record.device_name
    outcome: dict[str, Any] = dataclasses.field(default_factory=dict)  # final metrics, best epoch, timings
    versions: dict[str, str] = dataclasses.field(default_factory=dict)
    format: int = CONFIG_FORMAT
    target: dict[str, Any] = dataclasses.field(default_factory=dict)  # regression: see DatasetDescription.target

    def to_json(self) -> dict[str, Any]:
        """The outcome's keys sit at the top level, as they always have."""
        record = {"format": self.format, "task": self.task, "model": self.model,
                  "feature_names": self.feature_names, "class_labels": self.class_labels,
                  "y_mean": self.y_mean, "y_scale": self.y_scale, "preprocess": self.preprocess, "ids": self.ids,
                  "data": self.data, "training": self.training, "num_processes": self.num_processes,
                  "distributed_type": self.distributed_type, "mixed_precision": self.mixed_precision,
                  "device": self.device, **({"target": self.target} if self.target else {})}
        return {**record, **self.outcome, "versions": self.versions}

    @classmethod
    def read(cls, obj: Any, path: str | Path) -> ModelRecord:
        """The record from parsed JSON (also of format 1), or a UserError naming `path`. The
        preprocessing steps are checked by their reader (common/data/description.read_steps)."""
        f = Fields(obj, path, CONFIG_FIX)
        version = f.integer("format", minimum=1, default=1)
        if version > CONFIG_FORMAT:
            raise f.error(f"is of format {version}, newer than this code reads ({CONFIG_FORMAT})")
        task = f.text("task", TASKS)
        labels = f.labels("class_labels") if task == "classification" else None
        y_mean, y_scale = (None, None) if task == "classification" else \
            (f.number("y_mean"), f.number("y_scale", nonzero=True))
        names = f.texts("feature_names")
        outcome = {k: v for k, v in f.obj.items() if k not in RECORD_KEYS}
        return cls(task, model_description(f), names, labels, y_mean, y_scale, preprocess_steps(f, names),
                   f.texts("ids", default=[]), f.text("data", default=None), f.obj_of("training", default={}),
                   f.integer("num_processes", minimum=1, default=1), f.text("distributed_type", default=""),
                   f.text("mixed_precision", default=""), f.text("device", default=""), outcome,
                   f.obj_of("versions", default={}), version, target_modelling(f))


def load_record(ckpt_dir: str | Path) -> ModelRecord:
    """A model folder's config.json, checked (a UserError naming the file where it does not fit)."""
    path = Path(ckpt_dir) / CONFIG_FILE
    return ModelRecord.read(read_json(path, "model config"), path)


RECORD_KEYS = {field.name for field in dataclasses.fields(ModelRecord)} - {"outcome"} | {"x_mean", "x_scale"}


def target_modelling(f: Fields) -> dict[str, Any]:
    """The `target` entry of either file: a transform this code knows and a finite range."""
    if not f.has("target"):
        return {}
    t = f.nested("target", f.obj_of("target"))
    low, high = t.number("low"), t.number("high")
    if low > high:
        raise t.error(f"has a range from {low} down to {high}")
    return {"transform": t.text("transform", TARGET_TRANSFORMS), "low": low, "high": high}


def log_link(target: dict[str, Any] | None) -> bool:
    """Whether the model's output is log E[y] (trained on the Poisson deviance), not y itself."""
    return bool(target and target.get("transform") == "log_link")


def model_description(f: Fields) -> dict[str, Any]:
    """The network's description, of the shape common/model.py builds from (whether this code
    has its activation is the builder's to say)."""
    spec = f.obj_of("model")
    ok = all(is_int(spec.get(k)) and spec[k] > 0 for k in ("in_features", "out_features")) \
        and isinstance(spec.get("hidden"), list) and all(is_int(w) and w > 0 for w in spec["hidden"]) \
        and isinstance(spec.get("activation"), str) and isinstance(spec.get("categorical", []), list) \
        and all(isinstance(c, dict) and is_int(c.get("cardinality")) and is_int(c.get("dim"))
                for c in spec.get("categorical", []))
    if not ok:
        raise f.error(f"describes a model this code cannot build ({spec!r})")
    return spec


def preprocess_steps(f: Fields, names: list[str]) -> dict[str, Any]:
    """The steps' JSON; format 1's scaling-only `x_mean`/`x_scale` become the numeric steps they
    meant (Preprocessor.all_numeric's form: no fill, no indicator), so readers see one form."""
    if f.has("preprocess") or not (f.has("x_mean") and f.has("x_scale")):
        return f.obj_of("preprocess")
    mean, scale = f.value("x_mean"), f.value("x_scale")
    if not (isinstance(mean, list) and isinstance(scale, list) and len(mean) == len(scale) == len(names)):
        raise f.error(f"has x_mean and x_scale that are not {len(names)} numbers each")
    return {"numeric": [{"name": n, "median": 0.0, "mean": m, "scale": s, "indicator": False}
                        for n, m, s in zip(names, mean, scale, strict=True)], "categorical": []}
