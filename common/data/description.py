"""dataset.json, the description of a data set folder: its one schema. make_data.py writes it
through `DatasetDescription.to_json`; every reader gets it from `DatasetDescription.read`, checked
field by field, so that a damaged or foreign file is one line naming what is wrong.

Formats read: 3 (today's), 2 (the single-file `.npz` form: the same fields) and 1 (no validation
split, no column roles, scaling only: `x_mean`/`x_scale` instead of preprocessing steps).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from common.data.preprocess import CategoricalStep, NumericStep, Preprocessor
from common.model_folder import target_modelling
from common.schema import Fields, is_finite

# dataset.json's format; 4: numeric steps may map through quantiles and a target may use a log
# link, which a reader of format 3 would silently get wrong, so it refuses them by the number.
FORMAT_VERSION = 4
TASKS = ("classification", "regression")
RECIPE_GENERATORS = ("make_classification", "make_regression")
FIX = "regenerate the data set with make_data.py"


@dataclasses.dataclass
class DatasetDescription:
    task: str                       # classification or regression
    feature_names: list[str]        # the model's inputs, in order (preprocess.input_names)
    class_labels: list[Any] | None  # classification: label of class code i; regression: None
    preprocess: Preprocessor        # fitted on the training split, replayed at prediction
    y_mean: float | None            # regression: the target's scaling (None for classification)
    y_scale: float | None
    n_train: int
    n_val: int
    n_test: int
    roles: list[dict[str, Any]]     # each table column's role and why (common/data/tables.ColumnRole)
    source: dict[str, Any]          # where it came from: generator, file, seed, ids, ... (free-form)
    format: int = FORMAT_VERSION
    # regression: how y is modelled ("log_link", "log1p" or "none") and its training range
    # ("low", "high"), which predictions are clipped to; {} for the recipes and older data sets
    target: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def is_recipe(self) -> bool:
        """The seed's synthetic data: trained with the recipe's exact settings."""
        return self.source.get("generator") in RECIPE_GENERATORS

    @property
    def ids(self) -> list[str]:
        """The table's id columns, copied into predictions."""
        return list(self.source.get("ids", []))

    def to_json(self) -> dict[str, Any]:
        return {
            "format": self.format, "task": self.task, "feature_names": self.feature_names,
            "class_labels": self.class_labels, "preprocess": self.preprocess.to_json(),
            "y_mean": self.y_mean, "y_scale": self.y_scale,
            "n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test,
            "roles": self.roles, "source": self.source, **({"target": self.target} if self.target else {}),
        }

    @classmethod
    def read(cls, obj: Any, path: str | Path) -> DatasetDescription:
        """The description from parsed JSON (any older format), or a UserError naming `path`."""
        f = Fields(obj, path, FIX)
        version = f.integer("format", minimum=1)
        if version > FORMAT_VERSION:
            raise f.error(f"is of format {version}, newer than this code reads ({FORMAT_VERSION})")
        task = f.text("task", TASKS)
        names = f.texts("feature_names")
        pre = read_steps(f) if version >= 2 else scaling_only(f, names)
        if pre.input_names != names:
            raise f.error(f"names the inputs {names} but its preprocessing steps make {pre.input_names}")
        labels = f.labels("class_labels") if task == "classification" else None
        y_mean, y_scale = target_scaling(f, task)
        return cls(task, names, labels, pre, y_mean, y_scale, f.integer("n_train"),
                   f.integer("n_val") if version >= 2 else 0, f.integer("n_test"),
                   f.list_of_objects("roles") if version >= 2 else [], f.obj_of("source"), version,
                   target_modelling(f))


def target_scaling(f: Fields, task: str) -> tuple[float | None, float | None]:
    if task == "classification":
        return None, None
    return f.number("y_mean"), f.number("y_scale", nonzero=True)


def scaling_only(f: Fields, names: list[str]) -> Preprocessor:
    """Format 1's `x_mean`/`x_scale`: what Preprocessor.all_numeric means."""
    mean, scale = f.value("x_mean"), f.value("x_scale")
    if not (isinstance(mean, list) and isinstance(scale, list) and len(mean) == len(scale) == len(names)
            and all(map(is_finite, mean)) and all(is_finite(s) and s != 0 for s in scale)):
        raise f.error(f"has x_mean and x_scale that are not {len(names)} finite numbers each (scales non-zero)")
    return Preprocessor.all_numeric(names, mean, scale)


def read_steps(f: Fields) -> Preprocessor:
    """The fitted preprocessing steps (Preprocessor.to_json's form) of either file, each checked:
    a scale of 0 or a non-finite statistic would turn every prediction into NaN."""
    steps = f.nested("preprocess", f.value("preprocess"))
    numeric, categorical = [], []
    for i, obj in enumerate(steps.list_of_objects("numeric")):
        s = steps.nested(f"numeric[{i}]", obj)
        indicator = s.value("indicator")
        if not isinstance(indicator, bool):
            raise s.wrong("indicator", indicator, "true or false")
        numeric.append(NumericStep(s.text("name"), s.number("median"), s.number("mean"),
                                   s.number("scale", nonzero=True), indicator, s.ascending("quantiles", None)))
    for i, obj in enumerate(steps.list_of_objects("categorical")):
        s = steps.nested(f"categorical[{i}]", obj)
        levels = s.value("levels")
        if not isinstance(levels, list) or not all(v is None or isinstance(v, str) for v in levels):
            raise s.wrong("levels", levels, "a list of text (null: the blank level)")
        categorical.append(CategoricalStep(s.text("name"), levels))
    return Preprocessor(numeric, categorical)
