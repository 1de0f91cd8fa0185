"""The run record (config.json): everything needed to rebuild and use the model, and to
trace it to its settings."""
from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

import torch

from common.data.dataset import TabularData
from common.decision import ThresholdFit
from common.model_folder import ModelRecord, RunOutcome
from common.train.run_plan import TrainPlan

VERSIONED = ("torch", "accelerate", "numpy", "scikit-learn", "safetensors")


def library_versions() -> dict[str, str]:
    """Read from the installed packages' metadata: nothing is imported for it."""
    return {"python": platform.python_version(), **{name: metadata.version(name) for name in VERSIONED}}


def run_record(plan: TrainPlan, data: TabularData, accelerator: Any, outcome: RunOutcome,
               decision: ThresholdFit | None = None) -> ModelRecord:
    described = data.description
    return ModelRecord(
        plan.task, plan.model, described.class_labels, described.preprocess, described.target, described.ids,
        plan.run.data, plan.as_dict(), plan.num_processes, str(accelerator.distributed_type),
        accelerator.mixed_precision, device_name(accelerator.device), outcome, library_versions(),
        target_column(described.source), decision, target_boolean=bool(described.source.get("target_boolean")))


def target_column(source: dict[str, Any]) -> str:
    """The column a table's model predicts; `target` for the recipes' and scikit-learn's data,
    as scikit-learn names it in its frames."""
    return str(source.get("target") or "target")


def device_name(device: Any) -> str:
    """One spelling whatever the process count: the device type, with `:N` only for an
    accelerator. A CPU has no index that means anything (every process shares the host, and
    torch writes `cpu` for one process but `cpu:0` under some launchers); a GPU's index says
    which card the main process ran on, worth knowing on a machine with several."""
    device = torch.device(device)
    return device.type if device.type == "cpu" or device.index is None else f"{device.type}:{device.index}"


def scalar_settings(values: dict[str, Any]) -> dict[str, Any]:
    """Trackers' hyperparameter views take numbers and strings only."""
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in values.items()}
