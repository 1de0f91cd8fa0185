"""A run folder (--ckpt-dir) that always holds one consistent run.

The model's files (model.safetensors, config.json, metrics.jsonl) change together, at the end
of a run, or not at all: a run that fails or is killed leaves the earlier run's set as it was.
While a run trains, its evaluations go to metrics.running.jsonl, which becomes metrics.jsonl
when the run commits; a resumed run picks it up where its checkpoint ended.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from common.files import append_jsonl, atomic_path, write_json_file, write_together, write_weights_file
from common.model_folder import CONFIG_FILE, METRICS_FILE, MODEL_FILE

RUNNING_METRICS_FILE = "metrics.running.jsonl"


def running_metrics(ckpt_dir: str | Path) -> Path:
    return Path(ckpt_dir) / RUNNING_METRICS_FILE


class RunLog:
    """The run's evaluations: kept in memory (each checkpoint carries them) and, on the main
    process, appended to metrics.running.jsonl as they come."""

    def __init__(self, ckpt_dir: str | Path, records: list[dict[str, Any]], writer: bool):
        self.path, self.records, self.writer = running_metrics(ckpt_dir), list(records), writer
        if writer:  # a fresh run starts empty; a resumed one with the checkpoint's records, no later ones
            with atomic_path(self.path) as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in self.records))

    def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.writer:
            append_jsonl(self.path, record)


def clear_commit_leftovers(ckpt_dir: str | Path) -> None:
    """Staged model files that a kill during a commit left behind (hidden, never read)."""
    for name in (MODEL_FILE, CONFIG_FILE, METRICS_FILE):
        for leftover in Path(ckpt_dir).glob(f".{name}.*.tmp"):
            leftover.unlink(missing_ok=True)


def commit_run(ckpt_dir: str | Path, weights: dict[str, Any], record: dict[str, Any]) -> None:
    """The new weights, config.json and metrics.jsonl, written beside the old ones and renamed
    into place together."""
    folder = Path(ckpt_dir)
    running = running_metrics(folder)
    write_together({
        folder / MODEL_FILE: lambda path: write_weights_file(path, weights),
        folder / CONFIG_FILE: lambda path: write_json_file(path, record),
        folder / METRICS_FILE: lambda path: shutil.copyfile(running, path),
    })
    running.unlink(missing_ok=True)
