"""dataset.json, the description of a data set folder: its one schema. make_data.py writes it
through `DatasetDescription.to_json`; every reader gets it from `DatasetDescription.read`, checked
field by field, so that a damaged or foreign file is one line naming what is wrong.

Formats read: 6 (today's: dates), 5 (the target's modelling as one step, no dates) and 4 (its
scaling and its transform as separate fields). Older data sets are refused with a line saying to remake them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from common.data.roles import ColumnRole
from common.schema import Fields
from common.steps import Preprocessor, TargetStep, read_target

# dataset.json's format; 5: the target's modelling is one `target` object, which a reader of
# format 4 would not find; 6: a numeric step may be a date's (`date_parts`, and inputs for its
# cycles), which a reader of format 5 would take for a plain number; 7: a view as codes may hold
# fractions (common/steps.CategoricalStep.fractional), which a reader of format 6 refuses as
# a broken file rather than one too new for it.
FORMAT_VERSION = 7
OLDEST_READ = 4
TASKS = ("classification", "regression")
RECIPE_GENERATORS = ("make_classification", "make_regression")
FIX = "regenerate the data set with make_data.py"


@dataclasses.dataclass
class DatasetDescription:
    task: str                       # classification or regression
    class_labels: list[Any] | None  # classification: label of class code i; regression: None
    preprocess: Preprocessor        # fitted on the training split, replayed at prediction
    target: TargetStep | None       # regression: how y is modelled, its scaling and range
    n_train: int
    n_val: int
    n_test: int
    roles: list[ColumnRole]         # each table column's role and why
    source: dict[str, Any]          # where it came from: generator, file, seed, ids, ... (provenance)
    format: int = FORMAT_VERSION  # the format it was read from; to_json writes today's

    @property
    def feature_names(self) -> list[str]:
        """The model's inputs, in order."""
        return self.preprocess.input_names

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
            "format": FORMAT_VERSION, "task": self.task, "feature_names": self.feature_names,
            "class_labels": self.class_labels, "preprocess": self.preprocess.to_json(),
            "target": self.target.to_json() if self.target else None,
            "n_train": self.n_train, "n_val": self.n_val, "n_test": self.n_test,
            "roles": [dataclasses.asdict(r) for r in self.roles], "source": self.source,
        }

    @classmethod
    def read(cls, obj: Any, path: str | Path) -> DatasetDescription:
        """The description from parsed JSON (of format 4 to 6), or a UserError naming `path`."""
        f = Fields(obj, path, FIX)
        version = f.integer("format", minimum=1)
        if version > FORMAT_VERSION:
            raise f.error(f"is of format {version}, newer than this code reads ({FORMAT_VERSION})")
        if version < OLDEST_READ:
            raise f.error(f"was written by an older version of make_data.py (format {version})")
        task = f.text("task", TASKS)
        names = f.texts("feature_names")
        pre = Preprocessor.read(f)
        if pre.input_names != names:
            raise f.error(f"names the inputs {names} but its preprocessing steps make {pre.input_names}")
        labels = f.labels("class_labels") if task == "classification" else None
        target = read_target(f, task, split_form=version == OLDEST_READ)
        return cls(task, labels, pre, target, f.integer("n_train"), f.integer("n_val"), f.integer("n_test"),
                   [read_role(f, i, r) for i, r in enumerate(f.list_of_objects("roles"))], f.obj_of("source"),
                   version)


def read_role(f: Fields, i: int, obj: dict[str, Any]) -> ColumnRole:
    r = f.nested(f"roles[{i}]", obj)
    return ColumnRole(r.text("name"), r.text("role"), r.text("kind"), r.integer("missing"), r.text("why"))
