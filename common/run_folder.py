"""A run folder (--ckpt-dir) that always holds one consistent run.

The model's files (model.safetensors, config.json, metrics.jsonl) change together, at the end
of a run, or not at all: a run that fails or is killed leaves the earlier run's set as it was.
While a run trains, its evaluations go to metrics.running.jsonl, which becomes metrics.jsonl
when the run commits; a resumed run picks it up where its checkpoint ended.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from common.artifacts import (
    CONFIG_FILE,
    METRICS_FILE,
    truncate_metrics,
    write_json_file,
    write_together,
    write_weights_file,
)

RUNNING_METRICS_FILE = "metrics.running.jsonl"


def running_metrics(ckpt_dir: str | Path) -> Path:
    return Path(ckpt_dir) / RUNNING_METRICS_FILE


def start_metrics(ckpt_dir: str | Path, resume_after: int | None) -> Path:
    """The running metrics log: empty for a fresh run; for a resumed one, its records up to the
    checkpoint's epoch (taken from the committed log when the run had already finished)."""
    running = running_metrics(ckpt_dir)
    if resume_after is None:
        running.write_text("")
        return running
    if not running.exists() and (Path(ckpt_dir) / METRICS_FILE).exists():
        shutil.copyfile(Path(ckpt_dir) / METRICS_FILE, running)
    truncate_metrics(running, resume_after)
    return running


def commit_run(ckpt_dir: str | Path, weights: dict[str, Any], record: dict[str, Any], model_file: str) -> None:
    """The new weights, config.json and metrics.jsonl, written beside the old ones and renamed
    into place together."""
    folder = Path(ckpt_dir)
    running = running_metrics(folder)
    write_together({
        folder / model_file: lambda path: write_weights_file(path, weights),
        folder / CONFIG_FILE: lambda path: write_json_file(path, record),
        folder / METRICS_FILE: lambda path: shutil.copyfile(running, path),
    })
    running.unlink(missing_ok=True)
