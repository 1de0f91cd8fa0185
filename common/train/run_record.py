"""The run record (config.json): everything needed to rebuild and use the model, and to
trace it to its settings."""
from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from common.data.dataset import TabularData
from common.train.run_plan import TrainPlan

META_KEYS = ("feature_names", "class_labels", "y_mean", "y_scale")
VERSIONED = ("torch", "accelerate", "numpy", "scikit-learn", "safetensors")


def library_versions() -> dict[str, str]:
    """Read from the installed packages' metadata: nothing is imported for it."""
    return {"python": platform.python_version(), **{name: metadata.version(name) for name in VERSIONED}}


def run_record(plan: TrainPlan, data: TabularData, accelerator: Any, outcome: dict[str, Any]) -> dict[str, Any]:
    """`outcome`: final metrics, the best evaluation, epochs run and loop time."""
    return {
        "task": plan.task, "model": plan.model_spec(), **{k: data.meta[k] for k in META_KEYS},
        "preprocess": data.preprocessor.to_json(), "ids": data.meta.get("source", {}).get("ids", []),
        "data": plan.data, "training": plan.as_dict(), "num_processes": plan.num_processes,
        "distributed_type": str(accelerator.distributed_type), "mixed_precision": accelerator.mixed_precision,
        "device": str(accelerator.device), **outcome, "versions": library_versions(),
    }


def scalar_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Trackers' hyperparameter views take numbers and strings only."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}
